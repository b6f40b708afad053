"""Scaling and capacity (the paper's Figure 6 and its reviewers' question "do K tasks need K
heads?"): families of trained models that differ in one thing, evaluated on K-task mixtures.

Two families, both trained on the ``add`` family (x in 0..9, y = x + h mod 10, ten tasks)
with the tiny preset's data, curriculum and optimiser, and ONE rule for the training budget:
every member trains :data:`STEPS` steps of :data:`BATCH` sequences of 40 examples (the same
batches, seed 0), at learning rate ``3e-3 * min(1, sqrt(64 / width))``:

* :data:`SIZES`: the **scaling family**, 3 layers, 6 heads, width 24 ... 288 (head width =
  width / 6, SwiGLU 2 x width), about 0.02M to 2.5M parameters;
* :data:`HEADS`: the **capacity family**, width 96 with 1, 2, 3 or 6 heads per layer (head
  width 96 / heads: equal width, equal parameter count).

:func:`evaluate_mixtures` draws prompts whose examples' tasks follow a mixture D of K tasks
(uniform, and skewed ones) and records per prompt each task's answer probability, KL(D || P)
and r (docs/theory.md section 6: the number of the K tasks whose answer is among the K most likely
next tokens; here every answer is one token, followed by the newline). The constructed model
(Theorem 1) with the same K tasks is the reference: it has K heads where they are needed and
outputs the mixture itself.

The results are typed records: :class:`ScalingStudy` (``scaling eval``) and
:class:`ScalingRuns` (``scaling runs``) hold one :class:`ScalingEntry` per model, whose uniform
(and skewed) mixtures are one :class:`MixtureBlock` per K; ``scaling calibration`` writes an
:class:`empirical.calibration.CalibrationResult`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from empirical import synthetic
from empirical.results import MeanCI, Record, Stamped, optional, record, result_type
from empirical.training import TrainConfig, tiny

#: Training budget of every member: steps, sequences per step (40 examples each).
STEPS = 2000
BATCH = 16
#: The tiny add preset's two-task start, shortened in proportion to the budget.
CURRICULUM = ((500, (1, 4)),)
#: Width of the scaling family (3 layers, 6 heads each).
SIZES = (24, 48, 96, 192, 288)
#: Heads per layer of the capacity family (width 96).
HEADS = (1, 2, 3, 6)
CAPACITY_WIDTH = 96


def budget_lr(width: int) -> float:
    """The budget rule's learning rate of a member of width ``width``: 3e-3 x min(1, sqrt(64 / width))."""
    return 3e-3 * min(1.0, math.sqrt(64 / width))


@dataclass(frozen=True)
class Member:
    """One model of a family: its name (its run directory's) and its width and heads."""

    name: str
    width: int
    heads: int

    def config(self) -> TrainConfig:
        """The member's TrainConfig (the tiny add preset with the family's budget rule)."""
        d, h = self.width, self.heads
        if d % h:
            raise ValueError(f"width {d} is not a multiple of {h} heads")
        return tiny("add", steps=STEPS, batch_size=BATCH, curriculum=CURRICULUM, lr=budget_lr(d),
                    eval_every=250, ckpt_every=500,
                    model_changes=dict(d_model=d, num_heads=h, qk_dim=d // h, v_dim=d // h, mlp_dims=2 * d))


def scaling_members() -> list[Member]:
    return [Member(f"add-d{d}-h6", d, 6) for d in SIZES]


def capacity_members() -> list[Member]:
    return [Member(f"add-d{CAPACITY_WIDTH}-h{h}", CAPACITY_WIDTH, h) for h in HEADS]


def member_names() -> list[str]:
    """Every member's name (both families, shared ones once)."""
    return [m.name for m in members("all")]


def members(which: str = "all") -> list[Member]:
    """The members of ``which`` in {"scaling", "capacity", "all"} (shared ones listed once), or
    the one member named ``which`` (e.g. ``"add-d24-h6"``)."""
    if which not in ("scaling", "capacity", "all"):
        named = [m for m in members("all") if m.name == which]
        if not named:
            raise ValueError(f"which must be scaling, capacity, all or a member's name "
                             f"({', '.join(member_names())}), got {which!r}")
        return named
    out = (scaling_members() if which != "capacity" else []) + (capacity_members() if which != "scaling" else [])
    seen, unique = set(), []
    for m in out:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    return unique


def member_runs(m: Member, out: str | os.PathLike, seeds: Sequence[int] | None = None,
                lrs: Sequence[float] | None = None) -> list[tuple[TrainConfig, Path]]:
    """The configs and run directories :func:`train_member` trains in one step: the member
    (``out/<name>``, the budget rule's seed and learning rate); given ``seeds``, one per seed
    (``out/<name>-seed<s>``); given ``lrs`` (a learning-rate grid instead of the budget rule's;
    seeds default to [0]), one per learning rate and seed (``out/<name>-lr<lr>-seed<s>``)."""
    cfg = m.config()
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds) or any(int(s) < 0 for s in seeds)):
        raise ValueError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
    if lrs is not None and (not lrs or len(set(lrs)) != len(lrs)
                            or not all(math.isfinite(x) and 0 < x < 1 for x in lrs)):
        raise ValueError(f"lrs must be distinct learning rates in (0, 1), got {list(lrs)}")
    if seeds is None and lrs is None:
        return [(cfg, Path(out) / m.name)]
    if lrs is None:
        return [(replace(cfg, seed=int(s)), Path(out) / f"{m.name}-seed{int(s)}") for s in seeds]
    return [(replace(cfg, lr=float(x), seed=int(s)), Path(out) / f"{m.name}-lr{float(x):g}-seed{int(s)}")
            for x in lrs for s in (seeds if seeds is not None else [0])]


def train_member(m: Member, out: str | os.PathLike, seeds: Sequence[int] | None = None, *,
                 lrs: Sequence[float] | None = None, progress: bool = True) -> list[dict]:
    """Train the runs of :func:`member_runs` (the member, its seeds, or a learning-rate grid
    with seeds) in one vmapped step. Finished runs are kept, interrupted ones resumed; returns
    the training summaries."""
    from empirical.training import train_many

    cfgs, runs = zip(*member_runs(m, out, seeds, lrs))
    done = [json.loads((r / "result.json").read_text()) if (r / "result.json").is_file() else None for r in runs]
    if all(d is not None and d.get("step") == STEPS for d in done):
        return done
    resume = any((r / "config.json").is_file() for r in runs)
    return train_many(list(cfgs), list(runs), resume=resume, progress=progress)


def train_members(out: str | os.PathLike, which: str = "all", *, seeds: Sequence[int] | None = None,
                  lrs: Sequence[float] | None = None, progress: bool = True,
                  report: Callable[[str], None] = print) -> list[dict]:
    """Train every member of ``which`` into ``out`` (see :func:`train_member`); returns their
    training summaries."""
    summaries = []
    for m in members(which):
        for summary in train_member(m, out, seeds, lrs=lrs, progress=progress):
            acc = summary["eval"].get("answer_acc_late", float("nan"))
            report(f"{m.name} seed {summary['config']['seed']} lr {summary['config']['lr']:g}: "
                   f"{summary['params']} parameters, late accuracy {acc:.3f}, {summary['wall_s']:.0f} s")
            summaries.append(summary)
    return summaries


# --------------------------------------------------------------------------- K-task mixtures

#: Numbers of tasks in a mixture (Figure 6 uses several; the add family has ten tasks).
KS = (2, 3, 4, 5, 6)
#: Prompts per K: ``GROUPS`` task subsets (each its own proportions) of ``n_prompts / GROUPS`` prompts.
GROUPS = 10
N_EXAMPLES = 40


@record
class MixtureGroup(Record):
    """One prompt group of a K block (:func:`mixture_prompts`): its K tasks (add-family shifts)
    and their mixture, and per prompt the realised proportions D [K], the K answer
    probabilities P [K], KL(D || P) and the r's (:func:`prompt_metrics`; a study saved before the
    split of r has only ``r``, the next-token r)."""

    tasks: tuple[int, ...]
    mixture: tuple[float, ...]
    d: tuple[tuple[float, ...], ...]
    p: tuple[tuple[float, ...], ...]
    kl: tuple[float, ...]
    r: tuple[int, ...]
    r_complete: tuple[int, ...] | None = optional()
    r_strict: tuple[int, ...] | None = optional()
    r_next_token: tuple[int, ...] | None = optional()


@record
class MixtureBlock(Record):
    """One K of a model's uniform or skewed K-task mixtures (:func:`evaluate_mixtures`): the
    number of prompts; means over prompts with 95% intervals of KL(D || P), of the r's, of the
    mass on no task's answer (``other``) and of the second-largest task probability
    (``second``); the r's histograms (prompts with r = 0 ... K); var / (m (1 - m)) of each
    task's answer probability (None where undefined); and the per-prompt groups (absent in
    ``scaling runs`` files). ``r`` is the authors' rule where ``r_next_token`` is present, else
    (files saved before r was split) the next-token r: :attr:`next_token_r` is that one either
    way."""

    k: int
    skewed: bool
    n_prompts: int
    kl: MeanCI
    r: MeanCI
    r_histogram: tuple[int, ...]
    other: MeanCI
    second: MeanCI
    groups: tuple[MixtureGroup, ...] | None = optional()
    r_complete: MeanCI | None = optional()
    r_next_token: MeanCI | None = optional()
    r_strict: MeanCI | None = optional()
    r_complete_histogram: tuple[int, ...] | None = optional()
    r_next_token_histogram: tuple[int, ...] | None = optional()
    r_strict_histogram: tuple[int, ...] | None = optional()
    variance_ratio: tuple[float | None, ...] | None = optional()

    @property
    def next_token_r(self) -> MeanCI:
        """r as the answers among the K most likely next tokens."""
        return self.r if self.r_next_token is None else self.r_next_token


def mixture_prompts(fam: synthetic.Family, k: int, *, n_prompts: int, n_examples: int, skewed: bool,
                    seed: int, groups: int = GROUPS, tasks: Sequence[int] | None = None) -> list[dict]:
    """``groups`` prompt groups for K = ``k``: each draws K distinct tasks of ``fam`` (or uses
    ``tasks``) and proportions (uniform, or Dirichlet(1) when ``skewed``), then
    ``n_prompts // groups`` prompts whose examples' tasks are drawn i.i.d. from them
    (:func:`synthetic.mixed_prompts`). Group g comes from ``default_rng([seed, k, g, skewed])``,
    so every model evaluated with the same arguments reads the same prompts."""
    if k < 2 or k > len(fam.params):
        raise ValueError(f"K must lie in 2..{len(fam.params)} for the {fam.name} family, got {k}")
    if n_prompts < groups:
        raise ValueError(f"need at least {groups} prompts (one per group), got {n_prompts}")
    out = []
    for g in range(groups):
        rng = np.random.default_rng([seed, k, g, int(skewed)])
        chosen = np.asarray(tasks if tasks is not None else rng.choice(np.asarray(fam.params), size=k, replace=False))
        mix = rng.dirichlet(np.ones(k)) if skewed else np.full(k, 1.0 / k)
        prompts = synthetic.mixed_prompts(fam, rng, n_prompts // groups, n_examples, chosen, mix)
        out.append({"tasks": chosen.tolist(), "mixture": mix.tolist(), **prompts})
    return out


def prompt_metrics(p: np.ndarray, answers: np.ndarray, example_task: np.ndarray, k: int,
                   p_next: np.ndarray | None = None, beam: int = 8) -> dict:
    """Per-prompt metrics from next-token distributions ``p`` [P, V], the K tasks' answers
    [P, K] and each example's task (index into the K) [P, m]: the realised proportions D, the
    answer probabilities P, KL(D || P) and three r's over continuations of one token (every
    answer is one token, then the newline):

    * ``r`` (the authors' rule, :func:`empirical.llm.metrics.r_paper`): the pool holds the
      ``beam`` most probable tokens after which the newline is the most probable next token
      (and the empty continuation if the newline is the most probable token at once), each
      with its own probability (the newline's left out);
    * ``r_complete`` (ours, :func:`empirical.llm.metrics.r_complete`): every token of the
      ``beam`` most probable, and every answer, with the newline's probability multiplied in;
    * ``r_next_token``: the answers among the K most likely next tokens (docs/theory.md section 6;
      the study's r before the split);
    * ``r_strict``: ``r`` without the authors' tolerance (an answer 1e-5 below the K-th
      completion counts for them; when that completion is itself below 1e-5, every answer does).

    ``p_next`` [P, V, V] (``p_next[i, t]``: the distribution after prompt i and token t;
    :func:`next_after`) is needed for ``r`` and ``r_complete``; without it they are None."""
    from empirical.llm.metrics import kl_divergence, r_complete, r_metric, r_paper

    d = np.stack([(example_task == j).mean(axis=1) for j in range(k)], axis=1)
    p_ans = np.take_along_axis(p, answers, axis=1)
    logp = np.log(np.maximum(p, 1e-30))
    kl, r_tok, r_a, r_c, r_s = [], [], [], [], []
    nl = synthetic.NEWLINE
    for i in range(len(p)):
        kl.append(kl_divergence(d[i], p_ans[i]))
        pool = {str(t): float(v) for t, v in enumerate(logp[i])}
        names = [str(a) for a in answers[i]]
        r_tok.append(r_metric(logp[i, answers[i]], pool, names)[0])
        if p_next is None:
            continue
        top = np.argsort(-p[i], kind="stable")[:beam]
        done = {"": 1.0} if int(np.argmax(p[i])) == nl else {}
        done.update({str(t): float(p[i, t]) for t in top if t != nl and int(np.argmax(p_next[i, t])) == nl})
        r_a.append(r_paper(p_ans[i], done, names)[0])
        r_s.append(r_paper(p_ans[i], done, names, tol=0.0)[0])
        with_nl = np.log(np.maximum(p[i] * p_next[i, :, nl], 1e-30))
        r_c.append(r_complete(with_nl[answers[i]], {str(t): float(with_nl[t]) for t in top if t != nl}, names)[0])
    return {"d": d, "p": p_ans, "kl": np.array(kl), "r_next_token": np.array(r_tok),
            "r": np.array(r_a) if p_next is not None else None,
            "r_complete": np.array(r_c) if p_next is not None else None,
            "r_strict": np.array(r_s) if p_next is not None else None}


def next_after(model, tokens: np.ndarray, p: np.ndarray, answers: np.ndarray, beam: int = 8) -> np.ndarray:
    """``[P, V, V]``: the next-token distribution after each prompt followed by each of its
    ``beam`` most probable tokens and each of its answers (rows of other tokens are zero):
    one batched call of ``model.last_probs`` on the prompts extended by one token."""
    P, V = p.shape
    want = [sorted(set(np.argsort(-p[i], kind="stable")[:beam].tolist()) | set(answers[i].tolist()))
            for i in range(P)]
    rows = np.array([i for i in range(P) for _ in want[i]])
    toks = np.array([t for i in range(P) for t in want[i]])
    ext = np.concatenate([tokens[rows], toks[:, None].astype(tokens.dtype)], axis=1)
    q = np.asarray(model.last_probs(ext), dtype=np.float64)
    out = np.zeros((P, V, q.shape[1]))
    out[rows, toks] = q
    return out


def evaluate_mixtures(model, fam: synthetic.Family, *,
                      ks: Sequence[int] = KS, n_prompts: int = 500, n_examples: int = N_EXAMPLES,
                      skewed: bool = False, seed: int = 0, progress: bool = True,
                      make_model: Callable[[list[int]], object] | None = None) -> list[MixtureBlock]:
    """For each K in ``ks``, a :class:`MixtureBlock`: :func:`mixture_prompts`, every prompt's
    metrics, and their summary (mean with 95% interval of KL, the r's, other mass and the
    within-prompt second-largest task probability; the r's histograms) of ``model`` (an
    :class:`empirical.models.Model`).
    ``make_model(tasks)``, when given, builds the model per task subset instead (the
    constructed model of exactly those K tasks: :func:`constructed_models`)."""
    from tqdm.auto import tqdm

    from empirical import within_prompt as wp

    out = []
    for k in tqdm(ks, disable=not progress, desc="mixtures", unit="K"):
        groups, kl, p_all = [], [], []
        rs: dict[str, list] = {"r": [], "r_complete": [], "r_next_token": [], "r_strict": []}
        for group in mixture_prompts(fam, k, n_prompts=n_prompts, n_examples=n_examples, skewed=skewed, seed=seed):
            m_k = make_model(group["tasks"]) if make_model is not None else model
            p = np.asarray(m_k.last_probs(group["tokens"]), dtype=np.float64)
            nxt = next_after(m_k, group["tokens"], p, group["answers"]) if fam.end is not None else None
            m = prompt_metrics(p, group["answers"], group["example_task"], k, p_next=nxt)
            if nxt is None:  # no newline token (the construction's layout): the label token is the continuation
                m["r"] = m["r_complete"] = m["r_strict"] = m["r_next_token"]
            kl.extend(m["kl"].tolist())
            for key in rs:
                if m[key] is not None:
                    rs[key].extend(m[key].tolist())
            p_all.append(m["p"])
            groups.append(MixtureGroup(tasks=tuple(group["tasks"]),
                                       mixture=tuple(np.round(group["mixture"], 4).tolist()),
                                       d=_table(np.round(m["d"], 4)), p=_table(np.round(m["p"], 5)),
                                       kl=tuple(np.round(m["kl"], 4).tolist()),
                                       **{key: tuple(m[key].tolist()) for key in rs if m[key] is not None}))
        p_ans = np.concatenate(p_all)
        out.append(MixtureBlock(
            k=int(k), skewed=bool(skewed), n_prompts=len(p_ans), kl=MeanCI.of(kl),
            **{key: MeanCI.of(v) for key, v in rs.items() if v},
            **{f"{key}_histogram": _histogram(v, k) for key, v in rs.items() if v},
            other=MeanCI.of(1.0 - p_ans.sum(axis=1)),
            second=MeanCI.of(np.sort(p_ans, axis=1)[:, -2]),
            # P(answer of the k-th task in the prompt's order) over prompts: var / (m (1 - m))
            variance_ratio=tuple(wp.variance_ratio(p_ans)),
            # per prompt, by group (its tasks and mixture): D, P, KL and the r's
            groups=tuple(groups)))
    return out


def _table(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(map(tuple, np.asarray(a).tolist()))


def _histogram(r, k: int) -> tuple[int, ...]:
    """Prompts with r = 0, 1, ..., K."""
    return tuple(np.bincount(np.asarray(r, dtype=int), minlength=k + 1).tolist())


def refresh_r(study: ScalingStudy, *, progress: bool = True, report: Callable[[str], None] = print,
              names: Sequence[str] | None = None, parts: Sequence[str] = ("uniform", "skewed")) -> ScalingStudy:
    """A saved study whose trained members get ``r`` (the authors' rule) and ``r_complete``
    (ours) per prompt, re-measured on the shipped weights (checked against each entry's
    fingerprint) on the study's own prompts (rebuilt from its seed); the answer probabilities,
    KL and the study's earlier r (kept as ``r_next_token``) stay as saved, and are checked
    against the re-measured ones. Nothing is trained. Members whose weights are not found or
    differ are left as they are and reported. The constructed model has no newline token (its
    layout has none), so its r's stay the next-token r."""
    from empirical import runs
    from empirical import within_prompt as wp
    from empirical.models import FlaxModel

    cfg = study.config
    fam = synthetic.family("add")

    def with_ratio(block: MixtureBlock, **changes) -> MixtureBlock:  # var / (m (1 - m)) from the saved per-prompt P
        p = np.concatenate([np.asarray(g.p) for g in block.groups])
        return replace(block, **changes, variance_ratio=tuple(wp.variance_ratio(p)))

    def each_block(entry: ScalingEntry, change: Callable[[MixtureBlock], MixtureBlock]) -> ScalingEntry:
        return replace(entry, **{part: tuple(change(b) for b in getattr(entry, part))
                                 for part in ("uniform", "skewed") if getattr(entry, part) is not None})

    same = ("r_complete", "r_next_token", "r_strict")
    models = []
    for entry in study.models:
        if entry.kind == "constructed":  # no newline token: every r is the next-token r
            models.append(each_block(entry, lambda b: with_ratio(
                b, **{key: b.r for key in same},
                groups=tuple(replace(g, **{key: g.r for key in same}) for g in b.groups))))
            continue
        if entry.kind != "trained" or (names is not None and entry.name not in names):
            # not re-measured: "r" stays what it was (the next-token r unless r_complete is there)
            models.append(each_block(entry, lambda b: with_ratio(b, r_next_token=b.next_token_r)))
            continue
        try:
            mcfg, params, _ = runs.load(entry.name)
        except (FileNotFoundError, ValueError) as err:
            report(f"{entry.name}: not re-measured ({err})")
            models.append(entry)
            continue
        if fingerprint(params) != entry.fingerprint:
            report(f"{entry.name}: the shipped weights are not the measured ones; not re-measured")
            models.append(entry)
            continue
        model = FlaxModel(entry.name, mcfg.model, params, "learned")
        new = entry
        for part, skewed in (("uniform", False), ("skewed", True)):
            if getattr(entry, part) is None or part not in parts:
                continue
            fresh = []
            for block in getattr(entry, part):
                k = block.k
                gs = mixture_prompts(fam, k, n_prompts=cfg.n_prompts, n_examples=cfg.n_examples, skewed=skewed,
                                     seed=cfg.seed, groups=cfg.groups)
                rs: dict[str, list] = {"r": [], "r_complete": [], "r_next_token": [], "r_strict": []}
                groups = []
                for g, saved in zip(gs, block.groups):
                    p = np.asarray(model.last_probs(g["tokens"]), dtype=np.float64)
                    m = prompt_metrics(p, g["answers"], g["example_task"], k,
                                       p_next=next_after(model, g["tokens"], p, g["answers"]))
                    if np.abs(np.round(m["p"], 5) - np.asarray(saved.p)).max() > 2e-4:
                        raise ValueError(f"{entry.name} K={k}: re-measured answer probabilities differ from the saved")
                    old_r = saved.r if saved.r_next_token is None else saved.r_next_token
                    if m["r_next_token"].tolist() != list(old_r):
                        report(f"{entry.name} K={k}: next-token r differs from the saved in "
                               f"{int(np.sum(m['r_next_token'] != np.asarray(old_r)))} prompts (float ties)")
                    groups.append(replace(saved, r=tuple(m["r"].tolist()), r_complete=tuple(m["r_complete"].tolist()),
                                          r_strict=tuple(m["r_strict"].tolist()), r_next_token=tuple(old_r)))
                    for key in rs:
                        rs[key].extend(getattr(groups[-1], key))
                p_ans = np.concatenate([np.asarray(g.p) for g in groups])
                fresh.append(replace(block, **{key: MeanCI.of(v) for key, v in rs.items()},
                                     **{f"{key}_histogram": _histogram(v, k) for key, v in rs.items()},
                                     variance_ratio=tuple(wp.variance_ratio(p_ans)), groups=tuple(groups)))
            new = replace(new, **{part: tuple(fresh)})
        models.append(new)
        report(f"{entry.name}: " + ", ".join(f"K={x.k}: r={x.r.mean:.2f} r_complete={x.r_complete.mean:.2f} "
                                             f"(next-token {x.r_next_token.mean:.2f})" for x in new.uniform))
    return replace(study, models=tuple(models))


def constructed_family() -> synthetic.Family:
    """The add family's ten tasks (y = x + h mod 10) as construction tasks (shift tasks on 10
    symbols, examples of one input and a label), in the construction's layout."""
    from construction.tasks import TaskSet, shift_task

    tasks = tuple(shift_task(0, h, 10, name=f"x0 + {h}") for h in range(10))
    return synthetic.lookup_family(TaskSet(vocab_size=10, example_len=2, tasks=tasks), name="add-constructed")


def constructed_models(fam: synthetic.Family, *, max_examples: int = 64, beta: float = 30.0) -> Callable:
    """``make_model(tasks)`` for :func:`evaluate_mixtures`: Theorem 1's model of exactly those
    K tasks of ``fam`` (K heads where the construction runs tasks in parallel), a
    :class:`empirical.models.FlaxModel`."""
    from construction.tasks import TaskSet
    from empirical.models import FlaxModel

    ts = fam.task_set

    def make(tasks: list[int]) -> FlaxModel:
        sub = TaskSet(vocab_size=ts.vocab_size, example_len=ts.example_len, tasks=tuple(ts.tasks[h] for h in tasks))
        return FlaxModel.constructed(sub, max_examples=max_examples, beta=beta)

    return make


# --------------------------------------------------------------------------- the study

#: K of the skewed mixtures (the calibration study's; proportions Dirichlet(1) per group).
SKEWED_KS = (2, 3, 4)


@record
class ScalingEntry(Record):
    """One model of a study (``scaling eval``) or of ``scaling runs``, and its uniform (and, in
    a study, skewed) K-task mixtures, one :class:`MixtureBlock` per K. A trained add model
    (``kind="trained"``) has its width, heads, parameters, training step and seed, weights'
    fingerprint and single-task accuracy on the second half of one-task sequences (all tasks,
    and the worst task); the constructed model (``"constructed"``) has ``heads="K"`` and its
    ``beta``. ``scaling runs`` files written before the entries were shared name a run by
    ``run``, ``seed`` and ``steps`` instead (:attr:`label`, :attr:`training_seed`,
    :attr:`training_steps` read either)."""

    run: str | None = optional()
    seed: int | None = optional()
    steps: int | None = optional()
    name: str | None = optional()
    kind: str | None = optional()
    width: int | None = optional()
    heads: int | str
    beta: float | None = optional()
    params: int | None = optional()
    step: int | None = optional()
    seed_of_training: int | None = optional()
    lr: float | None = optional()
    fingerprint: str | None = optional()
    single_task_late_acc: float | None = optional()
    worst_task_late_acc: float | None = optional()
    uniform: tuple[MixtureBlock, ...]
    skewed: tuple[MixtureBlock, ...] | None = optional()

    @property
    def label(self) -> str:
        """The model's name (its run directory's), or its run directory."""
        return self.name if self.name is not None else self.run

    @property
    def training_seed(self) -> int | None:
        return self.seed if self.seed_of_training is None else self.seed_of_training

    @property
    def training_steps(self) -> int | None:
        return self.steps if self.step is None else self.step

    def block(self, k: int, *, skewed: bool = False) -> MixtureBlock:
        """The uniform (or skewed) mixtures' block of K = ``k``."""
        found = [b for b in (self.skewed if skewed else self.uniform) or () if b.k == k]
        if not found:
            raise KeyError(f"{self.label}: no {'skewed' if skewed else 'uniform'} block of K = {k}")
        return found[0]


@record
class StudyConfig(Record):
    """The settings of a study (:func:`evaluate_study`): the members' training budget and the two
    families, the K's of the uniform and skewed mixtures, the prompts per K, examples per prompt,
    prompt groups and seed, and the runs directory."""

    steps: int
    batch: int
    curriculum: tuple[tuple[int, tuple[int, ...]], ...]
    sizes: tuple[int, ...]
    heads: tuple[int, ...]
    capacity_width: int
    ks: tuple[int, ...]
    skewed_ks: tuple[int, ...]
    n_prompts: int
    n_examples: int
    groups: int
    seed: int
    runs: str


@record
class RefreshNote(Record):
    """Where a study's r's were re-measured (:func:`refresh_r`): its settings, provenance and a note."""

    config: dict
    package_version: str
    device: str
    date: str
    note: str


@result_type("scaling eval")
@record
class ScalingStudy(Stamped):
    """The result of ``superpose scaling eval`` (:func:`evaluate_study`): the members not
    trained yet, and one :class:`ScalingEntry` per trained member and for the constructed model."""

    config: StudyConfig
    missing: tuple[str, ...]
    models: tuple[ScalingEntry, ...]
    r_refresh: RefreshNote | None = optional()

    def family(self, which: str) -> list[ScalingEntry]:
        """The entries of the members of ``which`` in {"scaling", "capacity"}."""
        names = {m.name for m in (scaling_members() if which == "scaling" else capacity_members())}
        return [e for e in self.models if e.name in names]

    @property
    def constructed(self) -> ScalingEntry | None:
        return next((e for e in self.models if e.kind == "constructed"), None)


@record
class RunsConfig(Record):
    """The settings of ``superpose scaling runs``: the run directories, prompts per K and seed."""

    runs: tuple[str, ...]
    n_prompts: int
    seed: int


@result_type("scaling runs")
@record
class ScalingRuns(Stamped):
    """The result of ``superpose scaling runs`` (:func:`evaluate_runs`): one
    :class:`ScalingEntry` per run, uniform mixtures only, without per-prompt groups."""

    config: RunsConfig
    models: tuple[ScalingEntry, ...]

    def merge(self, *others: ScalingRuns) -> ScalingRuns:
        """One result of several ``scaling runs`` batches measured the same way (the same
        prompts per K and prompt seed: each run's numbers depend only on its weights and
        those), its runs in the order given; the latest batch's date. A run in two batches,
        or batches of other settings, is an error."""
        batches = (self, *others)
        settings = {(b.config.n_prompts, b.config.seed) for b in batches}
        if len(settings) > 1:
            raise ValueError(f"batches of different settings (prompts per K, seed): {sorted(settings)}")
        runs = [r for b in batches for r in b.config.runs]
        if len(set(runs)) != len(runs):
            raise ValueError(f"a run is in more than one batch: {sorted({r for r in runs if runs.count(r) > 1})}")
        latest = max(batches, key=lambda b: b.date)
        return replace(latest, config=replace(self.config, runs=tuple(runs)),
                       models=tuple(m for b in batches for m in b.models))


def _entry(name: str, model, fam, *, n_prompts: int, seed: int, progress: bool, make_model=None, skewed: bool = True,
           **info) -> ScalingEntry:
    kw = dict(n_prompts=n_prompts, seed=seed, progress=progress, make_model=make_model)
    uniform = tuple(evaluate_mixtures(model, fam, ks=KS, **kw))
    skewed_blocks = tuple(evaluate_mixtures(model, fam, ks=SKEWED_KS, skewed=True, **kw)) if skewed else None
    return ScalingEntry(name=name, **info, uniform=uniform, skewed=skewed_blocks)


def _trained_entry(name: str, cfg, params, step: int, **kw) -> ScalingEntry:
    """:func:`_entry` of a trained add model, with its size, weights' fingerprint and
    single-task accuracy (100 fresh sequences per task)."""
    from empirical.models import FlaxModel
    from empirical.training import evaluate_tasks, param_count

    acc = evaluate_tasks(cfg, params, sequences=100)
    return _entry(name, FlaxModel(name, cfg.model, params, "learned"), synthetic.family("add"), kind="trained",
                  width=cfg.model.d_model, heads=cfg.model.num_heads, params=param_count(params), step=step,
                  seed_of_training=cfg.seed, lr=cfg.lr, fingerprint=fingerprint(params),
                  single_task_late_acc=acc["answer_acc_late"], worst_task_late_acc=acc["worst_task_late"], **kw)


def fingerprint(params) -> str:
    """A short SHA-256 of a parameter tree's arrays (which weights an entry was measured on)."""
    import hashlib

    import jax

    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


def _study_config(runs_dir, n_prompts: int, seed: int) -> StudyConfig:
    return StudyConfig(steps=STEPS, batch=BATCH, curriculum=CURRICULUM, sizes=SIZES, heads=HEADS,
                       capacity_width=CAPACITY_WIDTH, ks=KS, skewed_ks=SKEWED_KS, n_prompts=n_prompts,
                       n_examples=N_EXAMPLES, groups=GROUPS, seed=seed, runs=str(runs_dir))


def evaluate_study(runs_dir: str | os.PathLike, *, n_prompts: int = 500, seed: int = 0, progress: bool = True,
                   reuse: ScalingStudy | None = None, report: Callable[[str], None] = print) -> ScalingStudy:
    """Every member of both families found in ``runs_dir`` (a run directory per member, or
    a shipped model of the member's name) trained to the end, and the constructed model with
    K heads, on uniform K-task mixtures (K in :data:`KS`) and skewed ones (:data:`SKEWED_KS`);
    the same prompts for every trained model. Members not trained yet are listed in
    ``missing``. ``reuse``: an earlier study of the same settings whose entries are kept for
    members whose weights have the same :func:`fingerprint` (the rest are evaluated)."""
    from empirical import runs
    from empirical.results import provenance
    config = _study_config(runs_dir, n_prompts, seed)
    old = {}
    if reuse is not None:
        if replace(reuse.config, runs="") != replace(config, runs=""):
            raise ValueError("the study to reuse was made with other settings (steps, prompts, K, seed, ...)")
        old = {e.name: e for e in reuse.models}
    entries, missing = [], []
    for m in members("all"):
        where = Path(runs_dir) / m.name
        try:
            cfg, params, step = runs.load(str(where) if where.is_dir() else m.name)
        except (FileNotFoundError, ValueError):
            missing.append(m.name)
            continue
        if step != STEPS:  # still training
            missing.append(m.name)
            continue
        if cfg.model != m.config().model:
            raise ValueError(f"{where}: its model is not the family member {m.name}'s")
        if m.name in old and old[m.name].fingerprint == fingerprint(params):
            entries.append(old[m.name])
            report(f"{m.name}: reused (same weights)")
            continue
        entries.append(_trained_entry(m.name, cfg, params, step, n_prompts=n_prompts, seed=seed, progress=progress))
        e = entries[-1]
        report(f"{m.name}: {e.params} params, single-task late acc {e.single_task_late_acc:.3f}; "
               + ", ".join(f"K={x.k}: r={x.r.mean:.2f} KL={x.kl.mean:.2f}" for x in e.uniform))
    if "constructed (K heads)" in old:
        entries.append(old["constructed (K heads)"])
    else:
        cfam = constructed_family()
        entries.append(_entry("constructed (K heads)", None, cfam, n_prompts=n_prompts, seed=seed, progress=progress,
                              make_model=constructed_models(cfam), kind="constructed", heads="K", beta=30.0))
    report("constructed: " + ", ".join(f"K={x.k}: r={x.r.mean:.2f} KL={x.kl.mean:.4f}" for x in entries[-1].uniform))
    return ScalingStudy(command="scaling eval", **provenance(config), missing=tuple(missing), models=tuple(entries))


def read_study(path: str | os.PathLike) -> ScalingStudy:
    """The study of a `superpose scaling eval` JSON file (a ValueError naming the file otherwise)."""
    from empirical.results import read_result

    return read_result(path, "scaling eval")


def read_runs(path: str | os.PathLike) -> ScalingRuns:
    """The runs of a `superpose scaling runs` JSON file (a ValueError naming the file otherwise)."""
    from empirical.results import read_result

    return read_result(path, "scaling runs")


#: Single-task accuracy (second half of one-task sequences) from which a model counts as having
#: learned its tasks (chance is 0.1; a model that learns reaches 0.96-1.0 in the study).
LEARNED = 0.95


def seeds_of(entry: ScalingEntry, spread: ScalingRuns | None) -> list[ScalingEntry]:
    """The runs of ``spread`` with ``entry``'s width and heads trained at the budget rule's
    learning rate (the member at other seeds)."""
    if spread is None:
        return []
    return [m for m in spread.models if (m.width, m.heads) == (entry.width, entry.heads)
            and (m.lr is None or math.isclose(m.lr, budget_lr(m.width)))]


# --------------------------------------------------------------------------- plots


def plot_family(study: ScalingStudy, which: str, path: str | os.PathLike, spread: ScalingRuns | None = None) -> Path:
    """r, KL(D || P), the within-prompt second-largest task probability and the single-task
    accuracy (on the second half of one-task sequences: did the model learn?) against model size
    (``which="scaling"``, log-scaled parameters) or heads per layer (``"capacity"``), one
    line per K of the uniform mixtures, with 95% intervals; the constructed model with K heads
    is drawn as dotted lines of the same colours. ``spread`` (a ``scaling runs`` result of the
    members at other seeds) adds each of those models as a cross at its member's place, and
    the accuracy panel says in how many seeds the member learned its tasks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical import results

    models = sorted(study.family(which), key=lambda e: e.params if which == "scaling" else e.heads)
    if not models:
        raise ValueError(f"the study holds no trained member of the {which} family")
    x = [e.params if which == "scaling" else e.heads for e in models]
    ref = study.constructed
    fig = Figure(figsize=(17, 3.8), dpi=140)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 4, i + 1) for i in range(4)]
    axes[3].plot(x, [e.single_task_late_acc for e in models], "ko-", markersize=4, label="all tasks")
    axes[3].plot(x, [e.worst_task_late_acc for e in models], "k^--", markersize=4, label="worst task")
    axes[3].axhline(0.1, color="gray", ls=":", lw=1)
    axes[3].set_ylim(0, 1.02)
    others = [seeds_of(e, spread) for e in models]
    counts = []
    for xi, e, more in zip(x, models, others):
        if more:
            axes[3].plot([xi] * len(more), [m.single_task_late_acc for m in more], "kx", markersize=6)
            learned = sum(a >= LEARNED for a in [e.single_task_late_acc] + [m.single_task_late_acc for m in more])
            where = f"{e.params / 1e6:.2f}M" if which == "scaling" else f"{e.heads} head{'s' if e.heads != 1 else ''}"
            counts.append(f"{where} {learned}/{len(more) + 1}")
    if counts:
        axes[3].set_title(f"seeds that learned (acc. >= {LEARNED}):\n" + ", ".join(counts), fontsize=7)
    axes[3].legend(fontsize=7, loc="center right")
    # r as the answers among the K most likely next tokens (the study's first r; saved studies
    # before the split carry it as "r"); the authors' r and ours are in the JSON
    stats = ((lambda b: b.next_token_r, "r (tasks among the top K next tokens)"), (lambda b: b.kl, "KL(D || P)"),
             (lambda b: b.second, "mean 2nd-largest task prob."))
    ks = [m.k for m in models[0].uniform]
    for j, k in enumerate(ks):
        color = f"C{j}"
        for ax, (stat, _) in zip(axes, stats):
            pts = [stat(e.block(k)) for e in models]
            ax.errorbar(x, [p.mean for p in pts], yerr=[p.ci95 for p in pts], fmt="o-", color=color,
                        markersize=4, capsize=2, label=f"K={k}")
            if ref is not None:
                ax.axhline(stat(ref.block(k)).mean, color=color, ls=":", lw=1)
            for xi, more in zip(x, others):
                ax.plot([xi] * len(more), [stat(m.block(k)).mean for m in more], "x", color=color, markersize=5)
        # r of a model that ranks the ten digits at random: K answers among K of 10 places
        axes[0].axhline(k * k / 10, color=color, ls="-.", lw=0.8, alpha=0.6)
    for ax, (_, label) in zip(axes, stats + ((None, "single-task accuracy, 2nd half (chance 0.1)"),)):
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if which == "scaling":
            ax.set_xscale("log")
            ax.set_xlabel("parameters (3 layers, 6 heads)", fontsize=8)
        else:
            ax.set_xticks(x)
            ax.set_xlabel(f"heads per layer (width {CAPACITY_WIDTH})", fontsize=8)
    axes[1].set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    if ref is not None:
        handles.append(Line2D([], [], color="gray", ls=":"))
        labels.append("constructed,\nK heads")
    handles.append(Line2D([], [], color="gray", ls="-.", lw=0.8))
    labels.append("r of a random\ndigit ranking")
    if spread is not None:
        n_other = {m.training_seed for m in spread.models}
        handles.append(Line2D([], [], color="k", marker="x", ls=""))
        labels.append(f"seeds {', '.join(map(str, sorted(n_other)))}\n({spread.config.n_prompts} prompts per K)")
    fig.legend(handles, labels, fontsize=7, loc="center right")
    what = "model size" if which == "scaling" else "heads per layer"
    lines = "lines: the study's models (seed 0); " if spread is not None else ""
    fig.suptitle(f"add family, uniform K-task mixtures ({study.config.n_prompts} prompts per K): against {what}; "
                 f"{lines}dotted: the constructed model with K heads", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    return results.save_figure(fig, path)


def calibration_entries(study: ScalingStudy, llm_documents: Sequence = ()) -> list:
    """Calibration entries (:func:`empirical.calibration.summarize`) of the study's scaling
    family and constructed model (their skewed mixtures, all K pooled) and of saved LLM
    calibration runs (:class:`empirical.llm.probe.SkewedResult`)."""
    from empirical import calibration

    out = []
    for e in study.family("scaling") + ([study.constructed] if study.constructed else []):
        d = [row for m in e.skewed for g in m.groups for row in g.d]
        p = [row for m in e.skewed for g in m.groups for row in g.p]
        label = e.name if e.kind == "constructed" else f"{e.name} ({e.params / 1e6:.2f}M)"
        out.append(calibration.summarize(label, d, p, kind=e.kind, ks=SKEWED_KS))
    for llm in llm_documents:
        out.append(calibration.summarize(f"{llm.model} {llm.family}", [r.proportions for r in llm.rows],
                                         [r.probs for r in llm.rows], kind="llm"))
    return out


def evaluate_runs(run_dirs: Sequence[str | os.PathLike], *, n_prompts: int = 500, seed: int = 0,
                  report: Callable[[str], None] = print) -> ScalingRuns:
    """Other runs of the add family, e.g. members trained with another seed
    (``Member(...).config().replace(seed=1)``): single-task accuracy and the uniform K-task
    mixtures exactly as :func:`evaluate_study` measures the members (the same prompts), without
    per-prompt rows. Is a member's failure its seed or its size?"""
    from empirical import runs
    from empirical.results import provenance
    out = []
    for run in run_dirs:
        cfg, params, step = runs.load(run)
        if cfg.family != "add":
            raise ValueError(f"{run} is a {cfg.family} run; the study's models are add-family runs")
        entry = _trained_entry(str(run), cfg, params, step, n_prompts=n_prompts, seed=seed, progress=False,
                               skewed=False)
        entry = replace(entry, uniform=tuple(replace(m, groups=None) for m in entry.uniform))
        out.append(entry)
        report(f"{run} (seed {cfg.seed}): single-task late acc {entry.single_task_late_acc:.3f}; "
               + ", ".join(f"K={m.k}: r={m.r.mean:.2f} 2nd={m.second.mean:.3f}" for m in entry.uniform))
    config = RunsConfig(runs=tuple(str(r) for r in run_dirs), n_prompts=n_prompts, seed=seed)
    return ScalingRuns(command="scaling runs", **provenance(config), models=tuple(out))


def command(action: str, *, runs: str = "runs/scaling", which: str = "all", seeds: Sequence[int] | None = None,
            lrs: Sequence[float] | None = None, run_dirs: Sequence[str] = (),
            prompts: int = 500, seed: int = 0, study: str | None = None, reuse: str | None = None,
            llm: Sequence[str] = (), spread: str | None = None, out: str = "benchmarks/results/scaling",
            json_path: str | None = None, progress: bool = True, echo=print) -> None:
    """``superpose scaling train|runs|eval|plot|calibration`` (one action per call): train the
    members, evaluate other runs or the study (JSON), plot it, or fit calibration exponents of
    the study's models and saved LLM calibration runs."""
    from empirical.results import provenance

    out = Path(out)
    if action == "train":
        train_members(runs, which, seeds=seeds, lrs=lrs, progress=progress, report=echo)
        return
    if action == "runs":
        if not run_dirs:
            raise ValueError("scaling runs needs --run (repeatable): run directories of add-family models")
        target = json_path or str(out / "runs.json")
        evaluate_runs(run_dirs, n_prompts=prompts, seed=seed).write(target)
        echo(f"json: {target}")
        return
    if action == "eval":
        earlier = read_study(reuse) if reuse else None
        result = evaluate_study(runs, n_prompts=prompts, seed=seed, progress=progress, reuse=earlier)
        target = json_path or str(out / "scaling.json")
        result.write(target, indent=None)
        echo(f"json: {target}")
        if result.missing:
            echo("not trained yet: " + ", ".join(result.missing))
        return
    if study is None:
        raise ValueError(f"scaling {action} needs --study, a `superpose scaling eval` JSON")
    saved = read_study(study)
    if action == "plot":
        other = read_runs(spread) if spread else None
        for family in ("scaling", "capacity"):
            echo(f"plot: {plot_family(saved, family, out / f'{family}.png', other)}")
        return
    from empirical import calibration

    from empirical.results import read_result

    llm_docs = []
    for path in llm:
        doc = read_result(path, "probe --skewed")
        if not doc.rows:
            raise ValueError(f"{path} holds no calibration rows (a `superpose probe skewed` JSON)")
        llm_docs.append(doc)
    entries = calibration_entries(saved, llm_docs)
    for e in entries:
        ex = e.exponent
        echo(f"{e.name}: alpha {ex.alpha:.2f} [{ex.lo:.2f}, {ex.hi:.2f}] ({e.n_prompts} prompts)")
    echo(f"plot: {calibration.plot(entries, out / 'calibration.png')}")
    target = json_path or str(out / "calibration.json")
    config = calibration.CalibrationConfig(study=study, llm=tuple(llm))
    calibration.CalibrationResult(command="scaling calibration", **provenance(config), models=tuple(entries)).write(
        target, indent=None)
    echo(f"json: {target}")
