"""Lambda sweeps of a trained model on mixed prompts (the paper's Figure 3).

For lambda in {0, 0.1, ..., 1}, ``n_prompts`` prompts whose examples follow task A with
probability lambda and task B otherwise (i.i.d. per example), then a query. At the query's
``>`` the model's next-character distribution is read: P(answer of A), P(answer of B), the
rest, the argmax hit rates, and KL(D || P) with D the prompt's actual task proportions
(THEORY.md section 6). Means come with 95% normal confidence intervals over prompts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from construction.transformer import TransformerConfig, run
from empirical import results as results_lib
from empirical import synthetic

#: The paper's grid: lambda in {0, 0.1, ..., 1}.
LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
Z95 = 1.959963984540054


def _mean_ci(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    half = float(Z95 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": mean, "ci95": half, "lo": mean - half, "hi": mean + half}


@lru_cache(maxsize=8)
def last_position_probs(model: TransformerConfig, batch: int):
    """A (cached) jitted ``(params, tokens [batch, L]) -> probabilities [batch, V]`` at the last position."""

    @jax.jit
    def probs(params, tokens):
        logits, _ = run(model, params, tokens, last_only=True)
        return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1)

    return probs


def sweep(
    model: TransformerConfig,
    params,
    family: str,
    tasks: Sequence[int],
    *,
    n_prompts: int = 1000,
    n_examples: int = 100,
    lambdas: Sequence[float] = LAMBDAS,
    seed: int = 0,
    batch: int = 50,
    progress: bool = True,
) -> dict:
    """Probabilities of tasks A = tasks[0] and B = tasks[1] against lambda (A's share).

    Returns ``{"lambdas", "tasks", "points": [{lambda, p_a, p_b, p_other, acc_a, acc_b, kl}]}``
    where every statistic is ``{mean, ci95, lo, hi}`` over the prompts. Prompts for lambda
    index i come from ``numpy.random.default_rng([seed, i])``.
    """
    from tqdm.auto import tqdm

    fam = synthetic.family(family)
    if len(tasks) != 2:
        raise ValueError(f"a sweep compares two tasks, got {len(tasks)}")
    if n_prompts < 2:
        raise ValueError(f"need at least 2 prompts per lambda for a confidence interval, got {n_prompts}")
    probs_fn = last_position_probs(model, batch)
    points = []
    bar = tqdm(total=len(lambdas) * n_prompts, disable=not progress, desc="sweep", unit="prompt")
    for i, lam in enumerate(lambdas):
        rng = np.random.default_rng([seed, i])
        prompts = synthetic.mixed_prompts(fam, rng, n_prompts, n_examples, tasks, [lam, 1.0 - lam])
        tokens, answers = prompts["tokens"], prompts["answers"]
        chunks = []
        for start in range(0, n_prompts, batch):
            chunk = tokens[start : start + batch]
            real = len(chunk)
            if real < batch:  # pad to a fixed shape: one compilation
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
            chunks.append(np.asarray(probs_fn(params, chunk))[:real])
            bar.update(real)
        p = np.concatenate(chunks)  # [P, V]
        p_ans = np.take_along_axis(p, answers, axis=1)  # [P, 2]
        top = p.argmax(axis=1)
        # D: the prompt's actual task proportions; P: the raw answer probabilities.
        share_a = (prompts["example_task"] == 0).mean(axis=1)
        d = np.stack([share_a, 1.0 - share_a], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(d > 0, d * (np.log(d) - np.log(np.maximum(p_ans, 1e-30))), 0.0).sum(axis=1)
        points.append(
            {
                "lambda": float(lam),
                "p_a": _mean_ci(p_ans[:, 0]),
                "p_b": _mean_ci(p_ans[:, 1]),
                "p_other": _mean_ci(1.0 - p_ans.sum(axis=1)),
                "acc_a": _mean_ci(top == answers[:, 0]),
                "acc_b": _mean_ci(top == answers[:, 1]),
                "kl": _mean_ci(kl),
            }
        )
    bar.close()
    names = [f"{family}:{h}" for h in tasks]
    return {
        "family": family,
        "tasks": names,
        "n_prompts": n_prompts,
        "n_examples": n_examples,
        "seed": seed,
        "lambdas": [float(x) for x in lambdas],
        "points": points,
    }


def series(result: dict, key: str, stat: str = "mean") -> np.ndarray:
    """One statistic of the sweep as an array over lambda (e.g. ``series(r, "p_a")``)."""
    return np.array([pt[key][stat] for pt in result["points"]])


def at(result: dict, lam: float) -> dict:
    """The sweep's point at ``lam``."""
    for pt in result["points"]:
        if abs(pt["lambda"] - lam) < 1e-9:
            return pt
    raise KeyError(f"lambda {lam} is not in the sweep {result['lambdas']}")


def plot(result: dict, path: str | os.PathLike, title: str | None = None) -> Path:
    """The Figure 3 plot: P(A), P(B) (95% CI bands) and the ideal mixture against lambda.

    Uses matplotlib's Agg canvas (no display needed); written to a temporary file then
    ``os.replace``d onto ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lam = np.array(result["lambdas"])
    name_a, name_b = result["tasks"]
    fig = Figure(figsize=(5.0, 3.6), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key, name, color in (("p_a", name_a, "tab:blue"), ("p_b", name_b, "tab:orange")):
        ax.plot(lam, series(result, key), "o-", color=color, label=f"P({name})", markersize=4)
        ax.fill_between(lam, series(result, key, "lo"), series(result, key, "hi"), color=color, alpha=0.25)
    ax.plot(lam, series(result, "p_other"), "s:", color="gray", label="other", markersize=3)
    ax.plot(lam, lam, "--", color="tab:blue", alpha=0.5, linewidth=1, label=r"$\lambda$ (mixture)")
    ax.plot(lam, 1 - lam, "--", color="tab:orange", alpha=0.5, linewidth=1, label=r"$1-\lambda$")
    ax.set_xlabel(rf"$\lambda$ (share of {name_a} examples)")
    ax.set_ylabel("probability of the answer")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(title or f"{name_a} vs {name_b}: {result['n_prompts']} prompts of {result['n_examples']} examples",
                 fontsize=8)
    fig.tight_layout()
    return results_lib.save_figure(fig, path)
