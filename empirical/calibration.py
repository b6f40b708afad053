"""Calibration: is a model's answer probability proportional to its task's share of the
in-context examples? (The paper's reviewers: "why are outputs not calibrated?")

Input, for any model: per prompt the realised in-context proportions D [K] and the raw answer
probabilities P [K] of the K tasks. Two views:

* the **reliability curve** (:func:`reliability`): the (D_k, P_k) pairs of all prompts and
  tasks, binned by D_k, with the mean raw P_k and the mean *renormalised* q_k = P_k / sum_j P_j
  per bin (a calibrated model lies on the diagonal);
* one **fitted exponent** alpha (:func:`fit_exponent`): the value for which
  q_k = D_k^alpha / sum_j D_j^alpha best explains the observed q (maximum likelihood with q
  as soft labels, over tasks with D_k > 0), with a bootstrap interval over prompts. alpha = 1 is
  proportional; alpha > 1 sharpens towards the majority task (a per-prompt chooser of the
  majority task has alpha -> infinity, capped at :data:`ALPHA_MAX`); 0 < alpha < 1 flattens;
  alpha = 0 ignores the proportions. ``1 / alpha`` is the temperature of the same model.

Both are pooled over prompts, so a model that commits to ONE task per prompt, drawn with
probability D_k, looks perfectly calibrated in both. :func:`per_prompt_distance` looks inside
each prompt (the distance between q and D) and gives the two choosers' values beside it.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from empirical.results import MeanCI, Record, Stamped, optional, record, result_type

ALPHA_MIN, ALPHA_MAX = -5.0, 30.0
#: Bins of D for the reliability curve.
BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _rows(d_rows: Sequence[Sequence[float]], p_rows: Sequence[Sequence[float]]):
    """Per prompt log D and q over the tasks with D > 0, padded to [prompts, K_max] with a mask
    (prompts whose answers all have zero probability, or with fewer than two tasks in context,
    are left out)."""
    if len(d_rows) != len(p_rows):
        raise ValueError(f"{len(d_rows)} rows of proportions but {len(p_rows)} rows of probabilities")
    width = max((len(d) for d in d_rows), default=0)
    logd, q, mask = [], [], []
    for d, p in zip(d_rows, p_rows):
        d, p = np.asarray(d, np.float64), np.asarray(p, np.float64)
        if d.shape != p.shape:
            raise ValueError(f"proportions {d.shape} and probabilities {p.shape} differ in shape")
        if np.any(d < 0) or np.any(p < 0):
            raise ValueError("proportions and probabilities must be non-negative")
        keep = d > 0
        total = p[keep].sum()
        if keep.sum() < 2 or total <= 0:
            continue
        pad = width - len(d)
        logd.append(np.pad(np.log(np.where(keep, d, 1.0)), (0, pad)))
        q.append(np.pad(np.where(keep, p, 0.0) / total, (0, pad)))
        mask.append(np.pad(keep, (0, pad)))
    if not logd:
        raise ValueError("no prompt has two tasks in context with some answer probability")
    return np.array(logd), np.array(q), np.array(mask)


def _loss(alpha: float, logd: np.ndarray, q: np.ndarray, mask: np.ndarray) -> float:
    """Mean cross-entropy of the soft labels q against softmax(alpha log D) over the mask."""
    z = np.where(mask, alpha * logd, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    logsm = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(q * np.where(mask, logsm, 0.0)).sum(axis=1).mean())


def _fit(logd, q, mask) -> float:
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(_loss, bounds=(ALPHA_MIN, ALPHA_MAX), args=(logd, q, mask), method="bounded",
                          options={"xatol": 1e-4})
    return float(res.x)


@record
class Exponent(Record):
    """The fitted exponent alpha of q_k proportional to D_k^alpha (:func:`fit_exponent`): its
    95% bootstrap interval [lo, hi], the temperature 1 / alpha, the prompts fitted, the bootstrap
    resamples, and whether alpha sits at :data:`ALPHA_MAX`."""

    alpha: float
    lo: float
    hi: float
    temperature: float
    n_prompts: int
    bootstrap: int
    at_bound: bool


@record
class PerPrompt(Record):
    """Calibration inside each prompt (:func:`per_prompt_distance`): the mean TV(q, D) and the
    two choosers' and the 1/K mixer's mean distances on the same proportions."""

    tv: MeanCI
    matching_chooser: float
    majority_chooser: float
    uniform_mixer: float


@record
class ReliabilityBin(Record):
    """One bin [lo, hi] of D of the reliability curve: its (D, P) pairs, their mean D, and the
    mean raw P and renormalised q (None with fewer than two defined q)."""

    lo: float
    hi: float
    n: int
    d: float
    p: MeanCI
    q: MeanCI | None


@record
class Reliability(Record):
    """The reliability curve (:func:`reliability`): its non-empty bins of D."""

    bins: tuple[ReliabilityBin, ...]


@record
class CalibrationRows(Record):
    """Per prompt, the in-context proportions D and the answer probabilities P (the scatter's)."""

    d: tuple[tuple[float, ...], ...]
    p: tuple[tuple[float, ...], ...]


@record
class CalibrationEntry(Record):
    """One model's calibration (:func:`summarize`): its name and kind (``trained``,
    ``constructed``, ``llm``), the K of its mixtures, the prompts, the fitted exponent, the
    per-prompt distance, the reliability curve and the first 400 prompts' rows."""

    name: str
    kind: str | None = optional()
    ks: tuple[int, ...] | None = optional()
    n_prompts: int
    exponent: Exponent
    per_prompt: PerPrompt
    reliability: Reliability
    rows: CalibrationRows


@record
class CalibrationConfig(Record):
    """The inputs of ``superpose scaling calibration``: the study and the LLM calibration files."""

    study: str
    llm: tuple[str, ...]


@result_type("scaling calibration")
@record
class CalibrationResult(Stamped):
    """The result of ``superpose scaling calibration``: one :class:`CalibrationEntry` per model
    (the study's scaling family and constructed model, then the LLM runs)."""

    config: CalibrationConfig
    models: tuple[CalibrationEntry, ...]


def fit_exponent(d_rows, p_rows, *, bootstrap: int = 200, seed: int = 0) -> Exponent:
    """The exponent alpha of q_k proportional to D_k^alpha (module docstring) with a 95%
    percentile bootstrap interval over prompts (``bootstrap`` resamples, ``seed``)."""
    logd, q, mask = _rows(d_rows, p_rows)
    alpha = _fit(logd, q, mask)
    rng = np.random.default_rng(seed)
    n = len(logd)
    boots = [_fit(logd[i], q[i], mask[i]) for i in (rng.integers(0, n, n) for _ in range(bootstrap))]
    lo, hi = (np.percentile(boots, [2.5, 97.5]).tolist() if boots else (float("nan"), float("nan")))
    return Exponent(alpha=alpha, lo=lo, hi=hi, temperature=(1.0 / alpha if alpha else float("inf")), n_prompts=n,
                    bootstrap=bootstrap, at_bound=bool(alpha > ALPHA_MAX - 0.01))


def reliability(d_rows, p_rows, bins: Sequence[float] = BINS) -> Reliability:
    """Mean raw P and renormalised q per bin of D, pooled over prompts and tasks (with 95%
    intervals and counts; empty bins are left out)."""
    d_all, p_all, q_all = [], [], []
    for d, p in zip(d_rows, p_rows):
        d, p = np.asarray(d, np.float64), np.asarray(p, np.float64)
        total = p.sum()
        d_all.extend(d)
        p_all.extend(p)
        q_all.extend(p / total if total > 0 else np.full_like(p, np.nan))
    d_all, p_all, q_all = map(np.asarray, (d_all, p_all, q_all))
    edges = np.asarray(bins, np.float64)
    which = np.clip(np.digitize(d_all, edges[1:-1], right=True), 0, len(edges) - 2)
    out = []
    for b in range(len(edges) - 1):
        m = which == b
        if m.sum() < 2:
            continue
        q = q_all[m][~np.isnan(q_all[m])]
        out.append(ReliabilityBin(lo=float(edges[b]), hi=float(edges[b + 1]), n=int(m.sum()), d=float(d_all[m].mean()),
                                  p=MeanCI.of(p_all[m]), q=MeanCI.of(q) if len(q) > 1 else None))
    return Reliability(bins=tuple(out))


def per_prompt_distance(d_rows, p_rows) -> PerPrompt:
    """Calibration inside each prompt: the mean total-variation distance between q (the
    renormalised answer probabilities) and D, with the values of the two choosers on the same
    proportions: one that puts all mass on a task drawn with probability D_k (it matches D on
    average over prompts, so the reliability curve and alpha cannot tell it from proportional
    mixing; its expected distance is 1 - sum D_k^2) and one that always picks the majority task
    (1 - max D); and of a mixer that ignores D (1/K on each task)."""
    tv, matching, majority, uniform = [], [], [], []
    for d, p in zip(d_rows, p_rows):
        d, p = np.asarray(d, np.float64), np.asarray(p, np.float64)
        if p.sum() <= 0:
            continue
        tv.append(0.5 * np.abs(p / p.sum() - d).sum())
        matching.append(1.0 - np.sum(d ** 2))
        majority.append(1.0 - d.max())
        uniform.append(0.5 * np.abs(1.0 / len(d) - d).sum())
    return PerPrompt(tv=MeanCI.of(tv), matching_chooser=float(np.mean(matching)),
                     majority_chooser=float(np.mean(majority)), uniform_mixer=float(np.mean(uniform)))


def summarize(name: str, d_rows, p_rows, *, kind: str | None = None,
              ks: Sequence[int] | None = None) -> CalibrationEntry:
    """One model's calibration entry: reliability curve, fitted exponent, the per-prompt
    distance, its ``kind`` and ``ks``; the first 400 prompts' (D, P) rows are kept for the scatter."""
    return CalibrationEntry(name=name, kind=kind, ks=None if ks is None else tuple(ks), n_prompts=len(d_rows),
                            exponent=fit_exponent(d_rows, p_rows), per_prompt=per_prompt_distance(d_rows, p_rows),
                            reliability=reliability(d_rows, p_rows),
                            rows=CalibrationRows(d=tuple(tuple(map(float, r)) for r in d_rows[:400]),
                                                 p=tuple(tuple(map(float, r)) for r in p_rows[:400])))


def plot(entries: Sequence[CalibrationEntry], path: str | os.PathLike, title: str = "") -> os.PathLike:
    """Reliability curves (one panel per model: mean raw P and renormalised q per bin of D,
    the diagonal = proportional) and a last panel with every model's fitted alpha and its
    interval (alpha = 1: proportional)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical import results

    n = len(entries)
    cols = min(4, n + 2)
    rows_n = -(-(n + 2) // cols)
    fig = Figure(figsize=(3.3 * cols, 3.1 * rows_n), dpi=140)
    FigureCanvasAgg(fig)
    for i, e in enumerate(entries):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        pts = [(dk, pk / sum(p)) for d, p in zip(e.rows.d, e.rows.p) if sum(p) > 0 for dk, pk in zip(d, p)]
        if pts:
            ax.scatter(*zip(*pts), s=4, alpha=0.2, color="tab:orange", linewidths=0, label="q, each prompt")
        bins = e.reliability.bins
        d = [b.d for b in bins]
        ax.errorbar(d, [b.p.mean for b in bins], yerr=[b.p.ci95 for b in bins], fmt="o-",
                    markersize=3, color="tab:blue", label="raw P")
        qb = [b for b in bins if b.q is not None]
        ax.errorbar([b.d for b in qb], [b.q.mean for b in qb], yerr=[b.q.ci95 for b in qb],
                    fmt="s--", markersize=3, color="tab:orange", label="renormalised q")
        ax.plot([0, 1], [0, 1], ":", color="gray", label="proportional")
        ex, pp = e.exponent, e.per_prompt
        ax.set_title(f"{e.name}: {e.n_prompts} prompts\nalpha={ex.alpha:.2f} [{ex.lo:.2f}, {ex.hi:.2f}]"
                     f"{' (bound)' if ex.at_bound else ''}; per prompt TV(q, D)={pp.tv.mean:.2f}\n"
                     f"(a chooser matching D: {pp.matching_chooser:.2f})", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("in-context proportion D", fontsize=8)
        ax.set_ylabel("answer probability", fontsize=8)
        ax.grid(alpha=0.3)
        if i == 0:
            handles, labels = ax.get_legend_handles_labels()
    ax = fig.add_subplot(rows_n, cols, n + 1)
    alphas = [e.exponent for e in entries]
    y = np.arange(n)
    ax.errorbar([a.alpha for a in alphas], y,
                xerr=[[a.alpha - a.lo for a in alphas], [a.hi - a.alpha for a in alphas]],
                fmt="o", color="black", capsize=3)
    ax.axvline(1.0, color="tab:green", ls="--", lw=1, label="proportional (1)")
    ax.axvline(0.0, color="gray", ls=":", lw=1, label="ignores D (0)")
    ax.set_yticks(y, [e.name for e in entries], fontsize=7)
    ax.set_xlabel("fitted exponent alpha (q ~ D^alpha)", fontsize=8)
    ax.grid(alpha=0.3)
    more = ax.get_legend_handles_labels()
    ax = fig.add_subplot(rows_n, cols, n + 2)
    pp = [e.per_prompt for e in entries]
    ax.errorbar([p.tv.mean for p in pp], y, xerr=[p.tv.ci95 for p in pp], fmt="o", color="black",
                capsize=3, label="the model")
    ax.plot([p.matching_chooser for p in pp], y, "x", color="tab:red", label="chooser matching D")
    ax.plot([p.majority_chooser for p in pp], y, "+", color="tab:purple", label="majority chooser")
    ax.plot([p.uniform_mixer for p in pp], y, "|", color="tab:blue", markersize=9, label="1/K mixer (ignores D)")
    ax.axvline(0.0, color="tab:green", ls="--", lw=1, label="proportional (0)")
    ax.set_yticks(y, [e.name for e in entries], fontsize=7)
    ax.set_xlabel("per prompt TV(q, D)", fontsize=8)
    ax.grid(alpha=0.3)
    for h, lab in zip(*more):
        handles.append(h)
        labels.append(f"alpha: {lab}")
    for h, lab in zip(*ax.get_legend_handles_labels()):
        handles.append(h)
        labels.append(f"TV: {lab}")
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(len(labels), 6))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07 if rows_n > 1 else 0.12, 1, 1))
    return results.save_figure(fig, path)
