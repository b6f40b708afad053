"""Which training makes a model superpose within one prompt (THEORY.md section 7): the
construction's own architecture trained on mixed sequences, at several doses and seeds,
measured per prompt against the construction and the single-task models.

The recipe (:data:`RECIPE`): the construction-shaped model (``training.like_construction``,
the default lookup task set, 20 examples per sequence) trains on one task per sequence for
:data:`FORK` steps, then on sequences of which a share ``p_mix`` mixes 2-3 tasks with
Dirichlet(1) weights, to step 4000. Mixed sequences from step 0 collapsed the model to ~1/3
per task whatever the examples (a probe before this study), hence the single-task stage.
The arms share that stage exactly: ``p_mix = 1`` trains straight through (its batches up to
step :data:`FORK` are the single-task ones), the other doses are forks of its step-:data:`FORK`
checkpoint (``training.fork``), and ``p_mix = 0`` is the fork point itself (1500 single-task
steps; the shipped single-task ``like-construction``, 3000 steps, is reported beside it).

:func:`train` trains every arm and seed (the seeds of an arm in one vmapped step),
:func:`evaluate` measures each model on fresh prompts (single-task accuracy; the per-prompt
report of :mod:`empirical.superposition`: lambda grid, skewed three-task mixtures,
signatures), and checks the targets (:data:`TARGETS`); :func:`plot` draws the dose response
with every seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from empirical import superposition, training

#: The recipe every arm shares (``training.like_construction`` changes).
RECIPE = dict(steps=4000, mix_from=1500, mix_tasks=(2, 3), mix_concentration=1.0)
#: The step the dose arms fork at (the end of the single-task stage).
FORK = RECIPE["mix_from"]
SEEDS = (0, 1, 2)
#: The doses: share of mixed sequences after the single-task stage.
DOSES = (0.0, 0.2, 1.0)
#: The two tasks of the lambda grid and signatures (lookup: copy x0 and copy x2).
TASKS = (0, 1)
#: Targets fixed before measuring (issue: a superposing trained model). ``second`` is the mean
#: second-largest task probability at lambda 0.5 (proportional mixing of 19 examples: ~0.41, a
#: chooser 0); ``tv`` the mean per-prompt TV(q, D) at lambda 0.5 (a chooser ~0.41, the 1/K mixer
#: ~0.09, exact averaging ~0.03 on this family: some examples fit two tasks); ``a_last`` the
#: mean |change of P(A)| when every A example moves to the end (averaging 0, a last-example
#: follower ~0.45); ``accuracy`` the single-task accuracy on the second half of the examples.
TARGETS = {"second": (">=", 0.30), "tv": ("<=", 0.10), "a_last": ("<=", 0.10), "accuracy": (">=", 0.95)}


def config(p_mix: float, seed: int) -> training.TrainConfig:
    """The arm ``p_mix``'s configuration for ``seed``."""
    return training.like_construction(seed=seed, p_mix=float(p_mix), **RECIPE)


def run_name(p_mix: float, seed: int) -> str:
    """The run directory name of an arm and seed (``lc-mix-seed0``, ``lc-p0.2-seed0``, ``lc-single1500-seed0``)."""
    if p_mix == 1.0:
        return f"lc-mix-seed{seed}"
    if p_mix == 0.0:
        return f"lc-single{FORK}-seed{seed}"
    return f"lc-p{p_mix:g}-seed{seed}"


def _done(run: Path, step: int) -> bool:
    try:
        return training.load_run(run)[2] >= step
    except (FileNotFoundError, ValueError):
        return False


def train(runs: str | os.PathLike, *, seeds=SEEDS, doses=DOSES, progress: bool = True) -> list[Path]:
    """Train every arm into ``runs`` (finished runs are kept): the ``p_mix = 1`` seeds in one
    vmapped step, then each other dose forked from them at :data:`FORK` (its seeds in one
    step); ``p_mix = 0`` is the fork point. Returns the run directories."""
    runs = Path(runs)
    straight = [runs / run_name(1.0, s) for s in seeds]
    todo = [(s, out) for s, out in zip(seeds, straight) if not _done(out, RECIPE["steps"])]
    if todo:
        training.train_many([config(1.0, s) for s, _ in todo], [out for _, out in todo],
                            resume=all((out / "config.json").exists() for _, out in todo), progress=progress)
    made = list(straight)
    for p in doses:
        if p == 1.0:
            continue
        outs = [runs / run_name(p, s) for s in seeds]
        for s, src, out in zip(seeds, straight, outs):
            if not (out / "config.json").exists():
                training.fork(src, FORK, out, p_mix=p)
        if p > 0:
            todo = [(s, out) for s, out in zip(seeds, outs) if not _done(out, RECIPE["steps"])]
            if todo:
                training.train_many([config(p, s) for s, _ in todo], [out for _, out in todo], resume=True,
                                    progress=progress)
        made += outs
    return made


def _check(value: float, rule: tuple[str, float]) -> bool:
    op, bound = rule
    return bool(value >= bound) if op == ">=" else bool(value <= bound)


def measure(cfg: training.TrainConfig, params, *, n_prompts: int = 200, sequences: int = 200,
            seed: int = 0) -> dict:
    """One model: single-task accuracy (``sequences`` fresh sequences per task), the
    per-prompt superposition report on :data:`TASKS` (``n_prompts`` per setting) with its
    headline numbers, and each target of :data:`TARGETS` met or not."""
    from empirical.sweep import trained_probs

    acc = training.evaluate_tasks(cfg, params, sequences=sequences, seed=seed)
    rep = superposition.report(trained_probs(cfg.model, params), cfg.fam, TASKS,
                               n_train_examples=cfg.n_examples, n_prompts=n_prompts, seed=seed, oracles=False)
    head = superposition.headline(rep)
    values = {"second": head["second@0.5"], "tv": head["tv@0.5"], "a_last": head["a_last_abs_delta"],
              "accuracy": acc["answer_acc_late"]}
    return {
        "accuracy": {k: acc[k] for k in ("answer_acc", "answer_acc_late", "worst_task_late")},
        "headline": head,
        "targets": {k: {"value": values[k], "rule": list(TARGETS[k]), "met": _check(values[k], TARGETS[k])}
                    for k in TARGETS},
        "report": rep,
    }


def evaluate(runs: str | os.PathLike, *, seeds=SEEDS, doses=DOSES, n_prompts: int = 200, sequences: int = 200,
             seed: int = 0, references: tuple[str, ...] = ("like-construction", "lookup"),
             progress: bool = True) -> dict:
    """Measure every arm and seed in ``runs`` (:func:`measure`), the constructed model and the
    shipped single-task ``references`` on the same prompts. Returns a JSON-ready dict:
    ``arms[p_mix][seed]`` (with each run's weight fingerprint and training step),
    ``constructed``, ``references`` and the recipe and targets."""
    from tqdm.auto import tqdm

    from construction import construct
    from empirical import runs as runs_lib
    from empirical.scaling import fingerprint

    runs = Path(runs)
    arms: dict[str, dict] = {}
    jobs = [(p, s) for p in doses for s in seeds]
    for p, s in tqdm(jobs, disable=not progress, desc="mixture study", unit="model"):
        cfg, params, step = training.load_run(runs / run_name(p, s))
        entry = measure(cfg, params, n_prompts=n_prompts, sequences=sequences, seed=seed)
        entry.update(run=run_name(p, s), step=step, fingerprint=fingerprint(params), p_mix=cfg.p_mix)
        arms.setdefault(f"{p:g}", {})[str(s)] = entry
    base = training.like_construction()
    ts = base.fam.task_set
    constructed = construct(ts.tasks, vocab_size=ts.vocab_size, example_len=ts.example_len, max_examples=64, beta=30.0)
    rep = superposition.report(constructed.probabilities, base.fam, TASKS, n_train_examples=base.n_examples,
                               n_prompts=n_prompts, seed=seed)
    refs = {}
    for name in references:
        cfg, params, step = runs_lib.load(name)
        refs[name] = {**measure(cfg, params, n_prompts=n_prompts, sequences=sequences, seed=seed), "step": step}
    return {
        "recipe": {**RECIPE, "fork": FORK, "seeds": list(seeds), "doses": list(doses), "tasks": list(TASKS),
                   "preset": "like-construction"},
        "targets": {k: list(v) for k, v in TARGETS.items()},
        "n_prompts": n_prompts, "sequences": sequences, "seed": seed,
        "arms": arms,
        "constructed": {"headline": superposition.headline(rep), "report": rep},
        "references": refs,
    }


#: The panels of :func:`plot`: (headline key or target, label, constructed reference key).
_PANELS = (("second@0.5", "2nd-largest task prob. (lambda 0.5)"), ("tv@0.5", "TV(q, D) per prompt (lambda 0.5)"),
           ("var_ratio@0.5", "var P(A) / (m(1-m)) (lambda 0.5)"), ("a_last_abs_delta", "|dP(A)|, A examples last"),
           ("slope_grid", "slope of P_k on share_k"), ("accuracy", "single-task accuracy (2nd half)"))


def _value(entry: dict, key: str) -> float:
    return entry["accuracy"]["answer_acc_late"] if key == "accuracy" else entry["headline"][key]


def plot(result: dict, path: str | os.PathLike) -> Path:
    """The dose response: one panel per measure, every seed a dot, the seeds' mean a line; the
    constructed model (dashed) and the targets (dotted) as references."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    doses = sorted(result["arms"], key=float)
    fig = Figure(figsize=(12, 6.4), dpi=150)
    FigureCanvasAgg(fig)
    target_of = {"second@0.5": "second", "tv@0.5": "tv", "a_last_abs_delta": "a_last", "accuracy": "accuracy"}
    for i, (key, label) in enumerate(_PANELS):
        ax = fig.add_subplot(2, 3, i + 1)
        xs = np.arange(len(doses))
        means = []
        for j, d in enumerate(doses):
            vals = [_value(e, key) for e in result["arms"][d].values()]
            ax.scatter(np.full(len(vals), j) + np.linspace(-0.08, 0.08, len(vals)), vals, color="tab:blue", s=18,
                       zorder=3, label="a seed" if j == 0 else None)
            means.append(np.mean(vals))
        ax.plot(xs, means, color="tab:blue", alpha=0.6, label="mean over seeds")
        if key != "accuracy":
            ax.axhline(result["constructed"]["headline"][key], color="black", ls="--", lw=1, label="constructed model")
        if key in target_of:
            ax.axhline(result["targets"][target_of[key]][1], color="tab:red", ls=":", lw=1, label="target")
        for name, ref in result.get("references", {}).items():
            ax.scatter([-0.35], [_value(ref, key)], marker="x", s=30, label=f"shipped {name} (1 task/seq.)")
        ax.set_xticks(xs, [f"p_mix {d}" for d in doses], fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if i == 0:
            handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Mixed training sequences (construction-shaped model, {len(next(iter(result['arms'].values())))} "
                 f"seeds per dose, {result['n_prompts']} fresh prompts per setting)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return save_figure(fig, path)


def summary(result: dict) -> str:
    """A text table: per dose and seed, the headline numbers and whether every target is met."""
    lines = [f"{'model':28s} {'acc':>6s} {'second':>7s} {'tv':>6s} {'var':>6s} {'Alast':>6s} {'order':>6s} "
             f"{'flip':>7s} {'slope':>6s} targets"]

    def row(name, e):
        h = e["headline"]
        met = e.get("targets")
        flag = ("all met" if all(t["met"] for t in met.values()) else
                "missed: " + ", ".join(k for k, t in met.items() if not t["met"])) if met else ""
        acc = e["accuracy"]["answer_acc_late"] if "accuracy" in e else float("nan")
        return (f"{name:28s} {acc:6.3f} {h['second@0.5']:7.3f} {h['tv@0.5']:6.3f} {h['var_ratio@0.5']:6.3f} "
                f"{h['a_last_abs_delta']:6.3f} {h['order_abs_delta']:6.3f} {h['flip_delta']:+7.3f} "
                f"{h['slope_grid']:6.2f} {flag}")

    for d in sorted(result["arms"], key=float):
        for s, e in result["arms"][d].items():
            lines.append(row(f"p_mix {d} seed {s}", e))
    lines.append(row("constructed", result["constructed"]))
    for name, e in result.get("references", {}).items():
        lines.append(row(f"shipped {name}", e))
    return "\n".join(lines)
