"""Constructed versus learned: does gradient descent find Theorem 1's mechanism?

A model here is an :class:`empirical.models.FlaxModel` that reads the construction's prompts
(``construction.prompts``): the constructed model of a task set, the shipped ``lookup`` model
(a standard small transformer), or a model of the construction's own shape trained on its
tasks (``superpose train --like-construction``). :func:`compare` holds a learned model against
the construction on the same prompts, at three levels:

* **behaviour** -- both output distributions on two-task prompts over the lambda grid and on
  skewed three-task mixtures: KL between them, each one's KL to the in-context mixture
  (the theory's target y_hat / |y_hat|_1, from the fitted-task fractions alpha_k), and
  calibration (answer probability against in-context proportion), per prompt;
* **mechanism** -- for each of the seven roles a number: attention of the best head to input
  p_k of its own example (task heads, query heads), uniformity of the best head's attention
  over the label positions at the query (averaging), held-out linear probes after every layer
  that decode the construction's quantities (G_k, E_k, C_k at labels; alpha_k = S_k, Q_k,
  OUT at the query), the readout's KL; and a causal check: moving the learned model's
  residual stream along its probe direction for alpha_0 - alpha_1 shifts its output as
  editing S_0 - S_1 shifts the constructed model's;
* **weights** -- every head's QK circuit and OV circuit read in one basis (the token one-hots
  and the structured position features), matched across models by a Hungarian assignment
  on their similarity; and the residual streams' linear CKA for every pair of layers.

The measures live in :mod:`empirical.analysis`; this module runs them and returns a
:class:`CompareResult` (a typed record; ``to_json`` / ``from_json``). The plots are in
:mod:`empirical.compare_plots`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from construction import sample_prompts
from construction.layout import Layout, code_bits
from construction.reference import reference_trace, superposition_target, task_outputs, task_weights
from construction.spec import ROLES, ConstructionSpec
from construction.tasks import TaskSet
from construction.transformer import TransformerConfig, run
from empirical.analysis.circuits import attention_roles, feature_basis, head_circuits, match_heads
from empirical.analysis.divergence import kl, normalised, tv
from empirical.analysis.grid import LAMBDAS
from empirical.analysis.probes import fit_probe, probe_score, score_of
from empirical.analysis.prompts import dirichlet_prompts, proportion_prompts, two_task_prompts
from empirical.analysis.similarity import cka_matrix
from empirical.models import FlaxModel, pattern_names, residual_names
from empirical.results import MeanCI, Record, Stampable, key, optional, record, result_type

#: Skewed three-task mixtures (proportions of tasks 0, 1, 2), not only uniform ones.
SKEWED = ((0.6, 0.3, 0.1), (0.1, 0.6, 0.3), (0.3, 0.1, 0.6), (0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1 / 3, 1 / 3, 1 / 3))
#: Prompt lengths (examples) of the uniform-mixture points: from one example to the most.
LENGTHS = (1, 2, 4, 8, 12, 16, 19, 24, 31)
#: A role counts as present when its number reaches this (attention mass, probe accuracy or R^2).
PRESENT = 0.9
#: Shifts of alpha_0 - alpha_1 applied by the causal check.
SHIFTS = (-0.4, -0.2, 0.0, 0.2, 0.4)
#: The floor of the second distribution in this study's KLs (its committed numbers use it).
KL_FLOOR = 1e-12



# --------------------------------------------------------------------------- the result, typed


@record
class BehaviourPoint(Record):
    """One prompt set's statistics; which set it is: ``lam`` (the sweep), ``proportions`` (the
    skewed mixtures) or ``n_examples`` (uniform mixtures by length)."""

    lam: float | None = key("lambda", omit_none=True, default=None)
    proportions: tuple[float, ...] | None = optional()
    n_examples: int | None = optional()
    kl_constructed_learned: MeanCI
    kl_target_constructed: MeanCI
    kl_target_learned: MeanCI
    tv: MeanCI
    p_constructed: tuple[float, ...]
    p_learned: tuple[float, ...]
    target: tuple[float, ...]
    argmax_present: float


@record
class Calibration(Record):
    """Mean answer probability per bin of in-context proportion (None: an empty bin)."""

    proportion: tuple[float | None, ...]
    count: tuple[int, ...]
    curves: dict[str, tuple[float | None, ...]]


@record
class AnswerDiff(Record):
    """The largest per-prompt difference of any task's answer probability between the models."""

    max: float
    q99: float
    q95: float
    median: float


@record
class Behaviour(Record):
    pair: tuple[str, str]
    n_prompts: int
    n_examples: int
    sweep: tuple[BehaviourPoint, ...]
    skewed: tuple[BehaviourPoint, ...]
    by_length: tuple[BehaviourPoint, ...]
    calibration: Calibration
    answer_diff: AnswerDiff


@record
class LengthProperties(Record):
    n_examples: int
    argmax_absent: float
    beyond_tolerance: float


@record
class Properties(Record):
    tolerance: float
    mixtures_per_length: int
    prompts_per_mixture: int
    lengths: tuple[LengthProperties, ...]


@record
class Head(Record):
    """A head (layers numbered from 1) and its score; averaging heads carry both factors."""

    score: float
    layer: int
    head: int
    label_mass: float | None = optional()
    uniformity: float | None = optional()


@record
class Attention(Record):
    task_heads: dict[str, Head] = key("task heads")
    query_heads: dict[str, Head] = key("query heads")
    averaging: Head


@record
class ProbeScore(Record):
    """A held-out probe score: ``accuracy`` with its majority ``baseline``, or ``r2``."""

    accuracy: float | None = optional()
    baseline: float | None = optional()
    r2: float | None = optional()

    @property
    def value(self) -> float:
        return score_of(self)


@record
class ProbeEntry(Record):
    role: str
    where: str
    kind: str
    layers: tuple[ProbeScore, ...]
    best: float
    best_layer: int


@record
class Role(Record):
    number: float
    measure: str
    probe: float | None = optional()
    present_if: str | None = optional()
    present: bool


@record
class Mechanism(Record):
    attention: Attention
    probes: dict[str, ProbeEntry]
    readout_kl: MeanCI
    roles: dict[str, Role]


@record
class MechanismPair(Record):
    constructed: Mechanism
    learned: Mechanism
    n_prompts: int


@record
class Effect(Record):
    """The change of P(answer 0) - P(answer 1) per shift of alpha_0 - alpha_1 by one edit."""

    edit: str
    probe_r2: float | None = optional()
    probe_r2_per_layer: tuple[float, ...] | None = optional()
    layer: int | None = optional()
    change: tuple[float, ...]
    slope: float
    move_over_residual_norm: float


@record
class Causal(Record):
    shifts: tuple[float, ...]
    constructed: Effect
    learned: Effect
    learned_data_direction: Effect


@record
class HeadPair(Record):
    a: tuple[int, int]
    b: tuple[int, int]
    similarity: float


@record
class Matching(Record):
    heads_a: tuple[tuple[int, int], ...]
    heads_b: tuple[tuple[int, int], ...]
    inactive_a: int
    inactive_b: int
    similarity: tuple[tuple[float, ...], ...]
    pairs: tuple[HeadPair, ...]
    mean_matched: float


@record
class Weights(Record):
    basis: tuple[str, ...]
    matching: Matching
    cka: tuple[tuple[float, ...], ...]
    cka_best_per_constructed_layer: tuple[float, ...]


@result_type("compare")
@record
class CompareResult(Stampable):
    """The three-level report; the provenance fields (``config`` ... ``run``) and ``plots`` are
    set by the command line (None and left out of the JSON otherwise)."""

    run: str | None = optional()
    learned: str
    tasks: dict[str, Any]
    max_examples: int
    seed: int
    beta: float
    code_bits: int
    behaviour: Behaviour
    properties: Properties
    mechanism: MechanismPair
    causal: Causal
    weights: Weights
    plots: tuple[str, ...] | None = optional()


def _tuples(x):
    """Nested lists (or arrays) as nested tuples of Python numbers."""
    if isinstance(x, np.ndarray):
        x = x.tolist()
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- models


def constructed_model(task_set: TaskSet, *, bits: int = 5, beta: float = 30.0) -> FlaxModel:
    """The construction of ``task_set`` numbering up to 2**bits - 1 examples (float32)."""
    return FlaxModel.constructed(task_set, bits=bits, beta=beta)


def learned_model(run_name: str | os.PathLike) -> tuple[FlaxModel, Any]:
    """(model, training config) of a shipped model or run directory of the ``lookup`` family;
    its task set is ``cfg.fam.task_set`` and its prompts hold at most ``cfg.n_examples - 1``
    examples (the training sequences less the query's place)."""
    model, cfg = FlaxModel.trained(run_name)
    if cfg.family != "lookup":
        raise ValueError(f"{run_name} was trained on the {cfg.family!r} family; comparing with the construction "
                         "needs a model of the lookup family (the construction's token layout)")
    return model, cfg


def code_bits_of(model: FlaxModel, max_examples: int) -> int:
    """The example-code bits the model reads (or those that number ``max_examples``)."""
    return model.config.code_bits or code_bits(max_examples)


# --------------------------------------------------------------------------- running
# This study's own batching (64 prompts for distributions, 32 for captures; the last batch
# short): its committed numbers were computed so, and XLA's float32 results depend on the batch.


@partial(jax.jit, static_argnames=("config", "names"))
def _forward(config: TransformerConfig, params, tokens, names: tuple[str, ...]):
    logits, cache = run(config, params, tokens, capture=names)
    return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1), cache


def _probs(model: FlaxModel, tokens: np.ndarray, batch: int = 64) -> np.ndarray:
    """Next-token distributions at the last position: [P, V]."""
    out = [np.asarray(_forward(model.config, model.params, tokens[i : i + batch], ())[0])
           for i in range(0, len(tokens), batch)]
    return np.concatenate(out).astype(np.float64)


def _captured(model: FlaxModel, tokens: np.ndarray, batch: int = 32, patterns: bool = False) -> dict[str, np.ndarray]:
    """The residual stream after the embedding and after every layer ([P, L, D] each, under
    the canonical names), with every layer's attention pattern if ``patterns``; ``probs``
    holds the next-token distributions at the last position."""
    names = residual_names(model.num_layers) + (pattern_names(model.num_layers) if patterns else ())
    chunks = []
    for i in range(0, len(tokens), batch):
        probs, cache = _forward(model.config, model.params, tokens[i : i + batch], names)
        chunks.append({"probs": np.asarray(probs), **{k: np.asarray(v) for k, v in cache.items()}})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def in_context_mixture(tokens: np.ndarray, task_set: TaskSet) -> np.ndarray:
    """The theory's target distribution y_hat / |y_hat|_1 [P, V] (alpha_k: fitted-task fractions)."""
    return normalised(superposition_target(tokens, task_set.tasks, task_set.example_len))


# --------------------------------------------------------------------------- behaviour


def _behaviour_point(p_c, p_l, target, answers, **which) -> BehaviourPoint:
    """Statistics of one prompt set: KLs and both models' probability of each task's answer."""
    rows = np.arange(len(p_c))[:, None]
    return BehaviourPoint(
        **which,
        kl_constructed_learned=MeanCI.of(kl(p_c, p_l, floor=KL_FLOOR)),
        kl_target_constructed=MeanCI.of(kl(target, p_c, floor=KL_FLOOR)),
        kl_target_learned=MeanCI.of(kl(target, p_l, floor=KL_FLOOR)),
        tv=MeanCI.of(tv(p_c, p_l)),
        p_constructed=_tuples(p_c[rows, answers].mean(0)),
        p_learned=_tuples(p_l[rows, answers].mean(0)),
        target=_tuples(target[rows, answers].mean(0)),
        argmax_present=float(np.mean([a in ans for a, ans in zip(p_l.argmax(1), answers)])),
    )


def behaviour(constructed: FlaxModel, learned: FlaxModel, task_set: TaskSet, *, n_prompts: int, n_examples: int,
              seed: int, pair: tuple[int, int] = (0, 1)) -> Behaviour:
    """Output distributions of both models on the same prompts: a lambda sweep of tasks
    ``pair`` and skewed three-task mixtures (when there are at least three tasks), of
    ``n_examples`` examples, and uniform mixtures of every task at the prompt lengths of
    :data:`LENGTHS` up to ``n_examples``; calibration curves over all of them, and the largest
    per-prompt difference of any task's answer probability between the two models (the
    tolerance the property tests state)."""
    rng = np.random.default_rng([seed, 10])
    ts = task_set
    pooled = {"target": [], "constructed": [], "learned": []}
    max_diff = []

    def point(tokens, **which) -> BehaviourPoint:
        p_c, p_l = _probs(constructed, tokens), _probs(learned, tokens)
        target = in_context_mixture(tokens, ts)
        answers = task_outputs(tokens, ts.tasks, ts.example_len)  # [P, K]
        rows = np.arange(len(tokens))[:, None]
        for name, p in (("target", target), ("constructed", p_c), ("learned", p_l)):
            pooled[name].append(_distinct_answer_mass(p, answers))
        max_diff.append(np.abs(p_c[rows, answers] - p_l[rows, answers]).max(1))
        return _behaviour_point(p_c, p_l, target, answers, **which)

    sweep = [point(two_task_prompts(ts, rng, n_prompts, n_examples, lam, pair), lam=lam) for lam in LAMBDAS]
    skewed = []
    if len(ts.tasks) >= 3:
        for props in SKEWED:
            p = np.zeros(len(ts.tasks))
            p[:3] = props
            skewed.append(point(proportion_prompts(ts, rng, p, n_prompts, n_examples),
                                proportions=tuple(round(x, 4) for x in props)))
    uniform = np.full(len(ts.tasks), 1.0 / len(ts.tasks))
    by_length = [point(proportion_prompts(ts, rng, uniform, n_prompts, m), n_examples=m)
                 for m in LENGTHS if m <= n_examples]
    mass = {k: np.concatenate(v) for k, v in pooled.items()}
    diffs = np.concatenate(max_diff)
    return Behaviour(
        pair=(ts.names[pair[0]], ts.names[pair[1]]), n_prompts=n_prompts, n_examples=n_examples,
        sweep=tuple(sweep), skewed=tuple(skewed), by_length=tuple(by_length),
        calibration=calibration(mass["target"], {"constructed": mass["constructed"], "learned": mass["learned"]}),
        answer_diff=AnswerDiff(max=float(diffs.max()), q99=float(np.quantile(diffs, 0.99)),
                               q95=float(np.quantile(diffs, 0.95)), median=float(np.median(diffs))),
    )


def _distinct_answer_mass(p: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """[P, K] probability of each task's answer, counted once where tasks share an answer
    (NaN for the repeats), so that pooled (proportion, probability) pairs are not doubled."""
    rows = np.arange(len(p))[:, None]
    mass = p[rows, answers].astype(np.float64)
    repeat = np.zeros_like(mass, dtype=bool)
    for k in range(1, answers.shape[1]):
        repeat[:, k] = (answers[:, :k] == answers[:, k : k + 1]).any(1)
    mass[repeat] = np.nan
    return mass


def calibration(target_mass: np.ndarray, models: dict[str, np.ndarray], bins: int = 10) -> Calibration:
    """Mean answer probability per bin of in-context proportion (the theory's target mass of
    that answer), for every model: the reliability curve (identity = proportional)."""
    x = target_mass.ravel()
    keep = np.isfinite(x)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(x[keep], edges) - 1, 0, bins - 1)
    curves = {}
    for name, mass in models.items():
        y = mass.ravel()[keep]
        curves[name] = tuple(float(y[which == b].mean()) if np.any(which == b) else None for b in range(bins))
    centres = tuple(float(x[keep][which == b].mean()) if np.any(which == b) else None for b in range(bins))
    counts = tuple(int(np.sum(which == b)) for b in range(bins))
    return Calibration(proportion=centres, count=counts, curves=curves)


def property_scan(constructed: FlaxModel, learned: FlaxModel, task_set: TaskSet, *, tolerance: float,
                  max_examples: int, mixtures: int = 8, prompts: int = 32, seed: int = 0) -> Properties:
    """The two properties the property tests check, measured at every prompt length of
    :data:`LENGTHS` up to ``max_examples`` over ``mixtures`` random mixtures (a random subset
    of the tasks with random proportions) of ``prompts`` prompts each: the share of prompts
    whose learned argmax is the answer of no task in the prompt (no task that fits one of its
    examples: from the prompt alone a task that fits by chance cannot be told from one that
    generated examples, and the construction weights both), and the share
    whose largest answer-probability difference from the construction exceeds ``tolerance``."""
    rng = np.random.default_rng([seed, 30])
    ts, K = task_set, len(task_set.tasks)
    rows = np.arange(prompts)[:, None]
    out = []
    for m in [m for m in LENGTHS if m <= max_examples]:
        absent = beyond = 0
        for _ in range(mixtures):
            chosen = rng.permutation(K)[: rng.integers(1, K + 1)]
            w = rng.uniform(0.05, 1.0, len(chosen))
            pr = sample_prompts(rng, [ts.tasks[k] for k in chosen], w / w.sum(), n_examples=m, batch=prompts,
                                vocab_size=ts.vocab_size, example_len=ts.example_len, interleave="iid")
            answers = task_outputs(pr.tokens, ts.tasks, ts.example_len)
            p_l, p_c = _probs(learned, pr.tokens), _probs(constructed, pr.tokens)
            top = p_l.argmax(1)
            fits = task_weights(pr.tokens, ts.tasks, ts.example_len) > 0  # [P, K]: in the prompt
            absent += int(sum(top[i] not in set(answers[i, fits[i]]) for i in range(prompts)))
            beyond += int((np.abs(p_l[rows, answers] - p_c[rows, answers]).max(1) > tolerance).sum())
        total = mixtures * prompts
        out.append(LengthProperties(n_examples=m, argmax_absent=absent / total, beyond_tolerance=beyond / total))
    return Properties(tolerance=tolerance, mixtures_per_length=mixtures, prompts_per_mixture=prompts,
                      lengths=tuple(out))


# --------------------------------------------------------------------------- mechanism


@dataclass(frozen=True)
class Quantity:
    """A construction quantity to probe: residual block, where it is read, and its kind."""

    name: str
    block: str
    where: str  # "labels" or "query"
    kind: str  # "class", "binary" or "real"
    role: str


def quantities(task_set: TaskSet) -> list[Quantity]:
    K = range(len(task_set.tasks))
    qs = [Quantity(f"G_{k}", f"G_{k}", "labels", "class", "task heads") for k in K]
    qs += [Quantity(f"E_{k}", f"E_{k}", "labels", "binary", "error") for k in K]
    qs += [Quantity(f"C_{k}", f"C_{k}", "labels", "binary", "indicator") for k in K]
    qs += [Quantity(f"alpha_{k}", f"S_{k}", "query", "real", "averaging") for k in K]
    qs += [Quantity(f"Q_{k}", f"Q_{k}", "query", "class", "query heads") for k in K]
    qs += [Quantity("OUT", "OUT", "query", "real", "weighting")]
    return qs


def _rows(resid: np.ndarray, layout: Layout, where: str) -> np.ndarray:
    """[P * r, D] the residual at the label positions (r = m) or at the query's last token (r = 1)."""
    pos = layout.label_positions if where == "labels" else np.array([layout.length - 1])
    return resid[:, pos].reshape(-1, resid.shape[-1])


def _attention(patterns: dict[str, np.ndarray], layout: Layout, task_set: TaskSet) -> Attention:
    roles = attention_roles(patterns, layout, task_set)
    return Attention(task_heads={k: Head(**v) for k, v in roles["task heads"].items()},
                     query_heads={k: Head(**v) for k, v in roles["query heads"].items()},
                     averaging=Head(**roles["averaging"]))


def probes(model_residuals: list[np.ndarray], truth: list[np.ndarray], layout: Layout, task_set: TaskSet,
           spec_residual, split: float = 0.7) -> dict[str, ProbeEntry]:
    """Held-out probe scores of every quantity after every layer of a model.

    ``model_residuals``: [embed, after layer 1, ...] of the model, each [P, L, D];
    ``truth``: the construction's reference trace on the same prompts (its final layer holds
    every quantity). Prompts are split into training and held-out parts by index.
    """
    final = truth[-1]
    n_train = int(round(split * final.shape[0]))
    out = {}
    for q in quantities(task_set):
        y = _rows(final[..., spec_residual[q.block]], layout, q.where)
        per = len(y) // final.shape[0]
        cut = n_train * per
        if q.kind == "binary":
            y = (y > 0.5).astype(np.float64)
        scores = []
        for resid in model_residuals:
            x = _rows(resid, layout, q.where)
            scores.append(ProbeScore(**probe_score(q.kind, x[:cut], y[:cut], x[cut:], y[cut:])))
        values = [s.value for s in scores]
        out[q.name] = ProbeEntry(role=q.role, where=q.where, kind=q.kind, layers=tuple(scores), best=max(values),
                                 best_layer=int(np.argmax(values)))
    return out


def readout_kl(probs: np.ndarray, tokens: np.ndarray, task_set: TaskSet) -> MeanCI:
    return MeanCI.of(kl(in_context_mixture(tokens, task_set), np.asarray(probs, np.float64), floor=KL_FLOOR))


def roles_table(attn: Attention, probe: dict[str, ProbeEntry], readout: MeanCI) -> dict[str, Role]:
    """One row per role of ROLES: its number, what it is, and whether it counts as present."""
    task_attn = min(v.score for v in attn.task_heads.values())
    query_attn = min(v.score for v in attn.query_heads.values())

    def probe_min(prefix):
        return min(v.best for k, v in probe.items() if k.startswith(prefix))

    def role(number, measure, probe=None, present_if=None, present=None):
        present = bool(number <= 0.1) if present_if else bool(number >= PRESENT)
        return Role(number=number, measure=measure, probe=probe, present_if=present_if, present=present)

    rows = {
        "task heads": role(task_attn, "attention to input p_k of the own example (worst task)", probe_min("G_")),
        "error": role(probe_min("E_"), "probe accuracy of E_k at labels (worst task)"),
        "indicator": role(probe_min("C_"), "probe accuracy of C_k at labels (worst task)"),
        "averaging": role(attn.averaging.score, "label mass x uniformity of the best head at the query",
                          probe_min("alpha_")),
        "query heads": role(query_attn, "attention to query input p_k (worst task)", probe_min("Q_")),
        "weighting": role(probe["OUT"].best, "probe R^2 of OUT at the query"),
        "readout": role(readout.mean, "KL(in-context mixture || output), nats", present_if="<= 0.1"),
    }
    assert tuple(rows) == ROLES
    return rows


def mechanism(model: FlaxModel, spec: ConstructionSpec, task_set: TaskSet, tokens: np.ndarray,
              attention_prompts: int = 200) -> Mechanism:
    """Attention roles (on the first ``attention_prompts`` prompts), probes after every layer
    and the readout's KL of one model; the probes' targets are the construction's
    quantities (``spec``'s reference trace)."""
    layout = Layout.from_length(tokens.shape[1], task_set.example_len)
    cap = _captured(model, tokens)
    truth = reference_trace(spec, tokens)
    residuals = [cap[k] for k in residual_names(model.num_layers)]
    few = _captured(model, tokens[:attention_prompts], patterns=True)
    attn = _attention({k: few[k] for k in pattern_names(model.num_layers)}, layout, task_set)
    probe = probes(residuals, truth, layout, task_set, spec.residual)
    readout = readout_kl(cap["probs"], tokens, task_set)
    return Mechanism(attention=attn, probes=probe, readout_kl=readout, roles=roles_table(attn, probe, readout))


# --------------------------------------------------------------------------- causal check


@partial(jax.jit, static_argnames=("config", "name"))
def _shifted(config: TransformerConfig, params, tokens, name: str, shift):
    """Next-token distributions with ``shift`` [D] added to ``name`` at the last position."""
    edits = {name: lambda x: x.at[:, -1].add(shift.astype(x.dtype))}
    logits, _ = run(config, params, tokens, edits=edits)
    return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1)


def shifted_probs(model: FlaxModel, tokens: np.ndarray, name: str, shift: np.ndarray, batch: int = 64) -> np.ndarray:
    """[P, V] with the residual ``name`` moved by ``shift`` at the query's last token (an edit)."""
    v = jnp.asarray(shift, jnp.float32)
    out = [np.asarray(_shifted(model.config, model.params, tokens[i : i + batch], name, v))
           for i in range(0, len(tokens), batch)]
    return np.concatenate(out).astype(np.float64)


def causal_check(constructed: FlaxModel, learned: FlaxModel, task_set: TaskSet, *, tokens_fit: np.ndarray,
                 tokens_test: np.ndarray, answers: np.ndarray) -> Causal:
    """Shift alpha_0 - alpha_1 at the query by each of :data:`SHIFTS` and read the change of
    P(answer 0) - P(answer 1) (``answers`` [P, 2], distinct): in the constructed model by
    editing S_0 += s/2, S_1 -= s/2 after layer 4; in the learned model by moving its residual
    stream along its probe direction for alpha_0 - alpha_1 after the earliest layer where that
    probe is (within 0.01 of) its best held-out R^2 (the move changes the probe's reading by
    exactly s)."""
    rows = np.arange(len(tokens_test))
    d = np.zeros(constructed.config.d_model)
    d[constructed.spec.residual["S_0"]], d[constructed.spec.residual["S_1"]] = 0.5, -0.5
    layer_c = f"blocks.{ROLES.index('averaging')}.resid_post"

    def effect(model, name, vec, edit, move, **probe) -> Effect:
        curve = []
        for s in SHIFTS:
            p = shifted_probs(model, tokens_test, name, s * vec)
            curve.append(p[rows, answers[:, 0]] - p[rows, answers[:, 1]])
        base = curve[SHIFTS.index(0.0)]
        change = tuple(float((c - base).mean()) for c in curve)
        slope = float(np.polyfit(SHIFTS, change, 1)[0])
        return Effect(edit=edit, **probe, change=change, slope=slope, move_over_residual_norm=move)

    # the learned model's probe for alpha_0 - alpha_1 at the query, fitted on other prompts
    layout = Layout.from_length(tokens_fit.shape[1], task_set.example_len)
    alpha = task_weights(tokens_fit, task_set.tasks, task_set.example_len)
    target = (alpha[:, 0] - alpha[:, 1])[:, None]
    cap = _captured(learned, tokens_fit)
    r2s = []
    for l in range(learned.num_layers - 1):  # edit before the last layer, so something reads it
        x = _rows(cap[f"blocks.{l}.resid_post"], layout, "query")
        cut = int(0.7 * len(x))
        r2s.append(probe_score("real", x[:cut], target[:cut], x[cut:], target[cut:])["r2"])
    # the earliest layer where the probe is (within 0.01 of) its best: later layers may
    # already have used alpha, and an edit there changes nothing downstream
    layer = next(l for l, r in enumerate(r2s) if r >= max(r2s) - 0.01)
    x = _rows(cap[f"blocks.{layer}.resid_post"], layout, "query")
    w = fit_probe(x, target).coef[:, 0]
    direction = w / float(w @ w)  # moving by s * direction changes the probe's reading by s
    # the data's own direction: the mean change of the residual per unit of alpha_0 - alpha_1
    t = target[:, 0] - target[:, 0].mean()
    data_direction = ((x - x.mean(0)) * t[:, None]).sum(0) / float(t @ t)
    resid_norm = float(np.linalg.norm(x, axis=1).mean())
    name = f"blocks.{layer}.resid_post"
    resid_c = _rows(_captured(constructed, tokens_fit[:64])[layer_c], layout, "query")
    return Causal(
        shifts=SHIFTS,
        constructed=effect(constructed, layer_c, d, "S_0 += s/2, S_1 -= s/2 after layer 4",
                           float(np.linalg.norm(d) / np.linalg.norm(resid_c, axis=1).mean())),
        learned=effect(learned, name, direction, f"along the alpha_0 - alpha_1 probe after layer {layer + 1}",
                       float(np.linalg.norm(direction) / resid_norm), probe_r2=r2s[layer],
                       probe_r2_per_layer=tuple(r2s), layer=layer + 1),
        learned_data_direction=effect(
            learned, name, data_direction,
            f"along the mean residual change per unit of alpha_0 - alpha_1 after layer {layer + 1}",
            float(np.linalg.norm(data_direction) / resid_norm)),
    )


# --------------------------------------------------------------------------- weights


def weights(constructed: FlaxModel, learned: FlaxModel, task_set: TaskSet, tokens: np.ndarray, bits: int) -> Weights:
    basis_c, names = feature_basis(constructed, task_set, bits)
    basis_l, _ = feature_basis(learned, task_set, bits)
    m = match_heads(head_circuits(constructed, basis_c), head_circuits(learned, basis_l))
    matching = Matching(heads_a=_tuples(m["heads_a"]), heads_b=_tuples(m["heads_b"]), inactive_a=m["inactive_a"],
                        inactive_b=m["inactive_b"], similarity=_tuples(m["similarity"]),
                        pairs=tuple(HeadPair(a=tuple(p["a"]), b=tuple(p["b"]), similarity=p["similarity"])
                                    for p in m["pairs"]),
                        mean_matched=m["mean_matched"])
    res_c = [_captured(constructed, tokens)[k] for k in residual_names(constructed.num_layers)]
    res_l = [_captured(learned, tokens)[k] for k in residual_names(learned.num_layers)]
    cka = cka_matrix(res_c, res_l)
    return Weights(basis=tuple(names), matching=matching, cka=_tuples(cka),
                   cka_best_per_constructed_layer=_tuples(cka.max(1)))


# --------------------------------------------------------------------------- the report


def compare(learned: FlaxModel, task_set: TaskSet, *, max_examples: int, n_prompts: int = 200,
            mechanism_prompts: int = 1000, seed: int = 0, beta: float = 30.0, progress: bool = True) -> CompareResult:
    """The three-level report for one learned model against the construction of ``task_set``
    (prompts of ``max_examples`` examples, within the learned model's training range)."""
    from tqdm.auto import tqdm

    bits = code_bits_of(learned, max_examples)
    constructed = constructed_model(task_set, bits=bits, beta=beta)
    spec = constructed.spec
    bar = tqdm(total=4, disable=not progress, desc="compare", unit="level")
    behave = behaviour(constructed, learned, task_set, n_prompts=n_prompts, n_examples=max_examples, seed=seed)
    props = property_scan(constructed, learned, task_set, max_examples=max_examples, seed=seed,
                          tolerance=behave.answer_diff.q99)
    bar.update(1)
    rng = np.random.default_rng([seed, 20])
    tokens = dirichlet_prompts(task_set, rng, mechanism_prompts, max_examples)
    mech = MechanismPair(constructed=mechanism(constructed, spec, task_set, tokens),
                         learned=mechanism(learned, spec, task_set, tokens), n_prompts=mechanism_prompts)
    bar.update(1)
    two = two_task_prompts(task_set, rng, n_prompts, max_examples, 0.5, (0, 1))
    answers = task_outputs(two, task_set.tasks, task_set.example_len)[:, :2]
    distinct = answers[:, 0] != answers[:, 1]
    causal = causal_check(constructed, learned, task_set, tokens_fit=tokens, tokens_test=two[distinct],
                          answers=answers[distinct])
    bar.update(1)
    weigh = weights(constructed, learned, task_set, tokens[: min(64, len(tokens))], bits)
    bar.update(1)
    bar.close()
    return CompareResult(learned=learned.name, tasks=task_set.to_json(), max_examples=max_examples, seed=seed,
                         beta=beta, code_bits=bits, behaviour=behave, properties=props, mechanism=mech,
                         causal=causal, weights=weigh)


def summary_lines(result: CompareResult) -> list[str]:
    """The report's headline numbers as lines of text (the CLI prints them)."""
    b = result.behaviour
    mid = next(p for p in b.sweep if p.lam == 0.5)
    lines = [
        f"behaviour at lambda 0.5 ({' vs '.join(b.pair)}): P constructed {_fmt(mid.p_constructed[:2])}, "
        f"learned {_fmt(mid.p_learned[:2])}, target {_fmt(mid.target[:2])}; "
        f"KL(constructed||learned) {mid.kl_constructed_learned.mean:.3f}",
        f"largest per-prompt answer-probability difference {b.answer_diff.max:.3f} "
        f"(99th percentile {b.answer_diff.q99:.3f})",
    ]
    props = result.properties.lengths
    lines.append("share of prompts whose argmax answers no task that fits an example, by examples: " + ", ".join(
        f"{p.n_examples}: {p.argmax_absent:.3f}" for p in props))
    lines.append(f"share beyond the 99th-percentile tolerance {result.properties.tolerance:.3f}: " + ", ".join(
        f"{p.n_examples}: {p.beyond_tolerance:.3f}" for p in props))
    for role, row in result.mechanism.learned.roles.items():
        ref = result.mechanism.constructed.roles[role].number
        lines.append(f"  {role:12s} learned {row.number:.3f} (constructed {ref:.3f})  "
                     f"{'present' if row.present else 'absent'}: {row.measure}")
    c = result.causal
    lines.append(f"causal: slope of P(a0)-P(a1) per unit of alpha_0-alpha_1: constructed {c.constructed.slope:.3f}, "
                 f"learned {c.learned.slope:.3f} along its probe (R^2 {c.learned.probe_r2:.3f}, after "
                 f"layer {c.learned.layer}), {c.learned_data_direction.slope:.3f} along the data's "
                 "mean direction")
    w = result.weights
    lines.append(f"weights: {len(w.matching.pairs)} heads matched, mean similarity "
                 f"{w.matching.mean_matched:.3f}; best CKA per constructed layer "
                 f"{_fmt(w.cka_best_per_constructed_layer)}")
    return lines


def _fmt(xs) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in xs) + "]"


def plot(result: CompareResult, out: str | os.PathLike):
    """The report's three figures into directory ``out`` (:func:`empirical.compare_plots.plot`)."""
    from empirical import compare_plots

    return compare_plots.plot(result, out)


def command(run: str, *, tasks_file: str | None = None, examples: int | None = None, prompts: int = 500,
            mechanism_prompts: int = 1000, seed: int = 0, beta: float = 30.0, out=None, json_path=None,
            progress: bool = True, echo=print) -> "CompareResult":
    """``superpose compare``: a trained lookup-family model (``run``) against the construction of
    its tasks on prompts of ``examples`` examples (default: its training sequences less one);
    plots in ``out``, the typed result written to ``json_path``, its summary echoed."""
    from empirical import training
    from empirical.models import lookup_model

    model, cfg, task_set, max_examples = lookup_model(run, tasks_file)
    examples = examples or max_examples
    if examples > max_examples:
        raise ValueError(f"{run} was trained on sequences of {max_examples + 1} examples: prompts can hold "
                         f"at most {max_examples}")
    result = compare(model, task_set, max_examples=examples, n_prompts=prompts, mechanism_prompts=mechanism_prompts,
                     seed=seed, beta=beta, progress=progress)
    result = result.with_provenance(training.provenance(cfg), command="compare", run=run)
    if out:
        result = result.with_provenance({}, plots=tuple(str(p) for p in plot(result, out)))
    if json_path:
        result.write(json_path)
    echo("\n".join(summary_lines(result)))
    return result
