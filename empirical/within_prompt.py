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

and, per task, :func:`variance_ratio`: var / (m (1 - m)) of the task's answer probability
over prompts (m its mean): 1 for a pure per-prompt chooser (every prompt gives the answer 0
or 1), near 0 for proportional mixing (every prompt gives about the same probability). The
authors' training runs logged the mean and variance of P(answer) per lambda, so their models
can be read the same way.

:func:`reference` gives the values of the two pure strategies for given proportions, so
every result can be read against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from empirical.results import MeanCI, Record, Stamped, optional, read_result, record, result_type

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


def variance_ratio(x, *, floor: float = 1e-9) -> list[float | None]:
    """var / (m (1 - m)) of each column of ``x`` [prompts, K] (or of a 1-d ``x``, as a list of
    one), with m the column's mean and var its population variance over prompts: 1 when every
    value is 0 or 1 (a per-prompt chooser), 0 when every prompt gives the same value (e.g.
    proportional mixing at equal shares). None where m (1 - m) < ``floor`` (m is 0 or 1:
    the ratio is undefined)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) < 1:
        raise ValueError(f"need values of shape [prompts] or [prompts, K], got {x.shape}")
    m, v = x.mean(axis=0), x.var(axis=0)
    den = m * (1.0 - m)
    return [float(vi / di) if di >= floor else None for vi, di in zip(v, den)]


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


@record
class VarianceRatio(Record):
    """var / (m (1 - m)) of P(A) and of P(B) over prompts (:func:`variance_ratio`; None where
    m is 0 or 1)."""

    a: float | None
    b: float | None


@record
class Strategy(Record):
    """The within-prompt statistics of one pure strategy (:func:`reference`)."""

    second: float
    entropy: float
    several: float


@record
class Reference(Record):
    """The statistics of the two pure strategies for given in-context proportions."""

    chooser: Strategy
    proportional: Strategy

    @classmethod
    def of(cls, proportions: Sequence[float], threshold: float = THRESHOLD) -> "Reference":
        return cls.from_json(reference(proportions, threshold))


# --------------------------------------------------------------------------- one number per model


@record
class Row(Record):
    """One model's within-prompt numbers in one setting (a probe family's row; a sweep's row
    is a :class:`SweepRow`): the mean second-largest task probability, the share of prompts
    giving two tasks >= 0.1, the proportional-mixing reference and the variance ratio per task."""

    second: MeanCI
    several: MeanCI
    proportional: float
    setting: str
    tasks: tuple[str, ...]
    prompts: int
    variance_ratio: dict[str, float | None]


@record
class SweepRow(Row):
    """A sweep's row, with its variance ratios at every lambda strictly between 0 and 1 and
    their range over lambda 0.1-0.9 (None: none is defined)."""

    variance_ratio_by_lambda: dict[str, VarianceRatio]
    variance_ratio_range: tuple[float, float] | None


@record
class AuthorsRun(Record):
    """One of the authors' logged runs (:func:`authors_ratios`)."""

    run_name: str | None
    max_steps: int | None
    batch: int | None
    layers: int | None
    variance_ratio_by_lambda: dict[str, VarianceRatio]
    variance_ratio_range: tuple[float, float] | None
    p_a_plus_p_b_by_lambda: dict[str, float]


@record
class Authors(Record):
    """The authors' logged runs (:func:`load_authors`): the repository, each file's SHA-256, and
    the variance ratios of every run by its task."""

    repository: str
    sha256: dict[str, str]
    runs: dict[str, AuthorsRun]


@result_type("within-prompt")
@record
class WithinPromptResult(Stamped):
    """``superpose within-prompt``: one row per sweep (at one lambda) and per probe family, with
    the authors' logged runs when given."""

    rows: dict[str, SweepRow | Row]
    authors: Authors | None = optional()
    plot: str | None = optional()


def from_sweep(result, lam: float = 0.5, *, constructed: bool = False) -> SweepRow:
    """The within-prompt numbers of a saved ``superpose sweep`` result at ``lam`` (of its
    ``constructed`` overlay with ``constructed=True``): the mean second-largest task
    probability with its interval, the share of prompts giving both tasks >= 0.1, and the
    proportional-mixing reference: the mean of min(share, 1 - share) over the prompts' actual
    shares of task A's examples (below min(lambda, 1 - lambda): the shares scatter around lambda).
    ``result`` is an :class:`empirical.sweep.Sweep`."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must lie in [0, 1], got {lam}")
    from empirical.sweep import variance_ratios

    res = result.constructed if constructed else result
    ratios = variance_ratios(res)
    for pt in res.points:
        if abs(pt.lam - lam) < 1e-9:
            share = np.asarray(pt.per_prompt.share_a, dtype=np.float64)
            at_lam = ratios[float(pt.lam)]
            return SweepRow(second=pt.second, several=pt.several,
                            proportional=float(np.minimum(share, 1.0 - share).mean()), setting=f"lambda = {lam}",
                            tasks=result.tasks, prompts=result.n_prompts,
                            variance_ratio={"a": at_lam.a, "b": at_lam.b},
                            variance_ratio_by_lambda={f"{k:g}": v for k, v in ratios.items() if 0.0 < k < 1.0},
                            variance_ratio_range=ratio_range(ratios))
    raise ValueError(f"the sweep has no lambda {lam} (it has {list(result.lambdas)})")


def from_probe(result) -> Row:
    """The within-prompt numbers of one family (a :class:`empirical.llm.probe.ProbeFamily`) of a
    saved ``superpose probe`` result (K tasks, equal proportions 1/K: proportional mixing gives
    a second-largest task probability of 1/K)."""
    s = result.summary
    return Row(second=s.within_prompt.second, several=s.within_prompt.several,
               proportional=s.within_prompt_reference.proportional.second,
               setting=f"{len(s.tasks)} tasks, 1/{len(s.tasks)} each", tasks=tuple(s.tasks),
               prompts=len(result.per_prompt), variance_ratio=dict(zip(s.tasks, s.variance_ratio)))


def ratio_range(ratios: dict[float, VarianceRatio], lo: float = 0.1, hi: float = 0.9) -> tuple[float, float] | None:
    """(min, max) of every defined variance ratio over lambda in [lo, hi] (both tasks), from
    ``{lambda: VarianceRatio}``; None if none is defined."""
    vals = [v for lam, r in ratios.items() if lo - 1e-9 <= lam <= hi + 1e-9 for v in (r.a, r.b) if v is not None]
    return (float(min(vals)), float(max(vals))) if vals else None


#: Where the authors' logged training runs are: ``run_summaries.json`` (the final wandb summary
#: of each run, with ``eval/<lambda>_ans_prob_mean_<i>`` and ``..._var_<i>``, i = 0 the task
#: of share lambda) and ``run_configs.json`` (the runs' configs, in the same order).
AUTHORS_RUNS = "JackCai1206/icl-pretraining"


def load_authors(folder) -> Authors:
    """The authors' per-lambda variance ratios (:func:`authors_ratios`) from a folder holding
    ``run_summaries.json`` and ``run_configs.json`` of :data:`AUTHORS_RUNS` (a checkout of that
    repository), with the repository and each file's SHA-256 (not the folder's path)."""
    import hashlib
    import json
    from pathlib import Path

    folder = Path(folder)
    docs, digests = {}, {}
    for name in ("run_summaries.json", "run_configs.json"):
        path = folder / name
        try:
            raw = path.read_bytes()
            docs[name] = json.loads(raw)
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist (give a checkout of {AUTHORS_RUNS})") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not JSON ({err})") from None
        if not isinstance(docs[name], list):
            raise ValueError(f"{path} is not a list of runs")
        digests[name] = hashlib.sha256(raw).hexdigest()
    return Authors(repository=AUTHORS_RUNS, sha256=digests,
                   runs=authors_ratios(docs["run_summaries.json"], docs["run_configs.json"]))


def authors_ratios(summaries: Sequence[dict], configs: Sequence[dict]) -> dict[str, AuthorsRun]:
    """var / (m (1 - m)) of P(answer) per lambda in the authors' logged runs (see
    :data:`AUTHORS_RUNS`), from the mean and variance they logged over their evaluation
    prompts; one entry per run, named by its task (``copy``, ``bias_add_simple``, ...), with
    ``{lambda: {"a", "b"}}``, the range over lambda 0.1-0.9, and P(A) + P(B) per lambda."""
    import re

    if len(summaries) != len(configs):
        raise ValueError(f"{len(summaries)} run summaries but {len(configs)} run configs")
    out: dict[str, AuthorsRun] = {}
    pat = re.compile(r"^eval/([0-9.]+)_ans_prob_(mean|var)_([01])$")
    for summ, cfg in zip(summaries, configs):
        vals: dict[float, dict] = {}
        for key, v in summ.items():
            m = pat.match(key)
            if m:
                vals.setdefault(float(m.group(1)), {})[(m.group(2), int(m.group(3)))] = float(v)
        if not vals:
            raise ValueError(f"run {cfg.get('run_name')!r} has no eval/<lambda>_ans_prob_* entries")
        ratios, total = {}, {}
        for lam in sorted(vals):
            d = vals[lam]
            ratio = []
            for i in (0, 1):
                m, v = d[("mean", i)], d[("var", i)]
                ratio.append(v / (m * (1 - m)) if m * (1 - m) >= 1e-9 else None)
            ratios[lam] = VarianceRatio(a=ratio[0], b=ratio[1])
            total[lam] = d[("mean", 0)] + d[("mean", 1)]
        out[str(cfg.get("task", cfg.get("run_name")))] = AuthorsRun(
            run_name=cfg.get("run_name"), max_steps=cfg.get("max_steps"),
            batch=cfg.get("per_device_train_batch_size"), layers=cfg.get("num_layers"),
            variance_ratio_by_lambda={f"{k:g}": v for k, v in ratios.items() if 0.0 < k < 1.0},
            variance_ratio_range=ratio_range(ratios),
            p_a_plus_p_b_by_lambda={f"{k:g}": v for k, v in total.items()},
        )
    return out


def rows(sweeps: Sequence = (), probes: Sequence = (), lam: float = 0.5) -> dict[str, Row]:
    """One row of within-prompt numbers per model: every sweep (an :class:`empirical.sweep.Sweep`,
    and its constructed overlay) at ``lam`` (with the variance ratios of every lambda), every
    family of every saved probe result (an :class:`empirical.llm.probe.ProbeResult`)."""
    from pathlib import Path

    out: dict[str, Row] = {}
    for result in sweeps:
        out[f"trained {result.run or '?'}: {' vs '.join(result.tasks)}"] = from_sweep(result, lam)
        if result.constructed is not None:
            out[f"constructed: {' vs '.join(result.tasks)}"] = from_sweep(result, lam, constructed=True)
    for document in probes:
        model = Path(str(document.config.get("model", "llm"))).stem
        for res in document.results:
            out[f"{model}: {res.family}"] = from_probe(res)
    return out


def plot_summary(rows: dict[str, Row], path, title: str = ""):
    """One bar per model: mean second-largest task probability (95% interval), with the
    proportional-mixing value as a tick; a per-prompt chooser scores 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    names = list(rows)
    mean = np.array([rows[n].second.mean for n in names])
    half = np.array([rows[n].second.ci95 for n in names])
    ref = np.array([rows[n].proportional for n in names])
    fig = Figure(figsize=(8.0, 0.45 * len(names) + 1.4), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))[::-1]
    ax.barh(y, mean, xerr=half, color="tab:green", alpha=0.8, capsize=3, label="mean 2nd-largest task probability")
    ax.scatter(ref, y, marker="|", s=300, color="black", label="proportional mixing (in-context shares)")
    ax.set_yticks(y, [f"{n}\n({rows[n].setting})" for n in names], fontsize=7)
    ax.set_xlim(0, 0.55)
    ax.set_xlabel("within-prompt superposition: mean second-largest task probability (a chooser scores 0)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "Superposition within one prompt", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def command(sweeps: Sequence[str] = (), probes: Sequence[str] = (), *, lam: float = 0.5, authors=None, out=None,
            json_path=None, echo=print) -> WithinPromptResult:
    """``superpose within-prompt``: one row per saved sweep (at ``lam``) and probe result, with the
    authors' logged runs when ``authors`` names a checkout; plot in ``out``, JSON, and one printed
    line per row."""
    from dataclasses import replace
    from pathlib import Path

    from empirical.llm.probe import load_saved
    from empirical.results import provenance

    if not sweeps and not probes:
        raise ValueError("give at least one --sweep or --probe result file")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"--lambda must lie in [0, 1], got {lam}")
    sweep_results = [read_result(p, "sweep") for p in sweeps]
    probe_docs = [load_saved(p) for p in probes]
    table = rows(sweep_results, probe_docs, lam)
    logged = load_authors(authors) if authors else None
    result = WithinPromptResult(
        **provenance({"sweeps": list(sweeps) or None, "probes": list(probes) or None, "lambda": lam,
                      "authors": logged.repository if logged else None}),
        command="within-prompt", rows=table, authors=logged)
    if out:
        result = replace(result, plot=str(plot_summary(table, Path(out) / "within_prompt_summary.png")))
    if json_path:
        result.write(json_path)
    for label, row in table.items():
        vr = ", ".join("-" if v is None else f"{v:.3f}" for v in row.variance_ratio.values())
        echo(f"{label:48s} 2nd-largest {row.second.mean:.3f} +- {row.second.ci95:.3f} "
             f"(proportional {row.proportional:.2f}), both >= 0.1 in {row.several.mean:.0%}, "
             f"var/(m(1-m)) {vr}")
    for task, run in (logged.runs if logged else {}).items():
        lo, hi = run.variance_ratio_range or (float("nan"), float("nan"))
        echo(f"authors' {task:39s} var/(m(1-m)) {lo:.3f}-{hi:.3f} over lambda 0.1-0.9")
    return result
