"""Constructed versus learned: does gradient descent find Theorem 1's mechanism?

A *subject* is any model that reads the construction's prompts (``construction.prompts``)
and runs on the package's one transformer (``construction.transformer.run``): the
constructed model of a task set, the shipped ``lookup`` model (a standard small
transformer), or a model of the construction's own shape trained on its tasks
(``superpose train --like-construction``). :func:`compare` holds a learned subject against
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

Every function is pure over numpy arrays and explicit seeds; the plots read the result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from construction import construct, sample_prompts
from construction.layout import Layout, code_bits
from construction.reference import reference_trace, superposition_target, task_outputs, task_weights
from construction.spec import ROLES, ConstructionSpec
from construction.tasks import TaskSet
from construction.transformer import TransformerConfig, run
from empirical import results as results_lib
from empirical.within_prompt import mean_ci

#: The lambda grid of the two-task behaviour sweep (the paper's).
LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
#: Skewed three-task mixtures (proportions of tasks 0, 1, 2), not only uniform ones.
SKEWED = ((0.6, 0.3, 0.1), (0.1, 0.6, 0.3), (0.3, 0.1, 0.6), (0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1 / 3, 1 / 3, 1 / 3))
#: Prompt lengths (examples) of the uniform-mixture points: from one example to the most.
LENGTHS = (1, 2, 4, 8, 12, 16, 19, 24, 31)
#: A role counts as present when its number reaches this (attention mass, probe accuracy or R^2).
PRESENT = 0.9
#: Probe ridge penalty per training row, on standardised features.
RIDGE = 1e-3
#: Shifts of alpha_0 - alpha_1 applied by the causal check.
SHIFTS = (-0.4, -0.2, 0.0, 0.2, 0.4)


# --------------------------------------------------------------------------- subjects


@dataclass(frozen=True, eq=False)
class Subject:
    """A model on the construction's token layout: a name, its Flax config and parameters."""

    name: str
    config: TransformerConfig
    params: dict
    kind: str  # "constructed" or "learned"

    @property
    def num_layers(self) -> int:
        return self.config.num_layers


@dataclass(frozen=True, eq=False)
class Constructed(Subject):
    """The constructed subject, with the spec whose named residual blocks hold its quantities."""

    spec: ConstructionSpec = None


def constructed_subject(task_set: TaskSet, *, bits: int = 5, beta: float = 30.0) -> Constructed:
    """The construction of ``task_set`` numbering up to 2**bits - 1 examples (float32)."""
    model = construct(task_set.tasks, vocab_size=task_set.vocab_size, example_len=task_set.example_len,
                      max_examples=2**bits - 1, beta=beta)
    return Constructed("constructed", model.config, model.params, "constructed", model.spec)


def learned_subject(run_name: str | os.PathLike):
    """(subject, training config) of a shipped model or run directory of the ``lookup`` family;
    its task set is ``cfg.fam.task_set`` and its prompts hold at most ``cfg.n_examples - 1``
    examples (the training sequences less the query's place)."""
    from empirical import runs

    cfg, params, _ = runs.load(run_name)
    if cfg.family != "lookup":
        raise ValueError(f"{run_name} was trained on the {cfg.family!r} family; comparing with the construction "
                         "needs a model of the lookup family (the construction's token layout)")
    return Subject(str(run_name), cfg.model, params, "learned"), cfg


def code_bits_of(subject: Subject, max_examples: int) -> int:
    """The example-code bits the subject reads (or those that number ``max_examples``)."""
    return subject.config.code_bits or code_bits(max_examples)


# --------------------------------------------------------------------------- running


@partial(jax.jit, static_argnames=("config", "names"))
def _forward(config: TransformerConfig, params, tokens, names: tuple[str, ...]):
    logits, cache = run(config, params, tokens, capture=names)
    return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1), cache


def _residual_names(subject: Subject) -> tuple[str, ...]:
    return ("embed",) + tuple(f"blocks.{l}.resid_post" for l in range(subject.num_layers))


def _pattern_names(subject: Subject) -> tuple[str, ...]:
    return tuple(f"blocks.{l}.attn.pattern" for l in range(subject.num_layers))


def probabilities(subject: Subject, tokens: np.ndarray, batch: int = 64) -> np.ndarray:
    """Next-token distributions at the last position: [P, V]."""
    out = [np.asarray(_forward(subject.config, subject.params, tokens[i : i + batch], ())[0])
           for i in range(0, len(tokens), batch)]
    return np.concatenate(out).astype(np.float64)


def capture(subject: Subject, tokens: np.ndarray, batch: int = 32, patterns: bool = False) -> dict[str, np.ndarray]:
    """The residual stream after the embedding and after every layer ([P, L, D] each, under
    the canonical names), with every layer's attention pattern if ``patterns``; ``probs``
    holds the next-token distributions at the last position."""
    names = _residual_names(subject) + (_pattern_names(subject) if patterns else ())
    chunks = []
    for i in range(0, len(tokens), batch):
        probs, cache = _forward(subject.config, subject.params, tokens[i : i + batch], names)
        chunks.append({"probs": np.asarray(probs), **{k: np.asarray(v) for k, v in cache.items()}})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


# --------------------------------------------------------------------------- statistics


def kl_rows(p: np.ndarray, q: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    """KL(p || q) per row (natural log); q is floored so that zeros stay finite."""
    p, q = np.asarray(p, np.float64), np.maximum(np.asarray(q, np.float64), floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0).sum(axis=-1)


def in_context_mixture(tokens: np.ndarray, task_set: TaskSet) -> np.ndarray:
    """The theory's target distribution y_hat / |y_hat|_1 [P, V] (alpha_k: fitted-task fractions)."""
    y = superposition_target(tokens, task_set.tasks, task_set.example_len)
    return y / np.maximum(y.sum(axis=1, keepdims=True), 1e-12)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same rows ([N, D1], [N, D2]): 1 for equal
    representations up to rotation and isotropic scaling, 0 for unrelated ones."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else 0.0


@dataclass(frozen=True)
class Probe:
    """A ridge-regression probe fitted on standardised features (``coef`` in raw units)."""

    coef: np.ndarray  # [D, T]
    intercept: np.ndarray  # [T]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept


def fit_probe(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> Probe:
    """Ridge regression of targets ``y`` [N, T] on features ``x`` [N, D] (standardised inside)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    z = (x - mu) / sd
    ym = y.mean(0)
    gram = z.T @ z + ridge * len(z) * np.eye(z.shape[1])
    w = np.linalg.solve(gram, z.T @ (y - ym))
    coef = w / sd[:, None]
    return Probe(coef, ym - mu @ coef)


def probe_score(kind: str, x_train, y_train, x_test, y_test) -> dict:
    """Fit on the training rows, score on the held-out rows: ``accuracy`` (argmax of a one-hot
    target, or a 0/1 target thresholded at 0.5) with the majority-class ``baseline``, or
    ``r2`` (pooled over the target's dimensions)."""
    probe = fit_probe(x_train, y_train)
    pred = probe(x_test)
    if kind == "class":
        truth = y_test.argmax(1)
        base = np.bincount(truth, minlength=y_test.shape[1]).max() / len(truth)
        return {"accuracy": float((pred.argmax(1) == truth).mean()), "baseline": float(base)}
    if kind == "binary":
        truth = y_test[:, 0] > 0.5
        base = max(truth.mean(), 1 - truth.mean())
        return {"accuracy": float(((pred[:, 0] > 0.5) == truth).mean()), "baseline": float(base)}
    sst = ((y_test - y_test.mean(0)) ** 2).sum()
    r2 = 1.0 - ((y_test - pred) ** 2).sum() / sst if sst > 0 else float("nan")
    return {"r2": float(r2)}


def score_of(entry: dict) -> float:
    return entry["accuracy"] if "accuracy" in entry else entry["r2"]


# --------------------------------------------------------------------------- prompts


def mixture_prompts(task_set: TaskSet, rng: np.random.Generator, n_prompts: int, n_examples: int,
                    groups: int = 16) -> np.ndarray:
    """Prompts over all tasks with proportions drawn from a flat Dirichlet per group (so that
    the task weights vary across prompts): tokens [P, L]."""
    sizes = np.diff(np.linspace(0, n_prompts, groups + 1).astype(int))
    out = []
    for size in sizes[sizes > 0]:
        p = rng.dirichlet(np.ones(len(task_set.tasks)))
        out.append(sample_prompts(rng, task_set.tasks, p, n_examples=n_examples, batch=int(size),
                                  vocab_size=task_set.vocab_size, example_len=task_set.example_len,
                                  interleave="iid").tokens)
    return np.concatenate(out)


def _two_task_prompts(task_set, rng, n_prompts, n_examples, lam, pair):
    ts = task_set.tasks
    sub = [ts[pair[0]], ts[pair[1]]]
    return sample_prompts(rng, sub, [lam, 1 - lam], n_examples=n_examples, batch=n_prompts,
                          vocab_size=task_set.vocab_size, example_len=task_set.example_len, interleave="iid").tokens


# --------------------------------------------------------------------------- behaviour


def _behaviour_point(p_c, p_l, target, answers):
    """Statistics of one prompt set: KLs and both models' probability of each task's answer."""
    rows = np.arange(len(p_c))[:, None]
    return {
        "kl_constructed_learned": mean_ci(kl_rows(p_c, p_l)),
        "kl_target_constructed": mean_ci(kl_rows(target, p_c)),
        "kl_target_learned": mean_ci(kl_rows(target, p_l)),
        "tv": mean_ci(0.5 * np.abs(p_c - p_l).sum(1)),
        "p_constructed": p_c[rows, answers].mean(0).tolist(),
        "p_learned": p_l[rows, answers].mean(0).tolist(),
        "target": target[rows, answers].mean(0).tolist(),
        "argmax_present": float(np.mean([a in ans for a, ans in zip(p_l.argmax(1), answers)])),
    }


def behaviour(constructed: Subject, learned: Subject, task_set: TaskSet, *, n_prompts: int, n_examples: int,
              seed: int, pair: tuple[int, int] = (0, 1)) -> dict:
    """Output distributions of both models on the same prompts: a lambda sweep of tasks
    ``pair`` and skewed three-task mixtures (when there are at least three tasks), of
    ``n_examples`` examples, and uniform mixtures of every task at the prompt lengths of
    :data:`LENGTHS` up to ``n_examples``; calibration curves over all of them, and the largest
    per-prompt difference of any task's answer probability between the two models (the
    tolerance the property tests state)."""
    rng = np.random.default_rng([seed, 10])
    ts = task_set
    sweep, pooled = [], {"target": [], "constructed": [], "learned": []}
    max_diff = []

    def collect(tokens):
        p_c, p_l = probabilities(constructed, tokens), probabilities(learned, tokens)
        target = in_context_mixture(tokens, ts)
        answers = task_outputs(tokens, ts.tasks, ts.example_len)  # [P, K]
        rows = np.arange(len(tokens))[:, None]
        for name, p in (("target", target), ("constructed", p_c), ("learned", p_l)):
            pooled[name].append(_distinct_answer_mass(p, answers))
        max_diff.append(np.abs(p_c[rows, answers] - p_l[rows, answers]).max(1))
        return p_c, p_l, target, answers

    for lam in LAMBDAS:
        tokens = _two_task_prompts(ts, rng, n_prompts, n_examples, lam, pair)
        p_c, p_l, target, answers = collect(tokens)
        sweep.append({"lambda": lam, **_behaviour_point(p_c, p_l, target, answers)})
    skewed = []
    if len(ts.tasks) >= 3:
        for props in SKEWED:
            p = np.zeros(len(ts.tasks))
            p[:3] = props
            tokens = sample_prompts(rng, ts.tasks, p, n_examples=n_examples, batch=n_prompts,
                                    vocab_size=ts.vocab_size, example_len=ts.example_len, interleave="iid").tokens
            p_c, p_l, target, answers = collect(tokens)
            skewed.append({"proportions": [round(x, 4) for x in props], **_behaviour_point(p_c, p_l, target, answers)})
    by_length = []
    uniform = np.full(len(ts.tasks), 1.0 / len(ts.tasks))
    for m in LENGTHS:
        if m > n_examples:
            continue
        tokens = sample_prompts(rng, ts.tasks, uniform, n_examples=m, batch=n_prompts, vocab_size=ts.vocab_size,
                                example_len=ts.example_len, interleave="iid").tokens
        p_c, p_l, target, answers = collect(tokens)
        by_length.append({"n_examples": m, **_behaviour_point(p_c, p_l, target, answers)})
    mass = {k: np.concatenate(v) for k, v in pooled.items()}
    diffs = np.concatenate(max_diff)
    return {
        "pair": [ts.names[pair[0]], ts.names[pair[1]]],
        "n_prompts": n_prompts,
        "n_examples": n_examples,
        "sweep": sweep,
        "skewed": skewed,
        "by_length": by_length,
        "calibration": calibration(mass["target"], {"constructed": mass["constructed"], "learned": mass["learned"]}),
        "answer_diff": {"max": float(diffs.max()), "q99": float(np.quantile(diffs, 0.99)),
                        "q95": float(np.quantile(diffs, 0.95)), "median": float(np.median(diffs))},
    }


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


def calibration(target_mass: np.ndarray, models: dict[str, np.ndarray], bins: int = 10) -> dict:
    """Mean answer probability per bin of in-context proportion (the theory's target mass of
    that answer), for every model: the reliability curve (identity = proportional)."""
    x = target_mass.ravel()
    keep = np.isfinite(x)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(x[keep], edges) - 1, 0, bins - 1)
    curves = {}
    for name, mass in models.items():
        y = mass.ravel()[keep]
        curves[name] = [float(y[which == b].mean()) if np.any(which == b) else None for b in range(bins)]
    centres = [float(x[keep][which == b].mean()) if np.any(which == b) else None for b in range(bins)]
    counts = [int(np.sum(which == b)) for b in range(bins)]
    return {"proportion": centres, "count": counts, "curves": curves}


def property_scan(constructed: Subject, learned: Subject, task_set: TaskSet, *, tolerance: float, max_examples: int,
                  mixtures: int = 8, prompts: int = 32, seed: int = 0) -> dict:
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
            p_l, p_c = probabilities(learned, pr.tokens), probabilities(constructed, pr.tokens)
            top = p_l.argmax(1)
            fits = task_weights(pr.tokens, ts.tasks, ts.example_len) > 0  # [P, K]: in the prompt
            absent += int(sum(top[i] not in set(answers[i, fits[i]]) for i in range(prompts)))
            beyond += int((np.abs(p_l[rows, answers] - p_c[rows, answers]).max(1) > tolerance).sum())
        total = mixtures * prompts
        out.append({"n_examples": m, "argmax_absent": absent / total, "beyond_tolerance": beyond / total})
    return {"tolerance": tolerance, "mixtures_per_length": mixtures, "prompts_per_mixture": prompts, "lengths": out}


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


def averaging_heads(patterns: dict[str, np.ndarray], layout: Layout) -> list[dict]:
    """Every head's averaging number, best first: at the query's last token, the attention
    mass on the label positions times its uniformity over them (exp(entropy) / m), with both
    factors (means over prompts). ``patterns``: ``blocks.{l}.attn.pattern`` [P, H, L, L]."""
    m, labels = layout.n_examples, layout.label_positions
    heads = []
    for name in patterns:
        layer = int(name.split(".")[1])
        on_labels = patterns[name][:, :, -1, labels].astype(np.float64)  # [P, H, m]
        mass = on_labels.sum(-1)  # [P, H]
        share = on_labels / np.maximum(mass[..., None], 1e-12)
        uniformity = np.exp(-(share * np.log(np.maximum(share, 1e-300))).sum(-1)) / m
        for h in range(on_labels.shape[1]):
            heads.append({"score": float((mass[:, h] * uniformity[:, h]).mean()), "layer": layer + 1, "head": h,
                          "label_mass": float(mass[:, h].mean()), "uniformity": float(uniformity[:, h].mean())})
    return sorted(heads, key=lambda e: (-e["score"], -e["layer"], -e["head"]))  # ties: the later head


def attention_roles(patterns: dict[str, np.ndarray], layout: Layout, task_set: TaskSet) -> dict:
    """The attention roles' numbers from every head's pattern [P, H, L, L]:

    * ``task heads``/``query heads`` per task k: the best head's mean attention from the
      label positions (from the query's last token) to input p_k of the same example;
    * ``averaging``: the best head of :func:`averaging_heads`.
    """
    n, m = layout.example_len, layout.n_examples
    labels = layout.label_positions
    own = {}
    query = {}
    for name in sorted(patterns, key=lambda s: int(s.split(".")[1])):
        layer = int(name.split(".")[1])
        pat = patterns[name].astype(np.float64)  # [P, H, L, L]
        for k, task in enumerate(task_set.tasks):
            to_pk = pat[:, :, labels, np.arange(m) * n + task.position].mean(axis=(0, 2))  # [H]
            q = pat[:, :, -1, m * n + task.position].mean(0)  # [H]
            for h in range(pat.shape[1]):
                own.setdefault(k, []).append((float(to_pk[h]), layer, h))
                query.setdefault(k, []).append((float(q[h]), layer, h))

    def best(entries):
        score, layer, head = max(entries)[:3]
        return {"score": score, "layer": layer + 1, "head": head}

    return {
        "task heads": {task_set.names[k]: best(v) for k, v in own.items()},
        "query heads": {task_set.names[k]: best(v) for k, v in query.items()},
        "averaging": averaging_heads(patterns, layout)[0],
    }


def probes(subject_residuals: list[np.ndarray], truth: list[np.ndarray], layout: Layout, task_set: TaskSet,
           spec_residual, split: float = 0.7) -> dict:
    """Held-out probe scores of every quantity after every layer of a subject.

    ``subject_residuals``: [embed, after layer 1, ...] of the subject, each [P, L, D];
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
        for resid in subject_residuals:
            x = _rows(resid, layout, q.where)
            scores.append(probe_score(q.kind, x[:cut], y[:cut], x[cut:], y[cut:]))
        out[q.name] = {"role": q.role, "where": q.where, "kind": q.kind, "layers": scores,
                       "best": max(score_of(s) for s in scores),
                       "best_layer": int(np.argmax([score_of(s) for s in scores]))}
    return out


def readout_kl(probs: np.ndarray, tokens: np.ndarray, task_set: TaskSet) -> dict:
    return mean_ci(kl_rows(in_context_mixture(tokens, task_set), probs))


def roles_table(attn: dict, probe: dict, readout: dict) -> dict:
    """One row per role of ROLES: its number, what it is, and whether it counts as present."""
    task_attn = min(v["score"] for v in attn["task heads"].values())
    query_attn = min(v["score"] for v in attn["query heads"].values())

    def probe_min(prefix):
        return min(v["best"] for k, v in probe.items() if k.startswith(prefix))

    rows = {
        "task heads": {"number": task_attn, "measure": "attention to input p_k of the own example (worst task)",
                       "probe": probe_min("G_")},
        "error": {"number": probe_min("E_"), "measure": "probe accuracy of E_k at labels (worst task)"},
        "indicator": {"number": probe_min("C_"), "measure": "probe accuracy of C_k at labels (worst task)"},
        "averaging": {"number": attn["averaging"]["score"],
                      "measure": "label mass x uniformity of the best head at the query", "probe": probe_min("alpha_")},
        "query heads": {"number": query_attn, "measure": "attention to query input p_k (worst task)",
                        "probe": probe_min("Q_")},
        "weighting": {"number": probe["OUT"]["best"], "measure": "probe R^2 of OUT at the query"},
        "readout": {"number": readout["mean"], "measure": "KL(in-context mixture || output), nats",
                    "present_if": "<= 0.1"},
    }
    for role, row in rows.items():
        row["present"] = bool(row["number"] <= 0.1) if role == "readout" else bool(row["number"] >= PRESENT)
    assert tuple(rows) == ROLES
    return rows


def mechanism(subject: Subject, spec: ConstructionSpec, task_set: TaskSet, tokens: np.ndarray,
              attention_prompts: int = 200) -> dict:
    """Attention roles (on the first ``attention_prompts`` prompts), probes after every layer
    and the readout's KL of one subject; the probes' targets are the construction's
    quantities (``spec``'s reference trace)."""
    layout = Layout.from_length(tokens.shape[1], task_set.example_len)
    cap = capture(subject, tokens)
    truth = reference_trace(spec, tokens)
    residuals = [cap[k] for k in _residual_names(subject)]
    few = capture(subject, tokens[:attention_prompts], patterns=True)
    attn = attention_roles({k: few[k] for k in _pattern_names(subject)}, layout, task_set)
    probe = probes(residuals, truth, layout, task_set, spec.residual)
    readout = readout_kl(cap["probs"], tokens, task_set)
    return {"attention": attn, "probes": probe, "readout_kl": readout, "roles": roles_table(attn, probe, readout)}


# --------------------------------------------------------------------------- causal check


@partial(jax.jit, static_argnames=("config", "name"))
def _shifted(config: TransformerConfig, params, tokens, name: str, shift):
    """Next-token distributions with ``shift`` [D] added to ``name`` at the last position."""
    edits = {name: lambda x: x.at[:, -1].add(shift.astype(x.dtype))}
    logits, _ = run(config, params, tokens, edits=edits)
    return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1)


def shifted_probs(subject: Subject, tokens: np.ndarray, name: str, shift: np.ndarray, batch: int = 64) -> np.ndarray:
    """[P, V] with the residual ``name`` moved by ``shift`` at the query's last token (an edit)."""
    v = jnp.asarray(shift, jnp.float32)
    out = [np.asarray(_shifted(subject.config, subject.params, tokens[i : i + batch], name, v))
           for i in range(0, len(tokens), batch)]
    return np.concatenate(out).astype(np.float64)


def causal_check(constructed: Constructed, learned: Subject, task_set: TaskSet, *, tokens_fit: np.ndarray,
                 tokens_test: np.ndarray, answers: np.ndarray) -> dict:
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

    def effect(subject, name, vec):
        curve = []
        for s in SHIFTS:
            p = shifted_probs(subject, tokens_test, name, s * vec)
            curve.append(p[rows, answers[:, 0]] - p[rows, answers[:, 1]])
        base = curve[SHIFTS.index(0.0)]
        change = [float((c - base).mean()) for c in curve]
        slope = float(np.polyfit(SHIFTS, change, 1)[0])
        return {"change": change, "slope": slope}

    # the learned model's probe for alpha_0 - alpha_1 at the query, fitted on other prompts
    layout = Layout.from_length(tokens_fit.shape[1], task_set.example_len)
    alpha = task_weights(tokens_fit, task_set.tasks, task_set.example_len)
    target = (alpha[:, 0] - alpha[:, 1])[:, None]
    cap = capture(learned, tokens_fit)
    r2s = []
    for l in range(learned.num_layers - 1):  # edit before the last layer, so something reads it
        x = _rows(cap[f"blocks.{l}.resid_post"], layout, "query")
        cut = int(0.7 * len(x))
        r2s.append(probe_score("real", x[:cut], target[:cut], x[cut:], target[cut:])["r2"])
    # the earliest layer where the probe is (within 0.01 of) its best: later layers may
    # already have used alpha, and an edit there changes nothing downstream
    layer = next(l for l, r in enumerate(r2s) if r >= max(r2s) - 0.01)
    r2 = r2s[layer]
    x = _rows(cap[f"blocks.{layer}.resid_post"], layout, "query")
    w = fit_probe(x, target).coef[:, 0]
    direction = w / float(w @ w)  # moving by s * direction changes the probe's reading by s
    # the data's own direction: the mean change of the residual per unit of alpha_0 - alpha_1
    t = target[:, 0] - target[:, 0].mean()
    data_direction = ((x - x.mean(0)) * t[:, None]).sum(0) / float(t @ t)
    resid_norm = float(np.linalg.norm(x, axis=1).mean())
    name = f"blocks.{layer}.resid_post"
    return {
        "shifts": list(SHIFTS),
        "constructed": {"edit": "S_0 += s/2, S_1 -= s/2 after layer 4", **effect(constructed, layer_c, d),
                        "move_over_residual_norm": float(np.linalg.norm(d) / np.linalg.norm(
                            _rows(capture(constructed, tokens_fit[:64])[layer_c], layout, "query"), axis=1).mean())},
        "learned": {"edit": f"along the alpha_0 - alpha_1 probe after layer {layer + 1}", "probe_r2": r2,
                    "probe_r2_per_layer": r2s, "layer": layer + 1, **effect(learned, name, direction),
                    "move_over_residual_norm": float(np.linalg.norm(direction) / resid_norm)},
        "learned_data_direction": {
            "edit": f"along the mean residual change per unit of alpha_0 - alpha_1 after layer {layer + 1}",
            **effect(learned, name, data_direction),
            "move_over_residual_norm": float(np.linalg.norm(data_direction) / resid_norm)},
    }


# --------------------------------------------------------------------------- head ablation


@partial(jax.jit, static_argnames=("config", "heads"))
def _ablated(config: TransformerConfig, params, tokens, heads: tuple[tuple[int, int], ...]):
    """Next-token distributions with every (layer index, head) of ``heads`` silenced at the
    last position: its attention row there set to zero, so it adds nothing to that residual."""
    edits = {}
    for layer in sorted({l for l, _ in heads}):
        hs = jnp.asarray([h for l, h in heads if l == layer])
        edits[f"blocks.{layer}.attn.pattern"] = lambda x, hs=hs: x.at[:, hs, -1].set(0)
    logits, _ = run(config, params, tokens, edits=edits)
    return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1)


def ablated_probs(subject: Subject, heads, batch: int = 50):
    """``probs(tokens [P, L]) -> [P, V]`` of ``subject`` with ``heads`` ((layer, head) pairs,
    layers numbered from 1 as in :func:`averaging_heads`) silenced at the query's last token."""
    key = tuple(sorted((int(l) - 1, int(h)) for l, h in heads))
    bad = [(l + 1, h) for l, h in key if not (0 <= l < subject.num_layers and 0 <= h < subject.config.num_heads)]
    if bad:
        raise ValueError(f"no such heads in {subject.name}: {bad} (layers 1..{subject.num_layers}, "
                         f"heads 0..{subject.config.num_heads - 1})")

    def probs(tokens: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(tokens), batch):
            chunk = tokens[i : i + batch]
            real = len(chunk)
            if real < batch:  # one compiled shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
            out.append(np.asarray(_ablated(subject.config, subject.params, chunk, key))[:real])
        return np.concatenate(out).astype(np.float64)

    return probs


# --------------------------------------------------------------------------- weights


def feature_basis(subject: Subject, task_set: TaskSet, bits: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """[F, D]: the residual vector of each basis feature -- token one-hots, then the structured
    position features (one, example-code bits, offset one-hots, is_label, is_query_last) --
    as the subject's embedding writes it. A feature the subject has no embedding for is 0."""
    c, p = subject.config, subject.params
    V, n = task_set.vocab_size, task_set.example_len
    names = tuple(f"token[{v}]" for v in range(V)) + ("one",) + tuple(f"code[{b}]" for b in range(bits)) + tuple(
        f"offset[{o}]" for o in range(n)) + ("is_label", "is_query_last")
    rows = [np.asarray(p["token_embed"], np.float64)]
    if c.positions == "structured":
        if c.code_bits != bits:
            raise ValueError(f"{subject.name} numbers examples with {c.code_bits} bits, the comparison with {bits}")
        rows.append(np.asarray(p["position_embed"], np.float64))
    else:
        pos = np.zeros((1 + bits + n + 2, c.d_model))
        if c.code_bits:
            pos[1 : 1 + bits][: c.code_bits] = np.asarray(p["code_embed"], np.float64)[:bits]
        if c.offset_period == n:
            pos[1 + bits : 1 + bits + n] = np.asarray(p["offset_embed"], np.float64)
        rows.append(pos)
    basis = np.concatenate(rows)
    assert basis.shape[0] == len(names)
    return basis, names


def head_circuits(subject: Subject, basis: np.ndarray) -> list[dict]:
    """Every head's QK circuit B Wq Wk^T B^T and the Gram matrix of its OV circuit,
    (B Wv Wo)(B Wv Wo)^T, both [F, F] in the feature basis B (the OV Gram does not depend on
    the basis of the residual stream it writes into, so it compares across models). Pre-norm
    models read through their norm's gain; RoPE's rotation is left out (its zero-offset term)."""
    out = []
    for l in range(subject.num_layers):
        blk = subject.params[f"block_{l}"]
        a = blk["attn"]
        gain = np.asarray(blk["norm_attn"]["scale"], np.float64) if "norm_attn" in blk else 1.0
        b = basis * gain
        wq, wk = np.asarray(a["query"], np.float64), np.asarray(a["key"], np.float64)
        wv, wo = np.asarray(a["value"], np.float64), np.asarray(a["out"], np.float64)
        for h in range(wq.shape[1]):
            qk = (b @ wq[:, h]) @ (b @ wk[:, h]).T
            ov = b @ wv[:, h] @ wo[h]
            out.append({"layer": l, "head": h, "depth": l / max(1, subject.num_layers - 1), "qk": qk,
                        "ov": ov @ ov.T})
    return out


def _cos(a: np.ndarray, b: np.ndarray, eps: float = 1e-9) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < eps and nb < eps:
        return 1.0  # both circuits absent: equal
    if na < eps or nb < eps:
        return 0.0
    return float((a * b).sum() / (na * nb))


def _active(circ: dict, eps: float = 1e-9) -> bool:
    return np.linalg.norm(circ["qk"]) > eps or np.linalg.norm(circ["ov"]) > eps


def head_similarity(a: list[dict], b: list[dict]) -> np.ndarray:
    """[len(a), len(b)]: the mean of the QK and the OV-Gram cosine similarities."""
    return np.array([[0.5 * (_cos(x["qk"], y["qk"]) + _cos(x["ov"], y["ov"])) for y in b] for x in a])


def match_heads(a: list[dict], b: list[dict]) -> dict:
    """Hungarian assignment of model a's active heads to model b's, maximising the summed
    similarity. Heads whose circuits are identical tie; ties go to the head at the same
    relative depth and index (a tie-break far below any similarity that differs)."""
    from scipy.optimize import linear_sum_assignment

    a_act = [x for x in a if _active(x)]
    b_act = [y for y in b if _active(y)]
    sim = head_similarity(a_act, b_act)
    tie = np.array([[-abs(x["depth"] - y["depth"]) - 1e-3 * abs(x["head"] - y["head"]) for y in b_act] for x in a_act])
    ra, rb = linear_sum_assignment(-(np.round(sim, 6) + 1e-9 * tie))
    pairs = [{"a": [a_act[i]["layer"] + 1, a_act[i]["head"]], "b": [b_act[j]["layer"] + 1, b_act[j]["head"]],
              "similarity": float(sim[i, j])} for i, j in zip(ra, rb)]
    return {
        "heads_a": [[x["layer"] + 1, x["head"]] for x in a_act],
        "heads_b": [[y["layer"] + 1, y["head"]] for y in b_act],
        "inactive_a": len(a) - len(a_act),
        "inactive_b": len(b) - len(b_act),
        "similarity": sim.tolist(),
        "pairs": pairs,
        "mean_matched": float(np.mean([p["similarity"] for p in pairs])) if pairs else float("nan"),
    }


def cka_matrix(res_a: list[np.ndarray], res_b: list[np.ndarray], rows: int = 3000, seed: int = 0) -> np.ndarray:
    """Linear CKA between every layer of a and every layer of b, on the same (sub-sampled) token rows."""
    flat_a = [r.reshape(-1, r.shape[-1]) for r in res_a]
    flat_b = [r.reshape(-1, r.shape[-1]) for r in res_b]
    n = flat_a[0].shape[0]
    pick = np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False)
    return np.array([[linear_cka(x[pick], y[pick]) for y in flat_b] for x in flat_a])


def weights(constructed: Subject, learned: Subject, task_set: TaskSet, tokens: np.ndarray, bits: int) -> dict:
    basis_c, names = feature_basis(constructed, task_set, bits)
    basis_l, _ = feature_basis(learned, task_set, bits)
    matching = match_heads(head_circuits(constructed, basis_c), head_circuits(learned, basis_l))
    res_c = [capture(constructed, tokens)[k] for k in _residual_names(constructed)]
    res_l = [capture(learned, tokens)[k] for k in _residual_names(learned)]
    cka = cka_matrix(res_c, res_l)
    return {"basis": list(names), "matching": matching, "cka": cka.tolist(),
            "cka_best_per_constructed_layer": cka.max(1).tolist()}


# --------------------------------------------------------------------------- the report


def compare(learned: Subject, task_set: TaskSet, *, max_examples: int, n_prompts: int = 200,
            mechanism_prompts: int = 1000, seed: int = 0, beta: float = 30.0, progress: bool = True) -> dict:
    """The three-level report for one learned subject against the construction of ``task_set``
    (prompts of ``max_examples`` examples, within the learned model's training range)."""
    from tqdm.auto import tqdm

    bits = code_bits_of(learned, max_examples)
    constructed = constructed_subject(task_set, bits=bits, beta=beta)
    spec = constructed.spec
    bar = tqdm(total=4, disable=not progress, desc="compare", unit="level")
    result = {"learned": learned.name, "tasks": task_set.to_json(), "max_examples": max_examples, "seed": seed,
              "beta": beta, "code_bits": bits}
    result["behaviour"] = behaviour(constructed, learned, task_set, n_prompts=n_prompts, n_examples=max_examples,
                                    seed=seed)
    result["properties"] = property_scan(constructed, learned, task_set, max_examples=max_examples, seed=seed,
                                         tolerance=result["behaviour"]["answer_diff"]["q99"])
    bar.update(1)
    rng = np.random.default_rng([seed, 20])
    tokens = mixture_prompts(task_set, rng, mechanism_prompts, max_examples)
    result["mechanism"] = {"constructed": mechanism(constructed, spec, task_set, tokens),
                           "learned": mechanism(learned, spec, task_set, tokens),
                           "n_prompts": mechanism_prompts}
    bar.update(1)
    two = _two_task_prompts(task_set, rng, n_prompts, max_examples, 0.5, (0, 1))
    answers = task_outputs(two, task_set.tasks, task_set.example_len)[:, :2]
    distinct = answers[:, 0] != answers[:, 1]
    result["causal"] = causal_check(constructed, learned, task_set, tokens_fit=tokens,
                                    tokens_test=two[distinct], answers=answers[distinct])
    bar.update(1)
    result["weights"] = weights(constructed, learned, task_set, tokens[: min(64, len(tokens))], bits)
    bar.update(1)
    bar.close()
    return result


def summary_lines(result: dict) -> list[str]:
    """The report's headline numbers as lines of text (the CLI prints them)."""
    b = result["behaviour"]
    mid = next(p for p in b["sweep"] if p["lambda"] == 0.5)
    lines = [
        f"behaviour at lambda 0.5 ({' vs '.join(b['pair'])}): P constructed {_fmt(mid['p_constructed'][:2])}, "
        f"learned {_fmt(mid['p_learned'][:2])}, target {_fmt(mid['target'][:2])}; "
        f"KL(constructed||learned) {mid['kl_constructed_learned']['mean']:.3f}",
        f"largest per-prompt answer-probability difference {b['answer_diff']['max']:.3f} "
        f"(99th percentile {b['answer_diff']['q99']:.3f})",
    ]
    props = result["properties"]["lengths"]
    lines.append("share of prompts whose argmax answers no task that fits an example, by examples: " + ", ".join(
        f"{p['n_examples']}: {p['argmax_absent']:.3f}" for p in props))
    lines.append(f"share beyond the 99th-percentile tolerance {result['properties']['tolerance']:.3f}: " + ", ".join(
        f"{p['n_examples']}: {p['beyond_tolerance']:.3f}" for p in props))
    for role, row in result["mechanism"]["learned"]["roles"].items():
        ref = result["mechanism"]["constructed"]["roles"][role]["number"]
        lines.append(f"  {role:12s} learned {row['number']:.3f} (constructed {ref:.3f})  "
                     f"{'present' if row['present'] else 'absent'}: {row['measure']}")
    c = result["causal"]
    lines.append(f"causal: slope of P(a0)-P(a1) per unit of alpha_0-alpha_1: constructed {c['constructed']['slope']:.3f}, "
                 f"learned {c['learned']['slope']:.3f} along its probe (R^2 {c['learned']['probe_r2']:.3f}, after "
                 f"layer {c['learned']['layer']}), {c['learned_data_direction']['slope']:.3f} along the data's "
                 "mean direction")
    w = result["weights"]
    lines.append(f"weights: {len(w['matching']['pairs'])} heads matched, mean similarity "
                 f"{w['matching']['mean_matched']:.3f}; best CKA per constructed layer "
                 f"{_fmt(w['cka_best_per_constructed_layer'])}")
    return lines


def _fmt(xs) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in xs) + "]"


# --------------------------------------------------------------------------- plots

#: One colour per quantity (line style per task) in the probe plots.
PROBE_COLORS = {"G": "tab:blue", "E": "tab:orange", "C": "tab:green", "alpha": "tab:red", "Q": "tab:purple",
                "OUT": "black"}


def plot(result: dict, out: str | os.PathLike) -> list[Path]:
    """Three figures (behaviour, mechanism, weights) into directory ``out``; returns their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    stem = f"compare_{Path(result['learned']).name}"
    paths = []
    b = result["behaviour"]
    fig = Figure(figsize=(17, 3.8), dpi=150)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3, ax4 = (fig.add_subplot(1, 4, i) for i in (1, 2, 3, 4))
    lams = [p["lambda"] for p in b["sweep"]]
    for key, style, label in (("target", ":", "in-context mixture"), ("p_constructed", "-", "constructed"),
                              ("p_learned", "--", "learned")):
        for i, color in ((0, "tab:blue"), (1, "tab:orange")):
            ax1.plot(lams, [p[key][i] for p in b["sweep"]], style, color=color, alpha=0.6 if key == "target" else 1,
                     label=f"{label}: {b['pair'][i]}")
    ax1.set_xlabel(f"lambda (share of {b['pair'][0]})")
    ax1.set_ylabel("mean probability of the answer")
    ax1.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    cal = b["calibration"]
    xs = cal["proportion"]
    ax2.plot([0, 1], [0, 1], ":", color="gray", label="proportional")
    for name, curve in cal["curves"].items():
        pts = [(x, y) for x, y in zip(xs, curve) if x is not None and y is not None]
        ax2.plot(*zip(*pts), "o-", markersize=3, label=name)
    ax2.set_xlabel("in-context proportion of the answer")
    ax2.set_ylabel("answer probability")
    ax2.legend(fontsize=7, loc="upper left")
    if b["skewed"]:
        labels = ["/".join(f"{x:.2f}" for x in s["proportions"]) for s in b["skewed"]]
        xpos = np.arange(len(labels))
        for j, (key, name) in enumerate((("kl_target_constructed", "constructed"), ("kl_target_learned", "learned"),
                                         ("kl_constructed_learned", "constructed||learned"))):
            ax3.bar(xpos + 0.27 * (j - 1), [s[key]["mean"] for s in b["skewed"]], 0.27, label=name)
        ax3.set_xticks(xpos, labels, rotation=30, fontsize=6)
        ax3.set_ylabel("mean KL (nats)")
        ax3.set_xlabel("three-task mixture")
        ax3.legend(fontsize=7)
    if b["by_length"]:
        ms = [p["n_examples"] for p in b["by_length"]]
        for key, name in (("kl_target_constructed", "constructed"), ("kl_target_learned", "learned"),
                          ("kl_constructed_learned", "constructed||learned")):
            ax4.errorbar(ms, [p[key]["mean"] for p in b["by_length"]], [p[key]["ci95"] for p in b["by_length"]],
                         marker="o", markersize=3, capsize=2, label=name)
        ax4.set_xlabel("examples in the prompt (uniform mixture of all tasks)")
        ax4.set_ylabel("mean KL (nats)")
        ax4.legend(fontsize=7)
    fig.suptitle(f"behaviour: {result['learned']} vs the construction", fontsize=9)
    fig.tight_layout()
    paths.append(results_lib.save_figure(fig, out / f"{stem}_behaviour.png"))

    fig = Figure(figsize=(12, 4), dpi=150)
    FigureCanvasAgg(fig)
    for i, who in enumerate(("constructed", "learned")):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, entry in result["mechanism"][who]["probes"].items():
            kind, _, k = name.partition("_")
            ax.plot(range(len(entry["layers"])), [score_of(s) for s in entry["layers"]], marker="o", markersize=2,
                    label=name, linewidth=1, color=PROBE_COLORS[kind], linestyle=("-", "--", ":", "-.")[int(k or 0) % 4])
        ax.set_xticks(range(len(entry["layers"])))
        ax.set_xlabel("layer (0 = embedding)")
        ax.set_ylabel("held-out probe accuracy / R^2")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(who if who == "constructed" else result["learned"], fontsize=8)
        ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    paths.append(results_lib.save_figure(fig, out / f"{stem}_probes.png"))

    w = result["weights"]
    fig = Figure(figsize=(12, 4.5), dpi=150)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sim = np.array(w["matching"]["similarity"])
    im = ax1.imshow(sim, vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
    fig.colorbar(im, ax=ax1, fraction=0.04)
    ia = {tuple(h): i for i, h in enumerate(w["matching"]["heads_a"])}
    ib = {tuple(h): i for i, h in enumerate(w["matching"]["heads_b"])}
    for p in w["matching"]["pairs"]:
        ax1.plot(ib[tuple(p["b"])], ia[tuple(p["a"])], "k+", markersize=6)
    ax1.set_yticks(range(len(ia)), [f"L{l}h{h}" for l, h in w["matching"]["heads_a"]], fontsize=5)
    ax1.set_xticks(range(len(ib)), [f"L{l}h{h}" for l, h in w["matching"]["heads_b"]], fontsize=5, rotation=90)
    ax1.set_ylabel("constructed heads")
    ax1.set_xlabel("learned heads (+: Hungarian match)")
    cka = np.array(w["cka"])
    im = ax2.imshow(cka, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax2, fraction=0.04)
    ax2.set_xticks(range(cka.shape[1]))
    ax2.set_yticks(range(cka.shape[0]))
    ax2.set_ylabel("constructed layer (0 = embedding)")
    ax2.set_xlabel("learned layer (0 = embedding)")
    ax2.set_title("linear CKA of the residual streams", fontsize=8)
    ax1.set_title("head similarity (QK and OV circuits in the token/position basis)", fontsize=8)
    fig.tight_layout()
    paths.append(results_lib.save_figure(fig, out / f"{stem}_weights.png"))
    return paths
