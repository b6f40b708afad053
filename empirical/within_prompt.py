"""Superposition within one prompt, not only on average over prompts.

A mean over prompts cannot tell the paper's claim (probability on several tasks' answers in
ONE forward pass) from a model that commits to one task per prompt: a model that answers
task A in a fraction lambda of the prompts and task B in the rest has the same mean curve
P(A) against lambda as one that gives every prompt (lambda, 1 - lambda). These statistics
look at each prompt's task probabilities ``p`` [prompts, K] (the raw probability of every
task's answer) and summarise them over prompts:

* ``second``: the second-largest task probability (for two tasks, min(P_A, P_B)): 0 for a
  per-prompt chooser, min(lambda, 1 - lambda) for proportional mixing;
* ``entropy``: the entropy in bits of the prompt's task distribution renormalised over the
  tasks (0 for a chooser, H(lambda) for proportional mixing; at most log2 K);
* ``several``: whether at least two tasks each get at least ``threshold`` (0.1).

:func:`reference` gives the values of the two pure strategies for given proportions, so
every result can be read against them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054
THRESHOLD = 0.1


def mean_ci(x) -> dict:
    """Mean with a 95% normal confidence interval over the first axis (``ci95`` is the half-width)."""
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    half = float(Z95 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": mean, "ci95": half, "lo": mean - half, "hi": mean + half}


def _entropy_bits(q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, -q * np.log2(np.where(q > 0, q, 1.0)), 0.0)
    return terms.sum(axis=-1)


def per_prompt(p, threshold: float = THRESHOLD) -> dict[str, np.ndarray]:
    """The per-prompt statistics of task probabilities ``p`` [prompts, K >= 2]."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"need task probabilities of shape [prompts, K >= 2], got {p.shape}")
    if np.any(p < -1e-9) or np.any(p.sum(axis=1) > 1 + 1e-6):
        raise ValueError("task probabilities must be non-negative and sum to at most 1 per prompt")
    p = np.clip(p, 0.0, 1.0)
    top = -np.sort(-p, axis=1)
    total = p.sum(axis=1, keepdims=True)
    q = np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)
    return {
        "second": top[:, 1],
        "entropy": _entropy_bits(q),
        "several": (top[:, 1] >= threshold).astype(np.float64),
    }


def summary(p, threshold: float = THRESHOLD) -> dict:
    """Means (with 95% intervals) over prompts of :func:`per_prompt`'s statistics."""
    return {name: mean_ci(values) for name, values in per_prompt(p, threshold).items()}


def reference(proportions: Sequence[float], threshold: float = THRESHOLD) -> dict:
    """The statistics of the two pure strategies for in-context proportions ``proportions``:
    ``chooser`` (all mass on one task per prompt) and ``proportional`` (mass = proportions)."""
    d = np.asarray(proportions, dtype=np.float64)
    top = -np.sort(-d)
    return {
        "chooser": {"second": 0.0, "entropy": 0.0, "several": 0.0},
        "proportional": {
            "second": float(top[1]),
            "entropy": float(_entropy_bits(d[None])[0]),
            "several": float(top[1] >= threshold),
        },
    }


# --------------------------------------------------------------------------- one number per model


def from_sweep(result: dict, lam: float = 0.5, *, constructed: bool = False) -> dict:
    """The within-prompt numbers of a saved ``superpose sweep`` result at ``lam`` (of its
    ``constructed`` overlay with ``constructed=True``): the mean second-largest task
    probability with its interval, the share of prompts giving both tasks >= 0.1, and the
    proportional-mixing reference: the mean of min(share, 1 - share) over the prompts' actual
    shares of task A's examples (below min(lambda, 1 - lambda): the shares scatter around lambda)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must lie in [0, 1], got {lam}")
    res = result["constructed"] if constructed else result
    for pt in res["points"]:
        if abs(pt["lambda"] - lam) < 1e-9:
            share = np.asarray(pt["per_prompt"]["share_a"], dtype=np.float64)
            return {"second": pt["second"], "several": pt["several"],
                    "proportional": float(np.minimum(share, 1.0 - share).mean()), "setting": f"lambda = {lam}",
                    "tasks": result["tasks"], "prompts": result["n_prompts"]}
    raise ValueError(f"the sweep has no lambda {lam} (it has {result['lambdas']})")


def from_probe(result: dict) -> dict:
    """The within-prompt numbers of one family of a saved ``superpose probe`` result (K tasks,
    equal proportions 1/K: proportional mixing gives a second-largest task probability of 1/K)."""
    s = result["summary"]
    if "within_prompt" not in s:
        raise ValueError(f"the probe result for {result.get('family')!r} has no within-prompt statistics: "
                         "recompute it with `superpose probe --refresh`")
    return {"second": s["within_prompt"]["second"], "several": s["within_prompt"]["several"],
            "proportional": s["within_prompt_reference"]["proportional"]["second"],
            "setting": f"{len(s['tasks'])} tasks, 1/{len(s['tasks'])} each", "tasks": list(s["tasks"]),
            "prompts": len(result["per_prompt"])}


def rows(sweeps: Sequence[dict] = (), probes: Sequence[dict] = (), lam: float = 0.5) -> dict[str, dict]:
    """One row of within-prompt numbers per model: every saved sweep (and its constructed
    overlay) at ``lam``, every family of every saved probe result."""
    from pathlib import Path

    out: dict[str, dict] = {}
    for result in sweeps:
        out[f"trained {result.get('run', '?')}: {' vs '.join(result['tasks'])}"] = from_sweep(result, lam)
        if "constructed" in result:
            out[f"constructed: {' vs '.join(result['tasks'])}"] = from_sweep(result, lam, constructed=True)
    for document in probes:
        model = Path(str(document.get("config", {}).get("model", document.get("model", "llm")))).stem
        for res in document["results"]:
            out[f"{model}: {res['family']}"] = from_probe(res)
    return out


def plot_summary(rows: dict[str, dict], path, title: str = ""):
    """One bar per model: mean second-largest task probability (95% interval), with the
    proportional-mixing value as a tick; a per-prompt chooser scores 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    names = list(rows)
    mean = np.array([rows[n]["second"]["mean"] for n in names])
    half = np.array([rows[n]["second"]["ci95"] for n in names])
    ref = np.array([rows[n]["proportional"] for n in names])
    fig = Figure(figsize=(8.0, 0.45 * len(names) + 1.4), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))[::-1]
    ax.barh(y, mean, xerr=half, color="tab:green", alpha=0.8, capsize=3, label="mean 2nd-largest task probability")
    ax.scatter(ref, y, marker="|", s=300, color="black", label="proportional mixing (in-context shares)")
    ax.set_yticks(y, [f"{n}\n({rows[n]['setting']})" for n in names], fontsize=7)
    ax.set_xlim(0, 0.55)
    ax.set_xlabel("within-prompt superposition: mean second-largest task probability (a chooser scores 0)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "Superposition within one prompt", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
