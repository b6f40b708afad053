"""``superpose train``, ``eval`` and ``export`` as library calls: each takes plain values (the
command line's, already parsed), does the work, writes its files, ``echo``-es the lines the
command prints and returns its result."""

from __future__ import annotations

import itertools
from pathlib import Path

from empirical.results import write_json
from empirical.training.checkpoints import load_config, provenance
from empirical.training.config import PRESETS, like_construction, param_count
from empirical.training.evaluation import evaluate_tasks
from empirical.training.loop import train_many
from empirical.training.plots import plot_eval, plot_learning_curves


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
                  json_path: str | None = None, progress: bool = True, echo=print) -> list[dict]:
    """``superpose train``: every model of ``grid`` (see :func:`members`) into ``out`` (or its
    sub-directory), new or resumed (a resumed run's saved settings must match the given ones);
    the run summaries."""
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
    summaries = train_many(cfgs, outs, resume=resume, progress=progress)
    if json_path:
        write_json(json_path, summaries[0] if len(summaries) == 1 else {**provenance(cfgs[0]), "runs": summaries})
    for cfg, summary in zip(cfgs, summaries):
        ev = summary["eval"]
        echo(f"trained {cfg.preset}/{cfg.family} (seed {cfg.seed}) to step {summary['step']}: loss {ev['loss']:.4f}, "
             f"answer accuracy {ev['answer_acc']:.3f} (second half of examples {ev['answer_acc_late']:.3f}), "
             f"{summary['tokens_per_s'] or float('nan'):.0f} tokens/s -> {summary['run']}")
    return summaries


def accuracy_lines(result: dict) -> list[str]:
    """Per task and over all tasks: answer accuracy, and in the second half of the examples."""
    lines = [f"  {t['label']:28s} answer accuracy {t['answer_acc']:.4f}   second half {t['answer_acc_late']:.4f}"
             for t in result["tasks"].values()]
    lines.append(f"  {'all tasks':28s} answer accuracy {result['answer_acc']:.4f}   second half "
                 f"{result['answer_acc_late']:.4f} (worst task {result['worst_task_late']:.4f})")
    return lines


def eval_command(run: str, *, sequences: int = 200, seed: int = 0, out: str | None = None,
                 json_path: str | None = None, progress: bool = True, echo=print) -> dict:
    """``superpose eval``: single-task answer accuracy of a run directory or shipped model on
    fresh sequences, per task and example index (plot in ``out``, JSON to ``json_path``)."""
    from empirical import runs

    cfg, params, step = runs.load(run)
    result = evaluate_tasks(cfg, params, sequences=sequences, seed=seed, progress=progress)
    result = {**provenance(cfg), "command": "eval", "run": run, "checkpoint_step": step, **result}
    if out:
        result["plot"] = str(plot_eval(result, Path(out) / f"eval_{Path(run).name}.png"))
    if json_path:
        write_json(json_path, result)
    echo(f"{run} ({cfg.family}, step {step}), {sequences} fresh sequences per task, seed {seed}:")
    for line in accuracy_lines(result):
        echo(line)
    return result


def export_command(run: str, to: str, *, sequences: int = 200, seed: int = 0, out: str | None = None,
                   json_path: str | None = None, progress: bool = True, echo=print) -> dict:
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
    if json_path:
        write_json(json_path, {**provenance(cfg), "command": "export", "run": str(src), "to": str(dest),
                               "checkpoint_step": step, **evaluation})
    echo(f"exported {src} (step {step}) -> {dest}: answer accuracy {evaluation['answer_acc']:.4f}, "
         f"second half {evaluation['answer_acc_late']:.4f} (worst task {evaluation['worst_task_late']:.4f}) "
         f"on {sequences} fresh sequences per task")
    return evaluation
