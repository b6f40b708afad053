"""Lambda sweeps on mixed prompts (the paper's Figure 3), read per prompt.

For lambda in {0, 0.1, ..., 1}, ``n_prompts`` prompts whose examples follow task A with
probability lambda and task B otherwise (i.i.d. per example), then a query whose A and B
answers differ. At the query's last position the model's next-token distribution is read:
P(answer of A), P(answer of B), the rest, the argmax hit rates, KL(D || P) with D the
prompt's actual task proportions (docs/theory.md section 6), and the within-prompt statistics of
:mod:`empirical.within_prompt` (second-largest task probability, entropy of the task
distribution, share of prompts giving both tasks >= 0.1). Means come with 95% normal
confidence intervals over prompts; the per-prompt values are kept in the result.

Any model can be swept: :func:`sweep` takes a :class:`empirical.models.Model` and reads its
``last_probs`` (a trained model: ``FlaxModel.trained``; a constructed one: ``FlaxModel.of``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from empirical import results as results_lib
from empirical import synthetic
from empirical import within_prompt as wp
from empirical.analysis.divergence import kl as _kl
from empirical.analysis.grid import LAMBDAS  # the paper's grid: lambda in {0, 0.1, ..., 1}
from empirical.results import MeanCI, Record, Stampable, key, optional, record, result_type
from empirical.within_prompt import Reference, VarianceRatio

#: The lambdas of the per-prompt scatter panel.
SCATTER_LAMBDAS = (0.1, 0.3, 0.5, 0.7, 0.9)


# --------------------------------------------------------------------------- the result, typed


@record
class PerPrompt(Record):
    """Each prompt's P(A) and P(B) (5 decimals) and its share of task A's examples (4 decimals)."""

    p_a: tuple[float, ...]
    p_b: tuple[float, ...]
    share_a: tuple[float, ...]


@record
class SweepPoint(Record):
    """Every statistic of one lambda (means over prompts with their 95% intervals):
    P(A), P(B), the mass elsewhere, the argmax hit rates, KL(D || P), the within-prompt
    statistics (:mod:`empirical.within_prompt`), the variance ratios (left out of sweeps saved
    before they were recorded), the pure strategies' values, the mean probability of every task
    of the family's answer, the share of prompts that follow their last example, and the
    per-prompt values."""

    lam: float = key("lambda")
    p_a: MeanCI
    p_b: MeanCI
    p_other: MeanCI
    acc_a: MeanCI
    acc_b: MeanCI
    kl: MeanCI
    second: MeanCI
    entropy: MeanCI
    several: MeanCI
    variance_ratio: VarianceRatio | None = optional()
    reference: Reference
    family_tasks: dict[str, float]
    follows_last: MeanCI
    per_prompt: PerPrompt


@record
class ConstructedModel(Record):
    """The constructed model of a sweep's ``constructed`` overlay: its attention sharpness and
    its :class:`construction.spec.ConstructionSpec` (``to_dict``)."""

    kind: str
    beta: float
    spec: dict[str, Any]


@result_type("sweep")
@record
class Sweep(Stampable):
    """A lambda sweep (:func:`sweep`): the family, the two tasks A and B, the prompts' numbers and
    one :class:`SweepPoint` per lambda. ``superpose sweep`` sets the provenance fields
    (``config`` ... ``checkpoint_step``), the ``constructed`` overlay (lookup family) and ``plot``;
    the overlay itself carries its ``model``. Fields left None are left out of the JSON."""

    run: str | None = optional()
    checkpoint_step: int | None = optional()
    family: str
    tasks: tuple[str, str]
    task_labels: tuple[str, str]
    n_prompts: int
    n_examples: int
    seed: int
    lambdas: tuple[float, ...]
    points: tuple[SweepPoint, ...]
    model: ConstructedModel | None = optional()
    constructed: Sweep | None = optional()
    plot: str | None = optional()


# --------------------------------------------------------------------------- the sweep


def _family_answers(fam: synthetic.Family, p: np.ndarray, query: np.ndarray) -> dict:
    """Mean probability of the answer of EVERY task of the family to each prompt's query (which
    task the model follows, e.g. an interpolated one; tasks whose answers coincide share it)."""
    rows = np.arange(len(p))
    return {fam.task(h): float(p[rows, fam.answers(query, np.full(len(p), h))].mean()) for h in fam.params}


def _point(lam: float, p: np.ndarray, prompts: dict, fam: synthetic.Family) -> SweepPoint:
    """Every statistic of one lambda from the next-token distributions ``p`` [P, V]."""
    answers = prompts["answers"]
    p_ans = np.take_along_axis(p, answers, axis=1)  # [P, 2]
    top = p.argmax(axis=1)
    share_a = (prompts["example_task"] == 0).mean(axis=1)
    d = np.stack([share_a, 1.0 - share_a], axis=1)  # D: the prompt's actual task proportions
    kl = _kl(d, p_ans)
    ratio_a, ratio_b = wp.variance_ratio(p_ans)
    return SweepPoint(
        lam=float(lam),
        p_a=MeanCI.of(p_ans[:, 0]),
        p_b=MeanCI.of(p_ans[:, 1]),
        p_other=MeanCI.of(1.0 - p_ans.sum(axis=1)),
        acc_a=MeanCI.of(top == answers[:, 0]),
        acc_b=MeanCI.of(top == answers[:, 1]),
        kl=MeanCI.of(kl),
        **{name: MeanCI.of(values) for name, values in wp.per_prompt(p_ans).items()},
        # var / (m (1 - m)) of P(A) and P(B) over prompts: 1 for a per-prompt chooser
        variance_ratio=VarianceRatio(a=ratio_a, b=ratio_b),
        reference=Reference.of([lam, 1.0 - lam]),
        family_tasks=_family_answers(fam, p, prompts["query"]),
        # the share of prompts whose larger answer is the task of their LAST example (a model
        # that reads the task off the previous example alone scores 1 at every lambda)
        follows_last=MeanCI.of((p_ans[:, 0] >= p_ans[:, 1]) == (prompts["example_task"][:, -1] == 0)),
        per_prompt=PerPrompt(p_a=tuple(np.round(p_ans[:, 0], 5).tolist()),
                             p_b=tuple(np.round(p_ans[:, 1], 5).tolist()),
                             share_a=tuple(np.round(share_a, 4).tolist())),
    )


def sweep(
    model,
    family: str | synthetic.Family,
    tasks: Sequence[int],
    *,
    n_prompts: int = 1000,
    n_examples: int = 100,
    lambdas: Sequence[float] = LAMBDAS,
    seed: int = 0,
    progress: bool = True,
) -> Sweep:
    """P(answer of A = tasks[0]) and P(answer of B = tasks[1]) against lambda (A's share).

    ``model`` is a :class:`empirical.models.Model` (its ``last_probs`` give the next-token
    distributions [P, V] of the prompts [P, L]) or such a function itself (a stand-in model,
    a float64 construction's ``probabilities``). Returns a :class:`Sweep` with one
    :class:`SweepPoint` per lambda: every statistic a :class:`empirical.results.MeanCI` over the
    prompts, ``point.per_prompt`` each prompt's P(A), P(B) and A's share, and
    ``point.family_tasks`` the mean probability of every task of the family's answer
    (does the model follow A, B, or a third task such as an interpolated one?). Prompts for lambda
    index i come from ``numpy.random.default_rng([seed, i])``, so two models swept with the
    same arguments read identical prompts.
    """
    from tqdm.auto import tqdm

    fam = synthetic.family(family) if isinstance(family, str) else family
    probs = model if callable(model) else model.last_probs
    if len(tasks) != 2:
        raise ValueError(f"a sweep compares two tasks, got {len(tasks)}")
    if n_prompts < 2:
        raise ValueError(f"need at least 2 prompts per lambda for a confidence interval, got {n_prompts}")
    if n_examples < 1:
        raise ValueError(f"need at least 1 example per prompt, got {n_examples}")
    bad = [lam for lam in lambdas if not 0.0 <= lam <= 1.0]
    if bad:
        raise ValueError(f"lambda must lie in [0, 1], got {bad[0]}")
    points = []
    for i, lam in enumerate(tqdm(lambdas, disable=not progress, desc="sweep", unit="lambda")):
        rng = np.random.default_rng([seed, i])
        prompts = synthetic.mixed_prompts(fam, rng, n_prompts, n_examples, tasks, [lam, 1.0 - lam])
        p = np.asarray(probs(prompts["tokens"]), dtype=np.float64)
        points.append(_point(lam, p, prompts, fam))
    return Sweep(
        family=fam.name,
        tasks=tuple(fam.task(h) for h in tasks),
        task_labels=tuple(fam.task_label(h) for h in tasks),
        n_prompts=n_prompts,
        n_examples=n_examples,
        seed=seed,
        lambdas=tuple(float(x) for x in lambdas),
        points=tuple(points),
    )


def sweep_run(model, fam: synthetic.Family, tasks: Sequence[int], *, n_prompts: int = 1000,
              n_examples: int = 100, seed: int = 0, beta: float = 30.0, progress: bool = True) -> Sweep:
    """:func:`sweep` of a trained :class:`empirical.models.Model`; for the lookup family also
    of the constructed model of the same tasks on the same prompts (``result.constructed``,
    at attention sharpness ``beta``)."""
    kw = dict(n_prompts=n_prompts, n_examples=n_examples, seed=seed, progress=progress)
    result = sweep(model, fam, tasks, **kw)
    if fam.task_set is not None:
        from empirical.models import FlaxModel

        constructed_model = FlaxModel.constructed(fam.task_set, max_examples=max(64, n_examples), beta=beta)
        constructed = replace(sweep(constructed_model, fam, tasks, **kw),
                              model=ConstructedModel(kind="constructed", beta=beta,
                                                     spec=constructed_model.spec.to_dict()))
        result = replace(result, constructed=constructed)
    return result


def variance_ratios(result: Sweep) -> dict[float, VarianceRatio]:
    """Per lambda, var / (m (1 - m)) of P(A) and P(B) over the prompts
    (:func:`empirical.within_prompt.variance_ratio`): the saved value, or for a sweep saved
    before it was recorded, recomputed from the per-prompt values (kept to 5 decimals)."""
    out = {}
    for pt in result.points:
        if pt.variance_ratio is not None:
            out[float(pt.lam)] = pt.variance_ratio
        else:
            pp = pt.per_prompt
            ratio_a, ratio_b = wp.variance_ratio(np.stack([pp.p_a, pp.p_b], axis=1))
            out[float(pt.lam)] = VarianceRatio(a=ratio_a, b=ratio_b)
    return out


def series(result: Sweep, name: str, stat: str = "mean") -> np.ndarray:
    """One statistic of the sweep as an array over lambda (e.g. ``series(r, "p_a")``: the
    ``mean`` of every point's ``p_a``)."""
    return np.array([getattr(getattr(pt, name), stat) for pt in result.points])


def at(result: Sweep, lam: float) -> SweepPoint:
    """The sweep's point at ``lam``."""
    for pt in result.points:
        if abs(pt.lam - lam) < 1e-9:
            return pt
    raise KeyError(f"lambda {lam} is not in the sweep {list(result.lambdas)}")


def plot(result: Sweep, path: str | os.PathLike, title: str | None = None, *,
         overlay: Sweep | None = None, overlay_name: str = "constructed") -> Path:
    """Figure 3 with its per-prompt view, side by side.

    Left: mean P(A), P(B) (95% bands), "other", the mean second-largest task probability
    (within-prompt superposition) and the ideal mixture against lambda; an ``overlay`` sweep
    (e.g. the constructed model on the same prompts) is drawn dashed. Right: every prompt's
    (P(A), P(B)) at lambda in :data:`SCATTER_LAMBDAS`, with the two pure strategies: a
    per-prompt chooser sits at the axes' ends (1, 0) and (0, 1); proportional mixing at
    (lambda, 1 - lambda) (crosses). Written atomically (matplotlib Agg).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lam = np.array(result.lambdas)
    name_a, name_b = result.task_labels
    fig = Figure(figsize=(10.5, 4.0), dpi=150)
    FigureCanvasAgg(fig)
    ax, sc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key, name, color in (("p_a", name_a, "tab:blue"), ("p_b", name_b, "tab:orange")):
        ax.plot(lam, series(result, key), "o-", color=color, label=f"P({name})", markersize=4)
        ax.fill_between(lam, series(result, key, "lo"), series(result, key, "hi"), color=color, alpha=0.25)
        if overlay is not None:
            ax.plot(overlay.lambdas, series(overlay, key), "--", color=color, linewidth=1.2,
                    label=f"{overlay_name}: P({name})")
    ax.plot(lam, series(result, "p_other"), "s:", color="gray", label="other", markersize=3)
    ax.plot(lam, series(result, "second"), "d-", color="tab:green", markersize=3,
            label="mean 2nd-largest task prob.\n(within-prompt)")
    ax.plot(lam, np.minimum(lam, 1 - lam), ":", color="tab:green", alpha=0.6, linewidth=1,
            label="2nd-largest if proportional")
    ax.plot(lam, lam, "--", color="tab:blue", alpha=0.4, linewidth=1)
    ax.plot(lam, 1 - lam, "--", color="tab:orange", alpha=0.4, linewidth=1)
    ax.set_xlabel(rf"$\lambda$ (share of {name_a} examples)")
    ax.set_ylabel("probability of the answer")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper center")
    ax.set_title(title or f"{name_a} vs {name_b}: {result.n_prompts} prompts of {result.n_examples} examples",
                 fontsize=8)
    colors = ("tab:purple", "tab:blue", "tab:green", "tab:orange", "tab:red")
    for value, color in zip(SCATTER_LAMBDAS, colors):
        try:
            pt = at(result, value)
        except KeyError:
            continue
        sc.scatter(pt.per_prompt.p_a, pt.per_prompt.p_b, s=4, alpha=0.35, color=color, label=rf"$\lambda$={value}")
        sc.plot([value], [1 - value], "x", color=color, markersize=9, markeredgewidth=2)
    sc.plot([0, 1], [1, 0], "-", color="gray", linewidth=0.8, alpha=0.5)
    sc.plot([1, 0], [0, 1], "s", color="black", markersize=6, label="chooser (per prompt)")
    sc.set_xlabel(f"P({name_a}) per prompt")
    sc.set_ylabel(f"P({name_b}) per prompt")
    sc.set_xlim(-0.02, 1.02)
    sc.set_ylim(-0.02, 1.02)
    sc.set_aspect("equal")
    sc.grid(alpha=0.3)
    sc.legend(fontsize=6, loc="upper right", markerscale=2)
    sc.set_title("each prompt; x = proportional mixing at that lambda", fontsize=8)
    fig.tight_layout()
    return results_lib.save_figure(fig, path)


def command(run: str, tasks: str, *, prompts: int = 1000, examples: int | None = None, batch: int = 50,
            beta: float = 30.0, seed: int = 0, out=None, json_path=None, progress: bool = True, echo=print) -> Sweep:
    """``superpose sweep``: the Figure 3 sweep of a trained run on two of its family's tasks
    (``tasks`` = ``"A,B"``), its plot in ``out`` and its JSON; ``echo`` gets three summary lines."""
    from empirical import runs, training
    from empirical.models import FlaxModel

    names = [t for t in tasks.split(",") if t.strip()]
    synthetic.parse_tasks(names)  # the shape of the argument, before loading anything
    cfg, params, step = runs.load(run)
    fam, hs = synthetic.parse_tasks(names, cfg.tasks)
    if len(hs) != 2:
        raise ValueError(f"--tasks needs exactly two tasks A,B, got {len(hs)}")
    if cfg.family != fam.name:
        raise ValueError(f"{run} was trained on family {cfg.family!r}; the tasks are {fam.name!r} tasks")
    n_examples = examples or cfg.n_examples - 1
    if n_examples > cfg.n_examples - 1 and cfg.model.positions == "learned":
        raise ValueError(f"{run} has learned positions for {cfg.n_examples} examples: prompts can hold at "
                         f"most {cfg.n_examples - 1} examples and the query")
    model = FlaxModel(str(run), cfg.model, params, "learned", batch=batch)
    result = sweep_run(model, cfg.fam, hs, n_prompts=prompts, n_examples=n_examples, seed=seed, beta=beta,
                       progress=progress)
    result = replace(result, **training.provenance(cfg), command="sweep", run=run, checkpoint_step=step)
    name_a, name_b = result.tasks
    if out:
        stem = f"sweep_{name_a}_{name_b}".replace(":", "")
        result = replace(result, plot=str(plot(result, Path(out) / f"{stem}.png", overlay=result.constructed)))
    if json_path:
        result.write(json_path)
    for lam in (0.0, 0.5, 1.0):
        pt = at(result, lam)
        echo(f"lambda={lam:.1f}: P({name_a})={pt.p_a.mean:.3f}±{pt.p_a.ci95:.3f}  "
             f"P({name_b})={pt.p_b.mean:.3f}±{pt.p_b.ci95:.3f}  "
             f"within-prompt 2nd-largest {pt.second.mean:.3f}")
    return result
