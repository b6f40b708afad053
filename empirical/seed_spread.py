"""The shipped single-task families (tiny presets of ``add``, ``copy`` and ``lookup``) at
several seeds: do their single-task accuracy and their Figure 3 sweeps hold beyond seed 0?

Seed 0 is the shipped model itself; the other seeds of a family train in one vmapped step
(:func:`empirical.training.train_many`) with exactly the shipped model's configuration but
the seed.
:func:`evaluate` measures every seed on the same fresh sequences and prompts: single-task
accuracy (:func:`empirical.training.evaluate_tasks`), and the Figure 3 sweep of the family's
two tasks (:func:`empirical.sweep.sweep`, ``n_prompts`` per lambda): per lambda the mean
P(A) and P(B), the per-prompt variance ratio var / (m (1 - m)) of P(A) (1 for a chooser,
~1/m for proportional mixing), and the mean second-largest task probability.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from empirical import training
from empirical.results import Record, Stampable, key, optional, read_result, record, result_type

#: Each family's Figure 3 pair (the shipped sweeps': benchmarks/results/training/sweep_*.json).
FIGURE3 = {"add": ("add:2", "add:6"), "copy": ("copy:1", "copy:5"), "lookup": ("lookup:0", "lookup:1")}
SEEDS = (0, 1, 2)
#: The sweep's lambdas (five points of the paper's grid).
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


# --------------------------------------------------------------------------- the result, typed


@record
class Accuracy(Record):
    """Single-task answer accuracy (:func:`empirical.training.evaluate_tasks`): over every
    example, over the second half of the examples, and of the worst task there."""

    answer_acc: float
    answer_acc_late: float
    worst_task_late: float


@record
class SeedPoint(Record):
    """One lambda of a model's Figure 3 sweep: mean P(A), P(B) and mass elsewhere, the variance
    ratio of P(A) (None where its mean is 0 or 1), the mean second-largest task probability and
    the share of prompts that follow their last example."""

    lam: float = key("lambda")
    p_a: float
    p_b: float
    p_other: float
    variance_ratio_a: float | None
    second: float
    follows_last: float


@record
class SeedEntry(Record):
    """One model (:func:`measure`); :func:`evaluate` adds which run it is, its step and its
    weight fingerprint."""

    accuracy: Accuracy
    tasks: tuple[str, str]
    points: tuple[SeedPoint, ...]
    run: str | None = optional()
    step: int | None = optional()
    fingerprint: str | None = optional()


@result_type("seeds eval")
@record
class SeedStudy(Stampable):
    """``superpose seeds eval``: every family's models by seed (``families[family][str(seed)]``),
    measured on the same prompts; the provenance fields are set by the command line
    (``merged_from``: how a study merged from several runs was put together)."""

    families: dict[str, dict[str, SeedEntry]]
    seeds: tuple[int, ...]
    lambdas: tuple[float, ...]
    n_prompts: int
    sequences: int
    seed: int
    figure3_tasks: dict[str, tuple[str, str]]
    merged_from: str | None = optional()


@record
class Spread(Record):
    """Mean, min and max over seeds (``n`` of them)."""

    mean: float
    lo: float
    hi: float
    n: int


@record
class SpreadRow(Record):
    """One family of :func:`table`: its accuracy and its numbers at lambda 0.5, over seeds."""

    family: str
    seeds: int
    accuracy: Spread
    p_a: Spread
    p_b: Spread
    variance_ratio: Spread
    second: Spread


# --------------------------------------------------------------------------- the study


def config(family: str, seed: int) -> training.TrainConfig:
    """The shipped model's configuration (``training.tiny(family)``) with ``seed``."""
    if family not in FIGURE3:
        raise ValueError(f"family must be one of {', '.join(FIGURE3)}, got {family!r}")
    return training.tiny(family, seed=int(seed))


def run_name(family: str, seed: int) -> str:
    return f"{family}-seed{seed}"


def train(runs: str | os.PathLike, families=tuple(FIGURE3), seeds=SEEDS, *, progress: bool = True) -> list[Path]:
    """Train every family's seeds but 0 (the shipped model) into ``runs`` (one vmapped step per
    family; finished runs are kept, unfinished ones resumed). Returns the run directories."""
    runs, made = Path(runs), []
    seeds = [s for s in seeds if s != 0]
    for fam in families:
        cfgs = [config(fam, s) for s in seeds]
        outs = [runs / run_name(fam, s) for s in seeds]
        todo = [(c, o) for c, o in zip(cfgs, outs) if not training.finished(o, c.steps)]
        if todo:
            training.train_many([c for c, _ in todo], [o for _, o in todo],
                                resume=all((o / "config.json").exists() for _, o in todo), progress=progress)
        made += outs
    return made


def measure(cfg: training.TrainConfig, params, *, n_prompts: int = 200, sequences: int = 200,
            seed: int = 0) -> SeedEntry:
    """One model: single-task accuracy and its Figure 3 sweep's per-lambda numbers."""
    from empirical import sweep as sweep_lib
    from empirical import synthetic
    from empirical.models import FlaxModel

    acc = training.evaluate_tasks(cfg, params, sequences=sequences, seed=seed)
    fam, tasks = synthetic.parse_tasks(list(FIGURE3[cfg.family]), cfg.tasks)
    result = sweep_lib.sweep(FlaxModel("model", cfg.model, params), cfg.fam, tasks, n_prompts=n_prompts,
                             n_examples=cfg.n_examples - 1, lambdas=LAMBDAS, seed=seed, progress=False)
    points = []
    for pt in result.points:
        pp = np.stack([pt.per_prompt.p_a, pt.per_prompt.p_b], axis=1)
        points.append(SeedPoint(lam=pt.lam, p_a=pt.p_a.mean, p_b=pt.p_b.mean, p_other=pt.p_other.mean,
                                variance_ratio_a=pt.variance_ratio.a, second=float(np.sort(pp, axis=1)[:, -2].mean()),
                                follows_last=pt.follows_last.mean))
    return SeedEntry(accuracy=Accuracy(**{k: acc[k] for k in ("answer_acc", "answer_acc_late", "worst_task_late")}),
                     tasks=result.tasks, points=tuple(points))


def evaluate(runs: str | os.PathLike, families=tuple(FIGURE3), seeds=SEEDS, *, n_prompts: int = 200,
             sequences: int = 200, seed: int = 0, progress: bool = True) -> SeedStudy:
    """Measure every family and seed (seed 0: the shipped model; the others from ``runs``) with
    :func:`measure` on the same sequences and prompts, with each model's weight fingerprint."""
    from tqdm.auto import tqdm

    from empirical import runs as runs_lib
    from empirical.scaling import fingerprint

    runs = Path(runs)
    out: dict[str, dict[str, SeedEntry]] = {}
    jobs = [(f, s) for f in families for s in seeds]
    for fam, s in tqdm(jobs, disable=not progress, desc="seeds", unit="model"):
        cfg, params, step = runs_lib.load(fam) if s == 0 else training.load_run(runs / run_name(fam, s))
        if cfg.seed != s or cfg.replace(seed=0) != config(fam, 0):
            raise ValueError(f"{fam} seed {s}: the model's configuration is not the shipped one with seed {s}")
        entry = measure(cfg, params, n_prompts=n_prompts, sequences=sequences, seed=seed)
        entry = replace(entry, run=f"shipped {fam}" if s == 0 else run_name(fam, s), step=step,
                        fingerprint=fingerprint(params))
        out.setdefault(fam, {})[str(s)] = entry
    return SeedStudy(families=out, seeds=tuple(seeds), lambdas=LAMBDAS, n_prompts=n_prompts, sequences=sequences,
                     seed=seed, figure3_tasks={f: FIGURE3[f] for f in families})


def spread(values) -> Spread:
    """Mean, min and max over seeds."""
    v = np.asarray(values, dtype=np.float64)
    return Spread(mean=float(v.mean()), lo=float(v.min()), hi=float(v.max()), n=int(v.size))


def table(study: SeedStudy) -> list[SpreadRow]:
    """Per family: the accuracy and the lambda-0.5 numbers as mean and range over seeds."""
    rows = []
    for fam, seeds in study.families.items():
        mid = [next(p for p in e.points if abs(p.lam - 0.5) < 1e-9) for e in seeds.values()]
        rows.append(SpreadRow(family=fam, seeds=len(seeds),
                              accuracy=spread([e.accuracy.answer_acc_late for e in seeds.values()]),
                              p_a=spread([m.p_a for m in mid]), p_b=spread([m.p_b for m in mid]),
                              variance_ratio=spread([m.variance_ratio_a for m in mid]),
                              second=spread([m.second for m in mid])))
    return rows


def summary(study: SeedStudy) -> str:
    lines = [f"{'family':8s} {'seeds':>5s} {'accuracy':>20s} {'P(A)@0.5':>20s} {'var ratio@0.5':>20s} "
             f"{'second@0.5':>20s}"]
    fmt = lambda s: f"{s.mean:.3f} [{s.lo:.3f}, {s.hi:.3f}]"  # noqa: E731
    for r in table(study):
        lines.append(f"{r.family:8s} {r.seeds:5d} {fmt(r.accuracy):>20s} {fmt(r.p_a):>20s} "
                     f"{fmt(r.variance_ratio):>20s} {fmt(r.second):>20s}")
    return "\n".join(lines)


def plot(study: SeedStudy, path: str | os.PathLike) -> Path:
    """Per family, P(A), P(B) and the variance ratio against lambda, one line per seed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    fams = list(study.families)
    fig = Figure(figsize=(4 * len(fams), 6.4), dpi=150)
    FigureCanvasAgg(fig)
    for j, fam in enumerate(fams):
        ax, ax_v = fig.add_subplot(2, len(fams), j + 1), fig.add_subplot(2, len(fams), len(fams) + j + 1)
        for i, e in enumerate(study.families[fam].values()):
            lam = [p.lam for p in e.points]
            ax.plot(lam, [p.p_a for p in e.points], color="tab:blue", alpha=0.8, marker="o", ms=3,
                    label="P(A)" if i == 0 else None)
            ax.plot(lam, [p.p_b for p in e.points], color="tab:orange", alpha=0.8, marker="o", ms=3,
                    label="P(B)" if i == 0 else None)
            ax_v.plot(lam, [p.variance_ratio_a for p in e.points], color="tab:green", alpha=0.8, marker="o",
                      ms=3, label="a seed" if i == 0 else None)
        a, b = study.figure3_tasks[fam]
        ax.set(title=f"{fam}: A = {a}, B = {b}", xlabel="lambda (A's share)", ylabel="mean probability", ylim=(0, 1))
        ax_v.set(xlabel="lambda", ylabel="var P(A) / (m (1 - m))", ylim=(0, 1.05))
        ax_v.axhline(1.0, color="tab:red", ls=":", lw=1, label="a per-prompt chooser")
        for x in (ax, ax_v):
            x.grid(alpha=0.3)
    # one legend for every panel, below them (the lines cross every corner of the panels)
    handles = [h for x in fig.axes[:2] for h in x.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    fig.suptitle(f"Shipped single-task families, {len(study.seeds)} seeds each "
                 f"({study.n_prompts} prompts per lambda)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, path)


def command(action: str, *, runs: str | os.PathLike = "runs/seeds", families: list[str] | None = None,
            study_path: str | None = None, prompts: int = 200, seed: int = 0,
            out: str | os.PathLike = "benchmarks/results/seeds", json_path: str | None = None,
            progress: bool = True, echo=print) -> SeedStudy | list[Path]:
    """``superpose seeds train|eval|plot`` as one call (``families``: default every Figure 3
    family; ``study_path``: the JSON to plot); echoes what the command prints and returns the
    evaluation (or the trained runs)."""
    from empirical.results import provenance

    out = Path(out)
    families = tuple(families) if families else tuple(FIGURE3)
    for fam in families:
        config(fam, 0)  # an unknown family is one clear error before any work
    if action == "train":
        trained = list(train(runs, families, progress=progress))
        for path in trained:
            echo(f"run: {path}")
        return trained
    if action == "eval":
        study = evaluate(runs, families, n_prompts=prompts, seed=seed, progress=progress)
        study = replace(study, command="seeds eval", **provenance({"families": list(families),
                                                                   "seeds": list(study.seeds),
                                                                   "n_prompts": prompts, "seed": seed}))
        target = json_path or str(out / "seeds.json")
        study.write(target, indent=None)
        echo(summary(study))
        echo(f"json: {target}")
        return study
    if study_path is None:
        raise ValueError("seeds plot needs --study, a `superpose seeds eval` JSON")
    study = read_result(study_path, "seeds eval")
    echo(summary(study))
    echo(f"plot: {plot(study, out / 'seeds.png')}")
    return study
