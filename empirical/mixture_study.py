"""Which training makes a model superpose within one prompt (docs/theory.md section 7): the
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
with every seed. The results are typed records (:mod:`empirical.results`): :class:`MixtureEval`
(``superpose mixture eval``) and :class:`MixtureAblation` (``superpose mixture ablate``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from empirical import superposition, training
from empirical.results import Record, Stampable, Stamped, key, optional, read_result, record, result_type
from empirical.superposition import SuperpositionReport

#: The two tasks of the lambda grid and signatures (lookup: copy x0 and copy x2).
TASKS = (0, 1)
#: Targets fixed before measuring (issue: a superposing trained model). ``second`` is the mean
#: second-largest task probability at lambda 0.5 (proportional mixing of 19 examples: ~0.41, a
#: chooser 0); ``tv`` the mean per-prompt TV(q, D) at lambda 0.5 (a chooser ~0.41, the 1/K mixer
#: ~0.09, exact averaging ~0.03 on this family: some examples fit two tasks); ``a_last`` the
#: mean |change of P(A)| when every A example moves to the end (averaging 0, a last-example
#: follower ~0.45); ``accuracy`` the single-task accuracy on the second half of the examples.
TARGETS = {"second": (">=", 0.30), "tv": ("<=", 0.10), "a_last": ("<=", 0.10), "accuracy": (">=", 0.95)}


@dataclass(frozen=True)
class Study:
    """One dose study: a preset of the lookup family, the recipe every arm shares (TrainConfig
    changes; ``mix_from`` ends the single-task stage, where the arms fork), the doses
    (``p_mix`` after that stage), the seeds, and contrast arms (name -> TrainConfig changes
    acting after the fork, e.g. soft targets or label noise)."""

    name: str
    prefix: str  # of the run directory names
    recipe: tuple[tuple[str, object], ...]
    doses: tuple[float, ...] = (0.0, 0.2, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    contrasts: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    references: tuple[str, ...] = ()

    @property
    def fork(self) -> int:
        """The step the arms fork at (the end of the single-task stage)."""
        return int(dict(self.recipe)["mix_from"])

    @property
    def steps(self) -> int:
        return int(dict(self.recipe)["steps"])

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm's key: the doses (``"0"``, ``"0.2"``, ``"1"``), then the contrasts."""
        return tuple(f"{p:g}" for p in self.doses) + tuple(name for name, _ in self.contrasts)

    def changes(self, arm: str | float) -> dict:
        """The TrainConfig changes of ``arm`` (a dose or a contrast's name) beyond the recipe."""
        contrasts = dict(self.contrasts)
        if isinstance(arm, str) and arm in contrasts:
            return dict(contrasts[arm])
        return {"p_mix": float(arm)}

    def config(self, arm: str | float, seed: int) -> training.TrainConfig:
        """The configuration of ``arm`` for ``seed``."""
        changes = {**dict(self.recipe), **self.changes(arm), "seed": seed}
        if self.name == "like-construction":
            return training.like_construction(**changes)
        return training.tiny("lookup", **changes)

    def run_name(self, arm: str | float, seed: int) -> str:
        """The run directory of an arm and seed (``lc-mix-seed0``, ``lc-p0.2-seed0``,
        ``lc-single1500-seed0``, ``lc-soft-seed0``)."""
        if isinstance(arm, str) and arm in dict(self.contrasts):
            return f"{self.prefix}-{arm}-seed{seed}"
        p = float(arm)
        if p == 1.0:
            return f"{self.prefix}-mix-seed{seed}"
        if p == 0.0:
            return f"{self.prefix}-single{self.fork}-seed{seed}"
        return f"{self.prefix}-p{p:g}-seed{seed}"


#: The construction-shaped model (``training.like_construction``: the construction's own
#: architecture, 20 examples per sequence, its two-task curriculum to step 800), 1500
#: single-task steps, then mixed sequences of 2-3 tasks with Dirichlet(1) weights to step 4000.
LIKE_CONSTRUCTION = Study(
    "like-construction", "lc", (("steps", 4000), ("mix_from", 1500), ("mix_tasks", (2, 3)), ("mix_concentration", 1.0)),
    references=("like-construction", "lookup"))
#: The tiny preset of the lookup family (3 layers, width 64, 4 heads, RoPE; its two-task
#: curriculum to step 400): 1000 single-task steps, then mixed sequences to step 3000; with the
#: contrasts docs/theory.md section 7 predicts: soft targets (the in-context shares' posterior
#: predictive) on mixed sequences, and label noise (10% random labels) on single-task ones.
TINY = Study(
    "tiny", "tiny", (("steps", 3000), ("mix_from", 1000), ("mix_tasks", (2, 3)), ("mix_concentration", 1.0)),
    contrasts=(("soft", (("p_mix", 1.0), ("target", "shares"))), ("noise0.1", (("p_mix", 0.0), ("label_noise", 0.1)))),
    references=("lookup",))
STUDIES = {s.name: s for s in (LIKE_CONSTRUCTION, TINY)}
#: The construction-shaped study's recipe, seeds and doses (the shipped ``like-construction-mix``).
RECIPE = dict(LIKE_CONSTRUCTION.recipe)
FORK = LIKE_CONSTRUCTION.fork
SEEDS = LIKE_CONSTRUCTION.seeds
DOSES = LIKE_CONSTRUCTION.doses


def config(p_mix: float | str, seed: int, study: Study = LIKE_CONSTRUCTION) -> training.TrainConfig:
    """The arm ``p_mix``'s configuration for ``seed``."""
    return study.config(p_mix, seed)


def run_name(p_mix: float | str, seed: int, study: Study = LIKE_CONSTRUCTION) -> str:
    """The run directory name of an arm and seed (:meth:`Study.run_name`)."""
    return study.run_name(p_mix, seed)


def train(runs: str | os.PathLike, *, study: Study = LIKE_CONSTRUCTION, seeds=None, arms=None,
          progress: bool = True) -> list[Path]:
    """Train every arm of ``study`` into ``runs`` (finished runs are kept): the ``p_mix = 1``
    seeds straight through in one vmapped step, then each other arm forked from them at
    :attr:`Study.fork` (its seeds in one step); ``p_mix = 0`` is the fork point. Returns the
    run directories."""
    runs = Path(runs)
    seeds = tuple(study.seeds if seeds is None else seeds)
    arms = tuple(study.arms if arms is None else arms)
    straight = [runs / study.run_name(1.0, s) for s in seeds]
    todo = [(s, out) for s, out in zip(seeds, straight) if not training.finished(out, study.steps)]
    if todo:
        training.train_many([study.config(1.0, s) for s, _ in todo], [out for _, out in todo],
                            resume=all((out / "config.json").exists() for _, out in todo), progress=progress)
    made = list(straight)
    for arm in arms:
        changes = study.changes(arm)
        if changes == {"p_mix": 1.0}:
            continue
        outs = [runs / study.run_name(arm, s) for s in seeds]
        for s, src, out in zip(seeds, straight, outs):
            if not (out / "config.json").exists():
                training.fork(src, study.fork, out, **changes)
        if changes != {"p_mix": 0.0}:
            todo = [(s, out) for s, out in zip(seeds, outs) if not training.finished(out, study.steps)]
            if todo:
                training.train_many([study.config(arm, s) for s, _ in todo], [out for _, out in todo], resume=True,
                                    progress=progress)
        made += outs
    return made


# --------------------------------------------------------------------------- the results, typed


@record
class Accuracy(Record):
    """Single-task answer accuracy: over all examples, over the second half, the worst task's."""

    answer_acc: float
    answer_acc_late: float
    worst_task_late: float


@record
class TargetCheck(Record):
    """One target of :data:`TARGETS`: the measured value, the rule (op, bound) and whether it is met."""

    value: float
    rule: tuple[str, float]
    met: bool


@record
class Measured(Record):
    """One model's measures (:func:`measure`): accuracy, the headline numbers of its report
    (:func:`superposition.headline`, a flat map such as ``tv@0.5``), the targets, the report."""

    accuracy: Accuracy
    headline: dict[str, float | str]
    targets: dict[str, TargetCheck]
    report: SuperpositionReport

    def value(self, name: str) -> float:
        """A headline number by its key, or ``accuracy`` (single-task accuracy, second half)."""
        return self.accuracy.answer_acc_late if name == "accuracy" else self.headline[name]


@record
class AveragingHead(Record):
    """A head (layers from 1) ranked by how it averages at the query (``score``)."""

    score: float
    layer: int
    head: int
    label_mass: float
    uniformity: float


@record
class AblationRow(Record):
    """The model with ``silenced`` heads (layer, head) off at the query: mixing at lambda 0.5
    (TV(q, D), second-largest, the chooser's and 1/K mixer's TV) and each task alone (A, B)."""

    silenced: tuple[tuple[int, int], ...]
    tv: float = key("tv@0.5")
    second: float = key("second@0.5")
    p_task_alone: tuple[float, float]
    tv_chooser: float = key("tv_chooser@0.5")
    tv_uniform: float = key("tv_uniform@0.5")


@record
class Cumulative(Record):
    """The k best averaging heads silenced together, and the k worst (k in :attr:`Ablation.counts`)."""

    averaging_first: tuple[AblationRow, ...] = key("averaging first")
    averaging_last: tuple[AblationRow, ...] = key("averaging last")


@record
class Ablation(Record):
    """One model's head ablation (:func:`ablation`)."""

    n_prompts: int
    n_examples: int
    seed: int
    tasks: tuple[str, ...]
    heads: tuple[AveragingHead, ...]
    intact: AblationRow
    single: tuple[AblationRow, ...]
    cumulative: Cumulative
    counts: tuple[int, ...]


@record
class ArmModel(Measured):
    """One arm's model of one seed: its measures, run, training step, weight fingerprint, p_mix,
    TrainConfig changes (left out in older results) and head ablation (the ablated arms only)."""

    run: str
    step: int
    fingerprint: str
    p_mix: float
    changes: dict[str, Any] | None = optional()
    ablation: Ablation | None = optional()


@record
class ReferenceModel(Measured):
    """A shipped single-task model measured beside the arms, with its training step."""

    step: int


@record
class Constructed(Record):
    """The constructed model's headline numbers and report (with the oracles' references)."""

    headline: dict[str, float | str]
    report: SuperpositionReport


@result_type("mixture eval")
@record
class MixtureEval(Stampable):
    """``superpose mixture eval``: every arm and seed (``arms[arm][seed]``), the constructed model
    and the shipped references on the same prompts, the recipe and the targets. The provenance
    fields (``command`` ... ``date``) are set by the command line; ``study`` is left out in
    older results."""

    study: str | None = optional()
    recipe: dict[str, Any]
    targets: dict[str, tuple[str, float]]
    n_prompts: int
    sequences: int
    seed: int
    arms: dict[str, dict[str, ArmModel]]
    constructed: Constructed
    references: dict[str, ReferenceModel]


@result_type("mixture ablate")
@record
class MixtureAblation(Stamped):
    """``superpose mixture ablate``: the head ablation of each model, by its name."""

    models: dict[str, Ablation]


def _fields(rec: Record) -> dict:
    """A record's fields by name (shallow: nested records stay records)."""
    return {f.name: getattr(rec, f.name) for f in fields(rec)}


def _check(value: float, rule: tuple[str, float]) -> bool:
    op, bound = rule
    return bool(value >= bound) if op == ">=" else bool(value <= bound)


def measure(cfg: training.TrainConfig, params, *, n_prompts: int = 200, sequences: int = 200,
            seed: int = 0) -> Measured:
    """One model: single-task accuracy (``sequences`` fresh sequences per task), the
    per-prompt superposition report on :data:`TASKS` (``n_prompts`` per setting) with its
    headline numbers, and each target of :data:`TARGETS` met or not."""
    from empirical.models import FlaxModel

    acc = training.evaluate_tasks(cfg, params, sequences=sequences, seed=seed)
    rep = superposition.report(FlaxModel("model", cfg.model, params), cfg.fam, TASKS,
                               n_train_examples=cfg.n_examples, n_prompts=n_prompts, seed=seed, oracles=False)
    head = superposition.headline(rep)
    values = {"second": head["second@0.5"], "tv": head["tv@0.5"], "a_last": head["a_last_abs_delta"],
              "accuracy": acc["answer_acc_late"]}
    return Measured(
        accuracy=Accuracy(**{k: acc[k] for k in ("answer_acc", "answer_acc_late", "worst_task_late")}),
        headline=head,
        targets={k: TargetCheck(value=values[k], rule=TARGETS[k], met=_check(values[k], TARGETS[k])) for k in TARGETS},
        report=rep,
    )


def evaluate(runs: str | os.PathLike, *, study: Study = LIKE_CONSTRUCTION, seeds=None, arms=None,
             n_prompts: int = 200, sequences: int = 200, seed: int = 0, ablate: tuple[str, ...] = ("1",),
             progress: bool = True) -> MixtureEval:
    """Measure every arm and seed of ``study`` in ``runs`` (:func:`measure`; the arms in
    ``ablate`` also get :func:`ablation`), the constructed model and the study's shipped
    single-task references on the same prompts. Returns the :class:`MixtureEval` (without
    provenance): ``arms[arm][seed]`` (with each run's weight fingerprint and training step),
    ``constructed``, ``references``, the recipe and the targets."""
    from tqdm.auto import tqdm

    from construction import construct
    from empirical import runs as runs_lib
    from empirical.models import FlaxModel
    from empirical.scaling import fingerprint

    runs = Path(runs)
    seeds = tuple(study.seeds if seeds is None else seeds)
    arms = tuple(study.arms if arms is None else arms)
    out: dict[str, dict[str, ArmModel]] = {}
    jobs = [(a, s) for a in arms for s in seeds]
    for arm, s in tqdm(jobs, disable=not progress, desc="mixture study", unit="model"):
        cfg, params, step = training.load_run(runs / study.run_name(arm, s))
        if cfg != study.config(arm, s):
            raise ValueError(f"{runs / study.run_name(arm, s)} was not trained with the {study.name} study's "
                             f"arm {arm} for seed {s}")
        entry = measure(cfg, params, n_prompts=n_prompts, sequences=sequences, seed=seed)
        out.setdefault(arm, {})[str(s)] = ArmModel(
            **_fields(entry), run=study.run_name(arm, s), step=step, fingerprint=fingerprint(params), p_mix=cfg.p_mix,
            changes=study.changes(arm),
            ablation=ablation(cfg, params, n_prompts=n_prompts, seed=seed) if arm in ablate else None)
    base = study.config(1.0, 0)
    ts = base.fam.task_set
    constructed = construct(ts.tasks, vocab_size=ts.vocab_size, example_len=ts.example_len, max_examples=64, beta=30.0)
    rep = superposition.report(FlaxModel.of(constructed), base.fam, TASKS, n_train_examples=base.n_examples,
                               n_prompts=n_prompts, seed=seed)
    refs = {}
    for name in study.references:
        cfg, params, step = runs_lib.load(name)
        refs[name] = ReferenceModel(**_fields(measure(cfg, params, n_prompts=n_prompts, sequences=sequences,
                                                       seed=seed)), step=step)
    return MixtureEval(
        study=study.name,
        recipe={**dict(study.recipe), "fork": study.fork, "seeds": list(seeds), "arms": list(arms),
                "contrasts": {name: dict(c) for name, c in study.contrasts}, "tasks": list(TASKS),
                "preset": base.preset, "lr": base.lr},
        targets=dict(TARGETS),
        n_prompts=n_prompts, sequences=sequences, seed=seed,
        arms=out,
        constructed=Constructed(headline=superposition.headline(rep), report=rep),
        references=refs,
    )


#: Lambdas of the ablation: both single-task ends and the even mixture.
ABLATION_LAMBDAS = (0.0, 0.5, 1.0)
#: How many heads the cumulative ablations silence at once.
ABLATION_COUNTS = (1, 2, 3, 4, 6, 9)


def ablation(cfg: training.TrainConfig, params, *, n_prompts: int = 200, seed: int = 0,
             counts=ABLATION_COUNTS) -> Ablation:
    """Which heads the model's mixing needs (docs/theory.md section 7's averaging step). Every head
    is ranked by :func:`empirical.analysis.circuits.averaging_heads` on lambda-0.5 prompts of :data:`TASKS`; the
    lambda 0 / 0.5 / 1 prompts are then measured with heads silenced at the query's last token
    (:func:`empirical.analysis.circuits.ablated_probs`): each head alone (``single``), and the k best averaging
    heads together against the k worst (``cumulative``, k in ``counts``: the control silences
    as many heads that do not average). Per ablation: mean TV(q, D) and second-largest task
    probability at lambda 0.5 (mixing; the chooser's and the 1/K mixer's TV beside them), and
    the answer's mean probability with each task alone (lambda 1 for A, 0 for B: can the model
    still do the task?). The same prompts for every ablation (``default_rng([seed, i])``)."""
    from construction.layout import Layout
    from empirical import synthetic
    from empirical.analysis.circuits import ablated_probs, attention_patterns, averaging_heads
    from empirical.models import FlaxModel

    subject = FlaxModel("model", cfg.model, params)
    fam, m = cfg.fam, cfg.n_examples - 1
    prompts = synthetic.mixed_prompts(fam, np.random.default_rng([seed, 1]), n_prompts, m, list(TASKS), [0.5, 0.5])
    heads = averaging_heads(attention_patterns(subject, prompts["tokens"]),
                            Layout.from_length(prompts["tokens"].shape[1], fam.example_len))

    def measured(silenced) -> AblationRow:
        probs = ablated_probs(subject, silenced) if silenced else subject
        grid = superposition.lambda_grid(probs, fam, TASKS, n_prompts=n_prompts, n_examples=m,
                                         lambdas=ABLATION_LAMBDAS, seed=seed)
        mid, b_alone, a_alone = (grid.at(lam) for lam in (0.5, 0.0, 1.0))
        return AblationRow(silenced=tuple((int(l), int(h)) for l, h in silenced), tv=mid.tv.mean,
                           second=mid.second.mean, p_task_alone=(a_alone.p[0].mean, b_alone.p[1].mean),
                           tv_chooser=mid.tv_chooser.mean, tv_uniform=mid.tv_uniform.mean)

    ranked = [(h["layer"], h["head"]) for h in heads]
    counts = [k for k in counts if k <= len(ranked)]
    return Ablation(
        n_prompts=n_prompts, n_examples=m, seed=seed, tasks=tuple(fam.task(t) for t in TASKS),
        heads=tuple(AveragingHead(**h) for h in heads),
        intact=measured([]),
        single=tuple(measured([h]) for h in ranked),
        cumulative=Cumulative(averaging_first=tuple(measured(ranked[:k]) for k in counts),
                              averaging_last=tuple(measured(ranked[::-1][:k]) for k in counts)),
        counts=tuple(counts),
    )


#: The panels of :func:`plot`: (headline key or ``accuracy``, label).
_PANELS = (("second@0.5", "2nd-largest task prob. (lambda 0.5)"), ("tv@0.5", "TV(q, D) per prompt (lambda 0.5)"),
           ("var_ratio@0.5", "var P(A) / (m(1-m)) (lambda 0.5)"), ("a_last_abs_delta", "|dP(A)|, A examples last"),
           ("slope_grid", "slope of P_k on share_k"), ("accuracy", "single-task accuracy (2nd half)"))


def _arm_order(result: MixtureEval) -> list[str]:
    """The arms of a result: the doses in increasing order, then the contrasts."""
    def rank(arm):
        try:
            return (0, float(arm), "")
        except ValueError:
            return (1, 0.0, arm)
    return sorted(result.arms, key=rank)


def _arm_label(arm: str) -> str:
    try:
        return f"p_mix {float(arm):g}"
    except ValueError:
        return {"soft": "soft target", "noise0.1": "label noise 0.1"}.get(arm, arm)


def plot(result: MixtureEval, path: str | os.PathLike) -> Path:
    """The dose response: one panel per measure, every seed a dot, the seeds' mean a line; the
    constructed model (dashed) and the targets (dotted) as references."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    doses = _arm_order(result)
    fig = Figure(figsize=(12, 6.4), dpi=150)
    FigureCanvasAgg(fig)
    target_of = {"second@0.5": "second", "tv@0.5": "tv", "a_last_abs_delta": "a_last", "accuracy": "accuracy"}
    for i, (name, label) in enumerate(_PANELS):
        ax = fig.add_subplot(2, 3, i + 1)
        xs = np.arange(len(doses))
        means = []
        for j, d in enumerate(doses):
            vals = [e.value(name) for e in result.arms[d].values()]
            ax.scatter(np.full(len(vals), j) + np.linspace(-0.08, 0.08, len(vals)), vals, color="tab:blue", s=18,
                       zorder=3, label="a seed" if j == 0 else None)
            means.append(np.mean(vals))
        ax.plot(xs, means, color="tab:blue", alpha=0.6, label="mean over seeds")
        if name != "accuracy":
            ax.axhline(result.constructed.headline[name], color="black", ls="--", lw=1, label="constructed model")
        if name in target_of:
            ax.axhline(result.targets[target_of[name]][1], color="tab:red", ls=":", lw=1, label="target")
        for ref_name, ref in result.references.items():
            ax.scatter([-0.35], [ref.value(name)], marker="x", s=30, label=f"shipped {ref_name} (1 task/seq.)")
        ax.set_xticks(xs, [_arm_label(d) for d in doses], fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if i == 0:
            handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    preset = result.recipe.get("preset")
    model = {"like-construction": "construction-shaped model"}.get(preset, f"{preset} preset")
    fig.suptitle(f"Mixed training sequences ({model}, lr {result.recipe.get('lr', 3e-3):g}, "
                 f"{len(next(iter(result.arms.values())))} seeds per arm, {result.n_prompts} fresh prompts "
                 "per setting)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return save_figure(fig, path)


def ablations_of(result: MixtureEval | MixtureAblation) -> dict[str, Ablation]:
    """``{label: ablation}`` of a ``mixture eval`` result (arms with an ``ablation``) or of a
    ``mixture ablate`` result (its ``models``)."""
    if isinstance(result, MixtureAblation):
        return dict(result.models)
    return {f"{_arm_label(arm)} seed {s}": e.ablation for arm in _arm_order(result)
            for s, e in result.arms[arm].items() if e.ablation is not None}


def plot_ablation(result: MixtureEval | MixtureAblation, path: str | os.PathLike) -> Path:
    """Mixing (TV(q, D) at lambda 0.5) and each task alone (mean answer probability) against
    the number of heads silenced at the query, the best averaging heads first and the worst
    first, one line per ablated model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    models = ablations_of(result)
    if not models:
        raise ValueError("the result holds no head ablation")
    fig = Figure(figsize=(10, 3.8), dpi=150)
    FigureCanvasAgg(fig)
    ax_tv, ax_task = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (label, ab) in enumerate(models.items()):
        ks = [0] + list(ab.counts)
        for order, rows, color, ls in (("averaging first", ab.cumulative.averaging_first, "tab:blue", "-"),
                                       ("averaging last", ab.cumulative.averaging_last, "tab:orange", "--")):
            ax_tv.plot(ks, [ab.intact.tv] + [r.tv for r in rows], color=color, ls=ls, marker="o",
                       ms=3, alpha=0.8, label=f"{order}" if i == 0 else None)
            ax_task.plot(ks, [np.mean(ab.intact.p_task_alone)] + [np.mean(r.p_task_alone) for r in rows],
                         color=color, ls=ls, marker="o", ms=3, alpha=0.8, label=f"{order}" if i == 0 else None)
    ref = next(iter(models.values())).intact
    ax_tv.axhline(ref.tv_chooser, color="tab:red", ls=":", lw=1, label="a majority chooser")
    ax_tv.axhline(ref.tv_uniform, color="gray", ls=":", lw=1, label="1/K mixer")
    ax_tv.set(xlabel="heads silenced at the query", ylabel="TV(q, D) per prompt, lambda 0.5 (mean)")
    ax_task.set(xlabel="heads silenced at the query", ylabel="P(answer), one task alone (mean)", ylim=(0, 1))
    for ax in (ax_tv, ax_task):
        ax.grid(alpha=0.3)
    handles, labels = ax_tv.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Head ablation of mixture-trained models ({', '.join(models)}; one line per model)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return save_figure(fig, path)


def ablation_lines(result: MixtureEval | MixtureAblation) -> list[str]:
    """One line per ablated model: TV intact and with the 3 best / 3 worst averaging heads silenced."""
    lines = []
    for label, ab in ablations_of(result).items():
        if 3 not in ab.counts:
            continue
        i = ab.counts.index(3)
        best, worst = ab.cumulative.averaging_first[i], ab.cumulative.averaging_last[i]
        lines.append(f"ablation {label}: TV {ab.intact.tv:.3f} intact (task alone "
                     f"{np.mean(ab.intact.p_task_alone):.2f}); 3 best averaging heads silenced: TV "
                     f"{best.tv:.3f} (task alone {np.mean(best.p_task_alone):.2f}); 3 worst: TV "
                     f"{worst.tv:.3f} (task alone {np.mean(worst.p_task_alone):.2f})")
    return lines


def summary(result: MixtureEval) -> str:
    """A text table: per dose and seed, the headline numbers and whether every target is met."""
    lines = [f"{'model':28s} {'acc':>6s} {'second':>7s} {'tv':>6s} {'var':>6s} {'Alast':>6s} {'order':>6s} "
             f"{'flip':>7s} {'slope':>6s} targets"]

    def row(name, e: Measured | Constructed):
        h = e.headline
        met = e.targets if isinstance(e, Measured) else None
        flag = ("all met" if all(t.met for t in met.values()) else
                "missed: " + ", ".join(k for k, t in met.items() if not t.met)) if met else ""
        acc = e.accuracy.answer_acc_late if isinstance(e, Measured) else float("nan")
        return (f"{name:28s} {acc:6.3f} {h['second@0.5']:7.3f} {h['tv@0.5']:6.3f} {h['var_ratio@0.5']:6.3f} "
                f"{h['a_last_abs_delta']:6.3f} {h['order_abs_delta']:6.3f} {h['flip_delta']:+7.3f} "
                f"{h['slope_grid']:6.2f} {flag}")

    for d in _arm_order(result):
        for s, e in result.arms[d].items():
            lines.append(row(f"{_arm_label(d)} seed {s}", e))
    lines.append(row("constructed", result.constructed))
    lines += ablation_lines(result)
    for name, e in result.references.items():
        lines.append(row(f"shipped {name}", e))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command


def command(action: str, *, preset: str = "like-construction", runs: str | os.PathLike = "runs/mix",
            seeds: list[int] | None = None, arms: str | None = None, run: list[str] | None = None,
            study_path: str | None = None, prompts: int = 200, seed: int = 0,
            out: str | os.PathLike = "benchmarks/results/mixture", json_path: str | None = None,
            progress: bool = True, echo=print) -> MixtureEval | MixtureAblation | list[Path]:
    """``superpose mixture train|eval|plot|ablate`` as one call (``arms``: the command line's
    comma list; ``run``: the models to ablate; ``study_path``: the JSON to plot); echoes what the
    command prints and returns the evaluation or ablation (or the trained runs)."""
    from empirical.results import provenance

    out = Path(out)
    which = STUDIES[preset]
    if action == "ablate":
        if not run:
            raise ValueError("mixture ablate needs --run (a shipped model's name or a run directory; repeatable)")
        from empirical import runs as runs_lib

        loaded = [(name, runs_lib.load(name)) for name in run]  # every model loads before any work
        for name, (cfg, _, _) in loaded:
            if cfg.family != "lookup":
                raise ValueError(f"{name} was trained on the {cfg.family!r} family; the ablation reads the lookup "
                                 "family's prompts")
        models = {name: ablation(cfg, params, n_prompts=prompts, seed=seed) for name, (cfg, params, _) in loaded}
        doc = MixtureAblation(command="mixture ablate",
                              **provenance({"runs": list(run), "n_prompts": prompts, "seed": seed}), models=models)
        target = json_path or str(out / "ablation.json")
        doc.write(target, indent=None)
        echo("\n".join(ablation_lines(doc)))
        echo(f"json: {target}")
        echo(f"plot: {plot_ablation(doc, out / 'mixture_ablation.png')}")
        return doc
    arm_list = None if arms is None else [a.strip() for a in arms.split(",") if a.strip()]
    unknown = [a for a in arm_list or () if a not in which.arms]
    if unknown or arm_list == []:
        raise ValueError(f"--arms: the {which.name} study's arms are {', '.join(which.arms)}, got {arms!r}")
    if action == "train":
        trained = list(train(runs, study=which, seeds=seeds, arms=arm_list, progress=progress))
        for path in trained:
            echo(f"run: {path}")
        return trained
    if action == "eval":
        doc = evaluate(runs, study=which, seeds=seeds, arms=arm_list, n_prompts=prompts, seed=seed, progress=progress)
        doc = replace(doc, command="mixture eval", **provenance(doc.recipe))
        target = json_path or str(out / ("mixture.json" if which is LIKE_CONSTRUCTION else f"mixture_{which.name}.json"))
        doc.write(target, indent=None)
        echo(summary(doc))
        echo(f"json: {target}")
        return doc
    if study_path is None:
        raise ValueError("mixture plot needs --study, a `superpose mixture eval` JSON")
    doc = read_result(study_path, "mixture eval", "mixture ablate")
    if isinstance(doc, MixtureAblation):
        echo("\n".join(ablation_lines(doc)))
        echo(f"plot: {plot_ablation(doc, out / 'mixture_ablation.png')}")
        return doc
    echo(summary(doc))
    stem = Path(study_path).stem  # mixture.json -> "", mixture_tiny.json -> "_tiny"
    suffix = stem[len("mixture"):] if stem.startswith("mixture") else f"_{stem}"
    echo(f"plot: {plot(doc, out / f'mixture_dose{suffix}.png')}")
    if ablations_of(doc):
        echo(f"plot: {plot_ablation(doc, out / f'mixture_ablation{suffix}.png')}")
    return doc
