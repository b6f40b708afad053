"""``superpose train``, ``eval`` and ``export`` as library calls: each takes plain values (the
command line's, already parsed), does the work, writes its files, ``echo``-es the lines the
command prints and returns its result: a :class:`TrainSummary` per trained run, an
:class:`EvalResult` (typed records; ``to_json`` / ``from_json``)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from empirical.results import Record, Stamped, optional, record, result_type
from empirical.training.checkpoints import load_config, provenance
from empirical.training.config import PRESETS, like_construction, param_count
from empirical.training.evaluation import evaluate_tasks
from empirical.training.loop import train_many
from empirical.training.plots import plot_eval, plot_learning_curves


# --------------------------------------------------------------------------- the results, typed


@record
class TrainEval(Record):
    """The in-training evaluation of the final parameters (``cfg.eval_batch`` fresh sequences)."""

    answer_acc: float
    answer_acc_late: float
    loss: float


@record
class TrainGroup(Record):
    """A run trained beside others in one vmapped step: the group's size, this run's index, the
    group's throughput and every run directory of the group."""

    size: int
    index: int
    tokens_per_s: float | None
    runs: tuple[str, ...]


@result_type("train")
@record
class TrainSummary(Stamped):
    """One trained run's summary (``superpose train --json``): the run directory's result.json
    (:func:`empirical.training.train_many`) with ``command`` "train"; ``group`` only for a run
    trained beside others."""

    run: str
    step: int
    resumed_from: int
    params: int
    wall_s: float
    tokens_per_s: float | None
    eval: TrainEval
    example_acc: tuple[float, ...] | None
    group: TrainGroup | None = optional()

    @classmethod
    def of(cls, summary: dict) -> "TrainSummary":
        """The typed summary of :func:`empirical.training.train_many`'s ``summary`` (a dict)."""
        return cls.from_json({**summary, "command": "train"})


@record
class TrainRuns(Record):
    """``superpose train --json`` for several runs at once: the first run's provenance and every
    run's summary."""

    config: dict[str, Any]
    package_version: str
    device: str
    date: str
    runs: tuple[TrainSummary, ...]


@record
class TaskAccuracy(Record):
    """One task's answer accuracy on fresh single-task sequences: over all examples, over the
    second half of them, and per example index."""

    label: str
    answer_acc: float
    answer_acc_late: float
    example_acc: tuple[float, ...]


@result_type("eval", "export")
@record
class EvalResult(Stamped):
    """``superpose eval`` / ``export``: :func:`empirical.training.evaluate_tasks` of a run's
    checkpoint, with provenance; ``to`` (the shipped-model directory) is export's, ``plot``
    eval's."""

    run: str
    to: str | None = optional()
    checkpoint_step: int
    sequences_per_task: int
    seed: int
    n_examples: int
    tasks: dict[str, TaskAccuracy]
    answer_acc: float
    answer_acc_late: float
    worst_task_late: float
    example_acc: tuple[float, ...]
    plot: str | None = optional()

    @classmethod
    def of(cls, evaluation: dict, **fields) -> "EvalResult":
        """The typed result of :func:`empirical.training.evaluate_tasks`'s ``evaluation`` (a
        dict) with the other ``fields`` (provenance, ``command``, ``run`` ...)."""
        return cls.from_json({**fields, **evaluation})


# --------------------------------------------------------------------------- the commands


def members(p_mix: list | None = None, lrs: list | None = None, seeds: list | None = None) -> list[tuple[str | None, dict]]:
    """The models one ``superpose train`` call trains in one step: (run sub-directory or None,
    the TrainConfig fields that vary): every combination of ``p_mix``, ``lrs`` and ``seeds``."""
    grid = [("p_mix", "p_mix", p_mix), ("lr", "lr", lrs), ("seed", "seed", seeds)]
    grid = [(field, label, values) for field, label, values in grid if values is not None]
    named = any(values is not None and (len(values) > 1 or field == "seed") for field, _, values in grid)
    out = []
    for combo in itertools.product(*[values for _, _, values in grid]):
        fields = {field: value for (field, _, _), value in zip(grid, combo)}
        name = "-".join(f"{label}{value:g}" for (_, label, _), value in zip(grid, combo)) if named else None
        out.append((name, fields))
    return out or [(None, {})]


def base_config(*, preset: str | None = None, family: str | None = None, tasks_file: str | None = None,
                like: bool = False, norm: str = "rms", seed: int | None = None, mix: dict | None = None):
    """The TrainConfig the command line describes (before the per-model grid)."""
    from empirical import synthetic
    from empirical.results import read_task_set

    seed = 0 if seed is None else seed
    mix = mix or {}
    if like:
        if preset is not None or family not in (None, "lookup"):
            raise ValueError("--like-construction sets the architecture and the family (lookup) itself; "
                             "drop --preset and --family")
        return like_construction(tasks=read_task_set(tasks_file), norm=norm, seed=seed, **mix)
    if norm != "rms":
        raise ValueError("--norm applies to --like-construction only")
    preset = preset or "tiny"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    family = family or "copy"
    if family not in synthetic.FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(synthetic.FAMILIES)}")
    tasks = read_task_set(tasks_file)
    if tasks is not None and family != "lookup":
        raise ValueError("--tasks-file applies to --family lookup only")
    extra = {"tasks": tasks} if tasks is not None else {}
    return PRESETS[preset](family=family, seed=seed, **extra, **mix)


def train_command(out, *, preset: str | None = None, family: str | None = None, tasks_file: str | None = None,
                  like: bool = False, norm: str = "rms", steps: int | None = None, seed: int | None = None,
                  grid: list[tuple[str | None, dict]] | None = None, mix: dict | None = None, resume: bool = False,
                  json_path: str | None = None, progress: bool = True, echo=print) -> list[TrainSummary]:
    """``superpose train``: every model of ``grid`` (see :func:`members`) into ``out`` (or its
    sub-directory), new or resumed (a resumed run's saved settings must match the given ones);
    the run summaries (the JSON: the one summary, or a :class:`TrainRuns` of several)."""
    out, mix = Path(out), mix or {}
    base = None
    cfgs, outs = [], []
    for name, fields in grid or [(None, {})]:
        run_dir = out if name is None else out / name
        if resume and (run_dir / "config.json").is_file():
            cfg = load_config(run_dir)
            given = {"preset": preset, "family": family, "seed": fields.get("seed", seed), **mix,
                     **{k: v for k, v in fields.items() if k != "seed"}}
            for flag, value in given.items():
                saved = getattr(cfg, flag)
                if value is not None and value != saved:
                    raise ValueError(f"{run_dir} was trained with {flag} {saved!r}, not {value!r}")
            if tasks_file is not None:
                raise ValueError("--tasks-file cannot change on --resume")
        else:
            if (run_dir / "config.json").is_file():
                raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
            if base is None:
                base = base_config(preset=preset, family=family, tasks_file=tasks_file, like=like, norm=norm,
                                   seed=seed, mix=mix)
            cfg = base.replace(**fields)
        if steps is not None:
            cfg = cfg.replace(steps=steps)
        cfgs.append(cfg)
        outs.append(run_dir)
    summaries = [TrainSummary.of(s) for s in train_many(cfgs, outs, resume=resume, progress=progress)]
    if json_path:
        doc = summaries[0] if len(summaries) == 1 else TrainRuns(**provenance(cfgs[0]), runs=tuple(summaries))
        doc.write(json_path)
    for cfg, summary in zip(cfgs, summaries):
        ev = summary.eval
        echo(f"trained {cfg.preset}/{cfg.family} (seed {cfg.seed}) to step {summary.step}: loss {ev.loss:.4f}, "
             f"answer accuracy {ev.answer_acc:.3f} (second half of examples {ev.answer_acc_late:.3f}), "
             f"{summary.tokens_per_s or float('nan'):.0f} tokens/s -> {summary.run}")
    return summaries


def accuracy_lines(result: EvalResult) -> list[str]:
    """Per task and over all tasks: answer accuracy, and in the second half of the examples."""
    lines = [f"  {t.label:28s} answer accuracy {t.answer_acc:.4f}   second half {t.answer_acc_late:.4f}"
             for t in result.tasks.values()]
    lines.append(f"  {'all tasks':28s} answer accuracy {result.answer_acc:.4f}   second half "
                 f"{result.answer_acc_late:.4f} (worst task {result.worst_task_late:.4f})")
    return lines


def eval_command(run: str, *, sequences: int = 200, seed: int = 0, out: str | None = None,
                 json_path: str | None = None, progress: bool = True, echo=print) -> EvalResult:
    """``superpose eval``: single-task answer accuracy of a run directory or shipped model on
    fresh sequences, per task and example index (plot in ``out``, JSON to ``json_path``)."""
    from empirical import runs

    cfg, params, step = runs.load(run)
    evaluation = evaluate_tasks(cfg, params, sequences=sequences, seed=seed, progress=progress)
    plot = str(plot_eval(evaluation | {"run": run}, Path(out) / f"eval_{Path(run).name}.png")) if out else None
    result = EvalResult.of(evaluation, **provenance(cfg), command="eval", run=run, checkpoint_step=step, plot=plot)
    if json_path:
        result.write(json_path)
    echo(f"{run} ({cfg.family}, step {step}), {sequences} fresh sequences per task, seed {seed}:")
    for line in accuracy_lines(result):
        echo(line)
    return result


def export_command(run: str, to: str, *, sequences: int = 200, seed: int = 0, out: str | None = None,
                   json_path: str | None = None, progress: bool = True, echo=print) -> EvalResult:
    """``superpose export``: copy a training run's weights into a shipped-model directory ``to``
    with its evaluation (learning-curve and evaluation plots in ``out``)."""
    from empirical import runs

    src = runs.resolve(run)
    if not (src / "config.json").is_file():
        raise ValueError(f"{src} is not a training run: config.json is missing")
    cfg, params, step = runs.load(src)
    evaluation = evaluate_tasks(cfg, params, sequences=sequences, seed=seed, progress=progress)
    dest = runs.export(src, to, summary={"eval": {**evaluation, "command": "export"}})
    name = Path(to).name
    if out:
        plot_learning_curves(src, Path(out) / f"learning_{name}.png",
                             title=f"{name}: {cfg.preset}/{cfg.family}, {param_count(params)} parameters")
        plot_eval(evaluation | {"run": name}, Path(out) / f"eval_{name}.png")
    result = EvalResult.of(evaluation, **provenance(cfg), command="export", run=str(src), to=str(dest),
                           checkpoint_step=step)
    if json_path:
        result.write(json_path)
    echo(f"exported {src} (step {step}) -> {dest}: answer accuracy {result.answer_acc:.4f}, "
         f"second half {result.answer_acc_late:.4f} (worst task {result.worst_task_late:.4f}) "
         f"on {sequences} fresh sequences per task")
    return result
