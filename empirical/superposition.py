"""Per-prompt superposition measures and the behavioural signatures of docs/theory.md section 7.

Any model is an :class:`empirical.models.Model` (its ``last_probs``: the next-token
distribution at the last position [P, V]; e.g. ``FlaxModel.trained`` or ``FlaxModel.of`` a
constructed model) or a bare function ``probs(tokens [P, L]) -> [P, V]`` (the oracles of
:func:`oracle_probs`, an ablated model), together with a :class:`synthetic.Family` whose
layout its prompts follow. Everything here reads the model through those probabilities
only, so the same code measures trained, constructed and oracle models on any family.

* :func:`prompt_stats` / :func:`summarise`: per prompt, each task's answer probability
  ``p``, the prompt's in-context task shares ``D``, the second-largest task probability,
  TV(p renormalised, D) beside the TV of a per-prompt chooser and of the uniform mixer,
  KL(D || p) and the mass elsewhere; over prompts, means with 95% intervals, the
  variance ratio var(P_A) / (mu (1 - mu)) and the pooled slope of P_k on D_k.
* :func:`lambda_grid` (two tasks, the paper's lambda grid; the same prompts as
  :func:`empirical.sweep.sweep` with the same seed) and :func:`skewed` (every prompt its own
  Dirichlet proportions over several tasks).
* :func:`signatures`: the SAME prompts under a transformation, per prompt: ``order``
  (permute the examples), ``a_last`` (every task-A example moved to the end), ``count``
  (the same shares with m and 2m examples), ``flip_one`` (one A label changed to B's answer),
  ``length`` (prompts longer than training). Averaging (Theorem 1) is unchanged by the
  first three and moves by -1/m under the flip; a last-example follower jumps.
* :func:`oracle_probs`: three reference models that read the tokens only (``proportional``,
  ``last``, ``majority``): the tests' ground truth and every report's expectations.
* :func:`report` / :func:`plot_report`: all of the above for one model, with the oracles'
  values on the very same prompts beside it.

The results are typed records (:mod:`empirical.results`; ``to_json`` / ``from_json``):
:class:`Summary`, :class:`LambdaGrid`, :class:`Skewed`, :class:`Signatures` and the whole
:class:`SuperpositionReport`, which the mixture study embeds (:mod:`empirical.mixture_study`).

Prompts are handled as arrays (``x`` [P, m, input_len], ``labels`` [P, m],
``example_task`` [P, m] indices into ``tasks``, ``query`` [P, input_len], ``answers`` [P, K])
and written with the family's own layout (:func:`render`, the writer of
:func:`synthetic.mixed_prompts`), so transformations never touch token positions by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from empirical import synthetic
from empirical.results import MeanCI, Record, key, optional, record
from empirical.sweep import LAMBDAS
from empirical.within_prompt import per_prompt

#: A :class:`empirical.models.Model` or a function ``probs(tokens [P, L]) -> [P, V]``.
Probs = Callable[[np.ndarray], np.ndarray]

#: The oracle kinds of :func:`oracle_probs`.
ORACLES = ("proportional", "last", "majority")
#: Sub-seeds of the parts of :func:`report` (each part draws from ``default_rng([seed, tag])``;
#: :func:`lambda_grid` uses ``[seed, i]`` for lambda index i, as the sweep does).
_SEED_SKEWED, _SEED_SIGNATURES = 101, 102


# --------------------------------------------------------------------------- the results, typed


@record
class Summary(Record):
    """Over prompts, the per-prompt measures of :func:`prompt_stats` (:func:`summarise`): each
    scalar one as a mean with its 95% interval, ``p`` and ``D`` one such entry per task, the
    variance ratios of P_A and of A's shares, and the pooled fit of P_k on D_k."""

    second: MeanCI
    entropy: MeanCI
    tv: MeanCI
    tv_chooser: MeanCI
    tv_uniform: MeanCI
    kl: MeanCI
    other: MeanCI
    p: tuple[MeanCI, ...]
    D: tuple[MeanCI, ...]
    var_ratio: float
    var_ratio_shares: float
    slope: float
    intercept: float
    n_prompts: int


@record
class PerPrompt(Record):
    """Per prompt (rounded to 5 decimals): each task's answer probability ``p`` and share
    ``D`` ([P][K]), ``tv`` and ``second``; for skewed prompts also their proportions ``w``."""

    p: tuple[tuple[float, ...], ...]
    D: tuple[tuple[float, ...], ...]
    tv: tuple[float, ...]
    second: tuple[float, ...]
    w: tuple[tuple[float, ...], ...] | None = optional()


@record
class GridPoint(Record):
    """One lambda of a :class:`LambdaGrid`."""

    lam: float = key("lambda")
    summary: Summary
    per_prompt: PerPrompt


@record
class LambdaGrid(Record):
    """Two tasks over a lambda grid (:func:`lambda_grid`)."""

    family: str
    tasks: tuple[str, ...]
    n_prompts: int
    n_examples: int
    seed: int | tuple[int, ...]
    lambdas: tuple[float, ...]
    points: tuple[GridPoint, ...]

    def at(self, lam: float) -> Summary:
        """The summary at ``lam`` (a ValueError if the grid lacks it)."""
        for pt in self.points:
            if abs(pt.lam - lam) < 1e-9:
                return pt.summary
        raise ValueError(f"the grid has no lambda {lam} (it has {list(self.lambdas)})")


@record
class Skewed(Record):
    """Prompts of Dirichlet proportions over several tasks (:func:`skewed`)."""

    family: str
    tasks: tuple[str, ...]
    n_prompts: int
    n_examples: int
    concentration: float
    seed: int | tuple[int, ...]
    summary: Summary
    per_prompt: PerPrompt


@record
class BeforeAfter(Record):
    """P(A) per prompt before and after a transformation (rounded to 5 decimals)."""

    before: tuple[float, ...]
    after: tuple[float, ...]


@record
class Delta(Record):
    """The change of P(A) under a transformation: mean change and mean |change| over the
    compared prompts (``per_prompt``: left out in the oracles' references)."""

    delta: MeanCI
    abs_delta: MeanCI
    n_prompts: int
    per_prompt: BeforeAfter | None = optional()


@record
class CountDelta(Delta):
    """``count``: prompts of ``m`` examples against the same shares with ``m2`` = 2m."""

    m: int
    m2: int


@record
class FlipDelta(Delta):
    """``flip_one``: one A label set to B's answer; averaging moves P(A) by about -1/m."""

    expected_averaging: float


@record
class LengthCheck(Record):
    """Prompts of ``n_examples`` (longer than training): their summary, or the model's error."""

    n_examples: int
    summary: Summary | None = optional()
    error: str | None = optional()


@record
class Signatures(Record):
    """docs/theory.md section 7's behavioural signatures (:func:`signatures`)."""

    family: str
    tasks: tuple[str, ...]
    lam: float = key("lambda")
    n_prompts: int
    n_examples: int
    seed: int | tuple[int, ...]
    base: Summary
    order: Delta
    a_last: Delta
    count: CountDelta
    flip_one: FlipDelta
    length: LengthCheck


@record
class OracleReference(Record):
    """An oracle's signatures (without per-prompt lists) and its base prompts' summary."""

    signatures: Signatures
    base: Summary


@record
class SuperpositionReport(Record):
    """Everything :func:`report` measures of one model (``skewed`` None for a family of two
    tasks; ``references``, the oracles' values on the same prompts, left out without them)."""

    family: str
    tasks: tuple[str, ...]
    task_labels: tuple[str, ...]
    n_train_examples: int
    n_examples: int
    n_prompts: int
    seed: int
    lambda_grid: LambdaGrid
    skewed: Skewed | None
    signatures: Signatures
    references: dict[str, OracleReference] | None = optional()


def _tuples(x):
    """Nested lists (or arrays) as nested tuples of Python numbers."""
    if isinstance(x, np.ndarray):
        x = x.tolist()
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def _seed(seed) -> int | tuple[int, ...]:
    """A seed as recorded: an int, or a tuple of ints for a seed sequence."""
    return tuple(int(s) for s in seed) if isinstance(seed, (list, tuple, np.ndarray)) else seed


# --------------------------------------------------------------------------- checks


def _family(fam) -> synthetic.Family:
    if isinstance(fam, str):
        return synthetic.family(fam)
    if not isinstance(fam, synthetic.Family):
        raise ValueError(f"need a synthetic.Family or a family name, got {type(fam).__name__}")
    return fam


def _tasks(fam: synthetic.Family, tasks: Sequence[int], *, exactly: int | None = None) -> np.ndarray:
    """``tasks`` as an int array; ValueError for fewer than 2, duplicates, or tasks not in ``fam``."""
    try:
        out = [int(h) for h in tasks]
    except (TypeError, ValueError):
        raise ValueError(f"tasks must be a list of task indices of the {fam.name} family, got {tasks!r}") from None
    if len(out) < 2:
        raise ValueError(f"need at least 2 tasks to measure superposition, got {out}")
    if exactly is not None and len(out) != exactly:
        raise ValueError(f"this measure compares exactly {exactly} tasks, got {len(out)}: {out}")
    unknown = [h for h in out if h not in fam.params]
    if unknown:
        raise ValueError(f"tasks {unknown} are not in the {fam.name} family (its tasks: {list(fam.params)})")
    if len(set(out)) != len(out):
        raise ValueError(f"tasks must be distinct, got {out}")
    return np.asarray(out, dtype=np.int64)


def _counts(n_prompts: int, n_examples: int) -> None:
    if int(n_prompts) < 2:
        raise ValueError(f"need n_prompts >= 2 (a mean with a confidence interval), got {n_prompts}")
    if int(n_examples) < 1:
        raise ValueError(f"need n_examples >= 1 example per prompt, got {n_examples}")


def _model_probs(probs: Probs, tokens: np.ndarray) -> np.ndarray:
    p = np.asarray(probs(tokens) if callable(probs) else probs.last_probs(tokens), dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != tokens.shape[0]:
        raise ValueError(f"the model must return next-token probabilities [{tokens.shape[0]}, V], got {p.shape}")
    return p


# --------------------------------------------------------------------------- prompts as arrays


def draw_prompts(fam: synthetic.Family, rng: np.random.Generator, tasks: Sequence[int], example_task) -> dict:
    """Prompts whose examples follow the given task assignments ``example_task`` [P, m]
    (indices into ``tasks``): inputs, labels and a query drawn from ``rng`` in the order
    :func:`synthetic.mixed_prompts` draws them after its assignments, so that with the same
    generator state both give the same prompts. Returns the prompt arrays (see the module
    docstring) with ``tasks``; :func:`render` writes their tokens."""
    fam = _family(fam)
    tasks = _tasks(fam, tasks)
    which = np.asarray(example_task, dtype=np.int64)
    if which.ndim != 2 or (which.size and (which.min() < 0 or which.max() >= len(tasks))):
        raise ValueError(f"example_task must be [prompts, examples] indices into the {len(tasks)} tasks")
    n, m = which.shape
    x = fam.sample_inputs(rng, (n, m))
    labels = fam.answers(x, tasks[which]).astype(np.int32)
    query, answers = synthetic.draw_queries(fam, rng, tasks, n)
    return {"x": x.astype(np.int32), "labels": labels, "example_task": which.astype(np.int32),
            "query": query.astype(np.int32), "answers": answers, "tasks": tasks}


def render(fam: synthetic.Family, prompts: dict) -> np.ndarray:
    """Tokens [P, L] of prompt arrays, in the family's layout: the leading token, the
    examples (:func:`synthetic._write_examples`), the query's inputs and the separator."""
    fam = _family(fam)
    x, labels, query = (np.asarray(prompts[k]) for k in ("x", "labels", "query"))
    n = x.shape[0]
    parts = [synthetic._with_bos(fam, synthetic._write_examples(fam, x, labels).reshape(n, -1)), query]
    if fam.sep is not None:
        parts.append(np.full((n, 1), fam.sep, np.int32))
    return np.concatenate(parts, axis=1).astype(np.int32)


def parse(fam: synthetic.Family, tokens) -> dict:
    """Prompt tokens [P, L] -> ``x`` [P, m, input_len], ``labels`` [P, m], ``query``
    [P, input_len], read with the family's layout (the inverse of :func:`render`); a length
    that is no prompt length of the family is a ValueError."""
    fam = _family(fam)
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"prompt tokens must be [prompts, length], got shape {tokens.shape}")
    n, length = tokens.shape
    m, rest = divmod(length - fam.lead - fam.answer_offset, fam.example_len)
    if rest or m < 0:
        raise ValueError(f"{length} tokens is not a {fam.name} prompt length (lead {fam.lead}, "
                         f"{fam.example_len} tokens per example, then a query of {fam.answer_offset})")
    body = tokens[:, fam.lead : fam.lead + m * fam.example_len].reshape(n, m, fam.example_len)
    return {"x": body[..., : fam.input_len], "labels": body[..., fam.answer_offset],
            "query": tokens[:, fam.lead + m * fam.example_len :][:, : fam.input_len]}


def _take_examples(prompts: dict, order: np.ndarray) -> dict:
    """The same prompts with their examples reordered per prompt (``order`` [P, m] indices)."""
    out = dict(prompts)
    out["x"] = np.take_along_axis(prompts["x"], order[..., None], axis=1)
    for key in ("labels", "example_task"):
        out[key] = np.take_along_axis(prompts[key], order, axis=1)
    return out


def permuted(prompts: dict, rng: np.random.Generator) -> dict:
    """The same examples in a random order per prompt (the query unchanged)."""
    order = np.argsort(rng.random(prompts["labels"].shape), axis=1)
    return _take_examples(prompts, order)


def a_last(prompts: dict) -> dict:
    """The same examples with every task-A (index 0) example moved to the end, each group in
    its original order (a stable sort on "is A")."""
    order = np.argsort(prompts["example_task"] == 0, axis=1, kind="stable")
    return _take_examples(prompts, order)


def doubled(fam: synthetic.Family, prompts: dict, rng: np.random.Generator) -> dict:
    """Prompts of 2m examples with the same shares: each example is kept and followed by a
    fresh example (new inputs from ``rng``) of the same task; the query unchanged."""
    fam = _family(fam)
    tasks = np.asarray(prompts["tasks"])
    x, labels, which = prompts["x"], prompts["labels"], prompts["example_task"]
    n, m = which.shape
    fresh = fam.sample_inputs(rng, (n, m)).astype(np.int32)
    out = dict(prompts)
    out["x"] = np.stack([x, fresh], axis=2).reshape(n, 2 * m, x.shape[-1])
    out["labels"] = np.stack([labels, fam.answers(fresh, tasks[which]).astype(np.int32)], axis=2).reshape(n, 2 * m)
    out["example_task"] = np.repeat(which, 2, axis=1)
    return out


def flip_one(fam: synthetic.Family, prompts: dict, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """One task-A example per prompt relabelled with task B's answer to its input (and counted
    as B's from then on), chosen at random among A's examples whose A and B answers differ.
    Returns the new prompts and a [P] mask of the prompts that had such an example (the others
    are unchanged and should be left out of a comparison)."""
    fam = _family(fam)
    tasks = np.asarray(prompts["tasks"])
    x, which = prompts["x"], prompts["example_task"]
    ans_a = fam.answers(x, np.full(which.shape, tasks[0]))
    ans_b = fam.answers(x, np.full(which.shape, tasks[1]))
    eligible = (which == 0) & (ans_a != ans_b)
    ok = eligible.any(axis=1)
    pick = np.argmax(np.where(eligible, rng.random(which.shape), -1.0), axis=1)
    rows = np.flatnonzero(ok)
    out = dict(prompts)
    out["labels"] = prompts["labels"].copy()
    out["example_task"] = which.copy()
    out["labels"][rows, pick[rows]] = ans_b[rows, pick[rows]]
    out["example_task"][rows, pick[rows]] = 1
    return out, ok


def _balanced_prompts(fam, rng, tasks, n_prompts, n_examples, lam=0.5) -> dict:
    """Two-task prompts at A-share ``lam`` (i.i.d. per example), as mixed_prompts draws them."""
    which = rng.choice(2, size=(n_prompts, n_examples), p=[lam, 1.0 - lam])
    return draw_prompts(fam, rng, tasks, which)


# --------------------------------------------------------------------------- statistics


def prompt_stats(p_vocab, prompts: dict) -> dict[str, np.ndarray]:
    """Per-prompt superposition measures of next-token distributions ``p_vocab`` [P, V] on
    ``prompts`` (any dict with ``answers`` [P, K >= 2], every task's answer to the query, and
    ``example_task`` [P, m], each example's task as an index into the K tasks):

    * ``p`` [P, K]: each task's answer probability; ``D`` [P, K]: the prompt's in-context
      shares of the tasks (counts of ``example_task`` / m);
    * ``second``: the second-largest of ``p`` (``entropy``: bits of ``p`` renormalised);
    * ``tv``: TV(q, D) = 1/2 sum_k |q_k - D_k|, q = p renormalised over the K tasks (uniform
      when they get no mass at all): 0 for proportional mixing;
    * ``tv_chooser``: TV(onehot(majority task), D) = 1 - max_k D_k (ties: the first task), the
      value of a per-prompt majority chooser; ``tv_uniform``: TV(1/K, D), the value of a mixer
      that ignores the shares; the two references to read ``tv`` against;
    * ``kl``: KL(D || p) in nats, p floored at 1e-30, terms with D_k = 0 dropped;
    * ``other``: 1 - sum_k p_k, the mass on no task's answer.
    """
    p_vocab = np.asarray(p_vocab, dtype=np.float64)
    answers = np.asarray(prompts["answers"], dtype=np.int64)
    which = np.asarray(prompts["example_task"], dtype=np.int64)
    if answers.ndim != 2 or answers.shape[1] < 2:
        raise ValueError(f"need every task's answer [prompts, K >= 2], got shape {answers.shape}")
    n, k = answers.shape
    if p_vocab.ndim != 2 or p_vocab.shape[0] != n:
        raise ValueError(f"need next-token probabilities [{n}, V] for {n} prompts, got shape {p_vocab.shape}")
    if which.ndim != 2 or which.shape[0] != n or which.shape[1] < 1:
        raise ValueError(f"need example_task [{n}, m >= 1], got shape {which.shape}")
    if which.min() < 0 or which.max() >= k:
        raise ValueError(f"example_task must index the {k} tasks")
    if answers.min() < 0 or answers.max() >= p_vocab.shape[1]:
        raise ValueError(f"answers must lie in the vocabulary 0..{p_vocab.shape[1] - 1}")
    p = np.take_along_axis(p_vocab, answers, axis=1)
    wp = per_prompt(p)
    d = (which[..., None] == np.arange(k)).mean(axis=1)
    total = p.sum(axis=1, keepdims=True)
    q = np.divide(p, total, out=np.full_like(p, 1.0 / k), where=total > 0)
    chooser = np.eye(k)[d.argmax(axis=1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(d > 0, d * (np.log(np.where(d > 0, d, 1.0)) - np.log(np.maximum(p, 1e-30))), 0.0).sum(axis=1)
    return {
        "p": p,
        "D": d,
        "second": wp["second"],
        "entropy": wp["entropy"],
        "tv": 0.5 * np.abs(q - d).sum(axis=1),
        "tv_chooser": 0.5 * np.abs(chooser - d).sum(axis=1),
        "tv_uniform": 0.5 * np.abs(1.0 / k - d).sum(axis=1),
        "kl": kl,
        "other": 1.0 - p.sum(axis=1),
    }


def _var_ratio(x: np.ndarray) -> float:
    mu = float(x.mean())
    denom = mu * (1.0 - mu)
    return float(x.var() / denom) if denom > 1e-12 else float("nan")


def _fit(d: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of least squares of P_k on D_k pooled over prompts and tasks (nan
    when the shares do not vary)."""
    xs, ys = np.asarray(d, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    vx = float(((xs - xs.mean()) ** 2).sum())
    if vx <= 1e-12:
        return float("nan"), float("nan")
    slope = float(((xs - xs.mean()) * (ys - ys.mean())).sum() / vx)
    return slope, float(ys.mean() - slope * xs.mean())


def summarise(stats: dict) -> Summary:
    """Over prompts, :func:`prompt_stats`' per-prompt values summarised (a :class:`Summary`):

    * every scalar statistic as a :class:`results.MeanCI` (mean, ci95, lo, hi), and
      ``p`` and ``D`` as one such entry per task;
    * ``var_ratio`` = var(P_A) / (mu (1 - mu)), mu = mean P_A over prompts, population
      variance (A = the first task). A per-prompt chooser (P_A in {0, 1}) gives exactly 1.
      Proportional mixing (P_A = D_A) gives var(D_A) / (mean D_A (1 - mean D_A)), the same
      ratio of the shares themselves, reported as ``var_ratio_shares``: with n_A ~
      Binomial(m, lambda) examples of A, var(D_A) = lambda (1 - lambda) / m, so it is ~1/m
      (its expectation over P prompts is (1 - 1/P) / m up to the scatter of mu around lambda);
      a mixer that gives every prompt the same P_A = lambda, ignoring its own shares, gives 0.
      Meaningful at one lambda point of two tasks (nan when mu is 0 or 1);
    * ``slope`` and ``intercept``: least squares of P_k on D_k pooled over all prompts and
      tasks (1 and 0 for proportional mixing; nan if the shares do not vary).
    """
    p, d = np.asarray(stats["p"], dtype=np.float64), np.asarray(stats["D"], dtype=np.float64)
    if p.shape != d.shape or p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"need p and D of one shape [prompts >= 2, K], got {p.shape} and {d.shape}")
    slope, intercept = _fit(d, p)
    return Summary(**{name: MeanCI.of(stats[name]) for name in ("second", "entropy", "tv", "tv_chooser",
                                                                 "tv_uniform", "kl", "other")},
                   p=tuple(MeanCI.of(p[:, j]) for j in range(p.shape[1])),
                   D=tuple(MeanCI.of(d[:, j]) for j in range(d.shape[1])),
                   var_ratio=_var_ratio(p[:, 0]), var_ratio_shares=_var_ratio(d[:, 0]), slope=slope,
                   intercept=intercept, n_prompts=int(p.shape[0]))


def _per_prompt(stats: dict, w: np.ndarray | None = None) -> PerPrompt:
    """The per-prompt lists of :func:`prompt_stats` (and the proportions ``w``), rounded."""
    rounded = {key: _tuples(np.round(stats[key], 5)) for key in ("p", "D", "tv", "second")}
    return PerPrompt(**rounded, w=None if w is None else _tuples(np.round(w, 5)))


def _measure(probs: Probs, fam, prompts: dict) -> tuple[dict, Summary]:
    stats = prompt_stats(_model_probs(probs, render(fam, prompts)), prompts)
    return stats, summarise(stats)


# --------------------------------------------------------------------------- lambda grid, skewed shares


def lambda_grid(probs: Probs, fam, tasks: Sequence[int], *, n_prompts: int = 200, n_examples: int,
                lambdas: Sequence[float] = LAMBDAS, seed: int = 0) -> LambdaGrid:
    """Two tasks A, B at A-share lambda (each example A with probability lambda, i.i.d.):
    per lambda, :func:`summarise` of :func:`prompt_stats` and the per-prompt ``p``, ``D``,
    ``tv``, ``second`` (rounded to 5 decimals). Prompts for lambda index i come from
    :func:`synthetic.mixed_prompts` with ``default_rng([seed, i])``: those of
    :func:`empirical.sweep.sweep` with the same arguments."""
    fam = _family(fam)
    tasks = _tasks(fam, tasks, exactly=2)
    _counts(n_prompts, n_examples)
    bad = [lam for lam in lambdas if not 0.0 <= float(lam) <= 1.0]
    if bad or not len(lambdas):
        raise ValueError(f"lambdas must be a non-empty list in [0, 1], got {list(lambdas)}")
    points = []
    for i, lam in enumerate(lambdas):
        rng = np.random.default_rng([seed, i])
        prompts = synthetic.mixed_prompts(fam, rng, int(n_prompts), int(n_examples), tasks, [lam, 1.0 - lam])
        stats = prompt_stats(_model_probs(probs, prompts["tokens"]), prompts)
        points.append(GridPoint(lam=float(lam), summary=summarise(stats), per_prompt=_per_prompt(stats)))
    return LambdaGrid(family=fam.name, tasks=tuple(fam.task(int(h)) for h in tasks), n_prompts=int(n_prompts),
                      n_examples=int(n_examples), seed=_seed(seed), lambdas=tuple(float(x) for x in lambdas),
                      points=tuple(points))


def dirichlet_assignments(rng: np.random.Generator, n_prompts: int, n_examples: int, k: int,
                          concentration: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, proportions w ~ Dirichlet(concentration * 1_k), then each example's task
    ~ w i.i.d.: returns (w [P, k], example_task [P, m])."""
    if not float(concentration) > 0:
        raise ValueError(f"the Dirichlet concentration must be > 0, got {concentration}")
    w = rng.dirichlet(np.full(k, float(concentration)), size=n_prompts)
    u = rng.random((n_prompts, n_examples))
    which = (u[..., None] >= np.cumsum(w, axis=1)[:, None, :]).sum(axis=-1)
    return w, np.minimum(which, k - 1)


def skewed(probs: Probs, fam, tasks: Sequence[int], *, n_prompts: int = 200, n_examples: int,
           concentration: float = 1.0, seed: int = 0) -> Skewed:
    """Prompts whose every one has its own task proportions over ``tasks`` (K >= 2, typically
    3), w ~ Dirichlet(concentration), each example's task ~ w (from ``default_rng(seed)``):
    the shares D cover the simplex, so the pooled slope of P_k on D_k tests proportionality
    over the whole range. Returns :func:`summarise` and the per-prompt ``p``, ``D``, ``tv``,
    ``second`` and ``w`` (rounded)."""
    fam = _family(fam)
    tasks = _tasks(fam, tasks)
    _counts(n_prompts, n_examples)
    rng = np.random.default_rng(seed)
    w, which = dirichlet_assignments(rng, int(n_prompts), int(n_examples), len(tasks), concentration)
    stats, summary = _measure(probs, fam, draw_prompts(fam, rng, tasks, which))
    return Skewed(family=fam.name, tasks=tuple(fam.task(int(h)) for h in tasks), n_prompts=int(n_prompts),
                  n_examples=int(n_examples), concentration=float(concentration), seed=_seed(seed), summary=summary,
                  per_prompt=_per_prompt(stats, w))


# --------------------------------------------------------------------------- behavioural signatures


def _delta(before: np.ndarray, after: np.ndarray, keep: np.ndarray | None = None, cls: type = Delta,
           **more) -> Delta:
    """The :class:`Delta` (or ``cls`` with the fields ``more``) of P(A) from ``before`` to ``after``."""
    if keep is not None:
        before, after = before[keep], after[keep]
    d = after - before
    return cls(delta=MeanCI.of(d), abs_delta=MeanCI.of(np.abs(d)), n_prompts=int(len(d)),
               per_prompt=BeforeAfter(before=_tuples(np.round(before, 5)), after=_tuples(np.round(after, 5))), **more)


def signatures(probs: Probs, fam, tasks: Sequence[int], *, n_prompts: int = 200, n_examples: int,
               n_long: int | None = None, seed: int = 0) -> Signatures:
    """docs/theory.md section 7's behavioural signatures: the SAME prompts (two tasks, A-share
    lambda = 0.5, ``n_examples`` examples, from ``default_rng(seed)``) under a transformation,
    compared per prompt through P(A) = the probability of task A's answer to the query:

    * ``order``: the examples in a random order: mean delta and mean |delta| (averaging: 0);
    * ``a_last``: every A example moved to the end, stable (averaging: 0; a last-example
      follower jumps to ~1 wherever the last example was B's: mean delta ~ 1 - lambda);
    * ``count``: prompts of m = max(1, n_examples // 2) examples against the same prompts
      with 2m (:func:`doubled`: exactly the same shares, no repeated example; 2m stays within
      ``n_examples``, so length does not confound it): averaging 0, a count-sharpening
      (noisy-label Bayesian) model moves;
    * ``flip_one``: one A label set to B's answer (:func:`flip_one`): averaging moves P(A) by
      about -1/m (``expected_averaging``), a chooser by 0 or ~1;
    * ``length``: fresh prompts of ``n_long`` examples (default 2 * n_examples):
      :func:`summarise` at that length beside ``base`` (the base prompts'); if the model
      rejects the length, its ``error`` message instead.
    """
    fam = _family(fam)
    tasks = _tasks(fam, tasks, exactly=2)
    _counts(n_prompts, n_examples)
    n_prompts, n_examples = int(n_prompts), int(n_examples)
    n_long = 2 * n_examples if n_long is None else int(n_long)
    if n_long < 1:
        raise ValueError(f"need n_long >= 1 example per prompt, got {n_long}")
    rng = np.random.default_rng(seed)

    def p_a(prompts):
        return _model_probs(probs, render(fam, prompts))[np.arange(n_prompts), prompts["answers"][:, 0]]

    base = _balanced_prompts(fam, rng, tasks, n_prompts, n_examples)
    base_stats, base_summary = _measure(probs, fam, base)
    pa = base_stats["p"][:, 0]
    order = _delta(pa, p_a(permuted(base, rng)))
    last = _delta(pa, p_a(a_last(base)))
    m_small = max(1, n_examples // 2)
    small = _balanced_prompts(fam, rng, tasks, n_prompts, m_small)
    count = _delta(p_a(small), p_a(doubled(fam, small, rng)), cls=CountDelta, m=m_small, m2=2 * m_small)
    flipped, ok = flip_one(fam, base, rng)
    flip = _delta(pa, p_a(flipped), ok, cls=FlipDelta, expected_averaging=-1.0 / n_examples)
    long = _balanced_prompts(fam, rng, tasks, n_prompts, n_long)
    try:
        length = LengthCheck(n_examples=n_long, summary=_measure(probs, fam, long)[1])
    except Exception as err:  # a model with bounded positions may reject longer prompts
        length = LengthCheck(n_examples=n_long, error=f"{type(err).__name__}: {err}".splitlines()[0])
    return Signatures(family=fam.name, tasks=tuple(fam.task(int(h)) for h in tasks), lam=0.5, n_prompts=n_prompts,
                      n_examples=n_examples, seed=_seed(seed), base=base_summary, order=order, a_last=last,
                      count=count, flip_one=flip, length=length)


# --------------------------------------------------------------------------- oracle models


def oracle_probs(fam, kind: str, vocab_size: int | None = None, *, tasks: Sequence[int] | None = None) -> Probs:
    """A reference model reading the prompt's tokens only (parsed with the family's layout):
    every example's label is compared with each candidate task's answer to that example's
    input (candidates: ``tasks``, default all the family's tasks), giving weights w_k over
    the candidates; the output puts mass w_k on task k's answer to the query (tasks with the
    same answer add up) over ``vocab_size`` tokens (default the family's vocabulary):

    * ``proportional``: w_k = the number of examples task k fits, normalised over the
      candidates (= the in-context shares when each example fits one task);
    * ``last``: the tasks the last example that fits any candidate fits, equally (a
      last-example follower; a chooser wherever that example fits one task);
    * ``majority``: all mass on the task that fits the most examples (ties: the first).

    An example that fits no candidate counts for none; with no fitting example at all the
    weights are uniform.
    """
    fam = _family(fam)
    if kind not in ORACLES:
        raise ValueError(f"unknown oracle kind {kind!r}; known: {', '.join(ORACLES)}")
    cands = np.asarray(fam.params, dtype=np.int64) if tasks is None else _tasks(fam, tasks)
    vocab = fam.vocab_size if vocab_size is None else int(vocab_size)
    if vocab < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")

    def probs(tokens) -> np.ndarray:
        parts = parse(fam, tokens)
        x, labels, query = parts["x"], parts["labels"], parts["query"]
        n, m = labels.shape
        k = len(cands)
        fit = np.stack([labels == fam.answers(x, np.full((n, m), h)) for h in cands], axis=-1)  # [P, m, K]
        counts = fit.sum(axis=1).astype(np.float64)
        if kind == "proportional":
            w = counts
        elif kind == "majority":
            w = np.eye(k)[counts.argmax(axis=1)] * (counts.sum(axis=1, keepdims=True) > 0)
        elif m == 0:
            w = np.zeros((n, k))
        else:  # the tasks of the last example that fits any candidate
            any_fit = fit.any(axis=-1)  # [P, m]
            last = m - 1 - np.argmax(any_fit[:, ::-1], axis=1)
            w = fit[np.arange(n), last].astype(np.float64)  # all zero where no example fits
        total = w.sum(axis=1, keepdims=True)
        w = np.divide(w, total, out=np.full_like(w, 1.0 / k), where=total > 0)
        q_ans = np.stack([fam.answers(query, np.full(n, h)) for h in cands], axis=1)
        if q_ans.max(initial=0) >= vocab:
            raise ValueError(f"answers reach token {q_ans.max()}, outside the vocabulary of {vocab}")
        out = np.zeros((n, vocab))
        np.add.at(out, (np.repeat(np.arange(n), k), q_ans.ravel()), w.ravel())
        return out

    return probs


# --------------------------------------------------------------------------- report and plot


def _other_task(fam: synthetic.Family, tasks: np.ndarray) -> list[int] | None:
    extra = [h for h in fam.params if h not in tasks]
    return [*tasks.tolist(), extra[0]] if extra else None


def report(probs: Probs, fam, tasks: Sequence[int], *, n_train_examples: int, n_prompts: int = 200,
           seed: int = 0, lambdas: Sequence[float] = LAMBDAS, skew_tasks: Sequence[int] | None = None,
           concentration: float = 1.0, n_long: int | None = None, oracles: bool = True) -> SuperpositionReport:
    """Everything for one model: :func:`lambda_grid` and :func:`signatures` on the two
    ``tasks`` (A, B), and :func:`skewed` on ``skew_tasks`` (default: A, B and the family's
    first other task; skipped when the family has only two), on prompts of
    ``n_train_examples - 1`` examples (the training length less the query's place, as the
    sweeps use); ``length`` at ``n_long`` (default 2 * n_train_examples). Fixed seeds: the
    grid ``[seed, i]``, the skewed prompts ``[seed, 101]``, the signatures ``[seed, 102]``.
    With ``oracles``, ``references`` holds, per :func:`oracle_probs` kind (restricted to A and
    B), its signatures and the summary of the signatures' base prompts (lambda 0.5) on the very
    same prompts: the averaging, majority-chooser and last-follower expectations."""
    fam = _family(fam)
    tasks = _tasks(fam, tasks, exactly=2)
    if int(n_train_examples) < 2:
        raise ValueError(f"need n_train_examples >= 2 (prompts hold n_train_examples - 1 examples), "
                         f"got {n_train_examples}")
    _counts(n_prompts, 1)
    m = int(n_train_examples) - 1
    n_long = 2 * int(n_train_examples) if n_long is None else int(n_long)
    skew = _tasks(fam, skew_tasks) if skew_tasks is not None else _other_task(fam, tasks)
    kw = dict(n_prompts=int(n_prompts), n_examples=m)
    sig_seed, skew_seed = [seed, _SEED_SIGNATURES], [seed, _SEED_SKEWED]
    refs = None
    if oracles:
        refs = {}
        for kind in ORACLES:
            oracle = oracle_probs(fam, kind, tasks=tasks)
            sig = signatures(oracle, fam, tasks, n_long=n_long, seed=sig_seed, **kw)
            refs[kind] = OracleReference(signatures=_strip(sig), base=sig.base)
    return SuperpositionReport(
        family=fam.name, tasks=tuple(fam.task(int(h)) for h in tasks),
        task_labels=tuple(fam.task_label(int(h)) for h in tasks), n_train_examples=int(n_train_examples),
        n_examples=m, n_prompts=int(n_prompts), seed=seed,
        lambda_grid=lambda_grid(probs, fam, tasks, lambdas=lambdas, seed=seed, **kw),
        skewed=None if skew is None else skewed(probs, fam, skew, concentration=concentration, seed=skew_seed, **kw),
        signatures=signatures(probs, fam, tasks, n_long=n_long, seed=sig_seed, **kw),
        references=refs)


def _strip(sig: Signatures) -> Signatures:
    """Signatures without their per-prompt lists (the references keep only the numbers)."""
    return replace(sig, **{name: replace(getattr(sig, name), per_prompt=None)
                           for name in ("order", "a_last", "count", "flip_one")})


#: (label, signature, statistic) of the bar chart: ``getattr(getattr(signatures, signature), statistic)``.
_BARS = (("order |dP(A)|", "order", "abs_delta"), ("A last dP(A)", "a_last", "delta"),
         ("m vs 2m |dP(A)|", "count", "abs_delta"), ("flip one dP(A)", "flip_one", "delta"))


def headline(result: SuperpositionReport, lam: float = 0.5) -> dict[str, float | str]:
    """The key numbers of a :func:`report`, a flat map (its keys name the lambda and the long
    length, e.g. ``tv@0.5``, ``length40_tv``): tv (with the chooser's and uniform mixer's),
    second, var_ratio (and the shares' own), slope/intercept at ``lam``; the slope/intercept
    pooled over the whole lambda grid (``slope_grid``) and over the skewed prompts; the
    signatures' deltas; tv at the long length (or the model's error there)."""
    s, sig = result.lambda_grid.at(lam), result.signatures
    points = result.lambda_grid.points
    slope_grid, intercept_grid = _fit(np.concatenate([np.asarray(q.per_prompt.D) for q in points]),
                                      np.concatenate([np.asarray(q.per_prompt.p) for q in points]))
    out = {f"{k}@{lam}": getattr(s, k).mean for k in ("tv", "tv_chooser", "tv_uniform", "second", "kl", "other")}
    out.update({f"var_ratio@{lam}": s.var_ratio, f"var_ratio_shares@{lam}": s.var_ratio_shares,
                f"slope@{lam}": s.slope, f"intercept@{lam}": s.intercept,
                "slope_grid": slope_grid, "intercept_grid": intercept_grid,
                "order_abs_delta": sig.order.abs_delta.mean, "a_last_delta": sig.a_last.delta.mean,
                "a_last_abs_delta": sig.a_last.abs_delta.mean,
                "count_abs_delta": sig.count.abs_delta.mean, "flip_delta": sig.flip_one.delta.mean,
                "flip_expected_averaging": sig.flip_one.expected_averaging})
    if result.skewed is not None:
        out["skewed_slope"] = result.skewed.summary.slope
        out["skewed_intercept"] = result.skewed.summary.intercept
        out["skewed_tv"] = result.skewed.summary.tv.mean
    length = sig.length
    out[f"length{length.n_examples}_tv"] = length.summary.tv.mean if length.summary is not None else length.error
    return out


def plot_report(result: SuperpositionReport, path: str | os.PathLike, title: str = "") -> Path:
    """Three panels: (1) every prompt's P(A) against A's in-context share at every lambda,
    coloured by lambda, with y = x (proportional mixing; a chooser sits at 0 and 1); (2) the
    signatures of the model beside the proportional, majority and last-example oracles on the
    same prompts (and -1/m for the flip); (3) mean TV(q, D) against lambda with the chooser's and uniform mixer's,
    and the value at the long length. Written atomically (:func:`results.save_figure`)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    grid, sig = result.lambda_grid, result.signatures
    name_a = result.task_labels[0]
    fig = Figure(figsize=(15.0, 4.2), dpi=150)
    FigureCanvasAgg(fig)
    sc, bars, tvp = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    cmap = matplotlib.colormaps["viridis"]
    for pt in grid.points:
        d, p = np.asarray(pt.per_prompt.D)[:, 0], np.asarray(pt.per_prompt.p)[:, 0]
        sc.scatter(d, p, s=5, alpha=0.35, color=cmap(pt.lam))
    sc.plot([0, 1], [0, 1], "k--", linewidth=1)
    sc.set_xlabel(f"share of {name_a} examples in the prompt")
    sc.set_ylabel(f"P({name_a}) per prompt")
    sc.set_xlim(-0.02, 1.02)
    sc.set_ylim(-0.02, 1.02)
    sc.grid(alpha=0.3)
    sc.set_title(f"every prompt, lambda {grid.lambdas[0]:g}..{grid.lambdas[-1]:g} (colour); "
                 "dashed: y = x, proportional mixing", fontsize=8)

    names = [label for label, _, _ in _BARS]
    series = {"model": sig}
    series.update({f"{k} oracle": v.signatures for k, v in (result.references or {}).items()})
    width = 0.8 / len(series)
    xs = np.arange(len(names))
    colors = ("tab:red", "tab:green", "tab:blue", "tab:orange")
    for j, (label, s) in enumerate(series.items()):
        vals = [getattr(getattr(s, key), stat).mean for _, key, stat in _BARS]
        errs = [getattr(getattr(s, key), stat).ci95 for _, key, stat in _BARS]
        bars.bar(xs + (j - (len(series) - 1) / 2) * width, vals, width, yerr=errs, capsize=2,
                 color=colors[j % len(colors)], alpha=0.85, label=label)
    flip_x = names.index("flip one dP(A)")
    bars.plot([flip_x - 0.45, flip_x + 0.45], [sig.flip_one.expected_averaging] * 2, "k:", linewidth=1.5,
              label="-1/m")
    bars.axhline(0, color="gray", linewidth=0.8)
    bars.set_xticks(xs, names, fontsize=7)
    bars.set_ylabel("change of P(A), same prompts")
    bars.grid(alpha=0.3, axis="y")
    bars.legend(fontsize=6, loc="upper right")
    bars.set_title(f"signatures at lambda 0.5, m = {sig.n_examples}", fontsize=8)

    lam = np.array(grid.lambdas)
    for key, style, label in (("tv", "o-", "model: TV(q, D)"), ("tv_chooser", "s--", "majority chooser"),
                              ("tv_uniform", "^:", "uniform 1/K mixer")):
        tvp.plot(lam, [getattr(pt.summary, key).mean for pt in grid.points], style, markersize=4, label=label)
    length = sig.length
    if length.summary is not None:
        tvp.errorbar([0.5], [length.summary.tv.mean], yerr=[length.summary.tv.ci95], fmt="D",
                     color="tab:red", capsize=3, label=f"model at {length.n_examples} examples")
    else:
        tvp.text(0.5, 0.55, f"{length.n_examples} examples: rejected", ha="center", fontsize=7, color="tab:red")
    tvp.set_xlabel("lambda (A's share)")
    tvp.set_ylabel("mean per-prompt TV to the in-context shares")
    tvp.set_xlim(-0.02, 1.02)
    tvp.set_ylim(0, max(0.6, *(pt.summary.tv.mean + 0.05 for pt in grid.points)))
    tvp.grid(alpha=0.3)
    tvp.legend(fontsize=6, loc="upper right")
    tvp.set_title("TV(q, D) per prompt: 0 for proportional mixing", fontsize=8)
    default = f"{' vs '.join(result.tasks)}: {result.n_prompts} prompts of {result.n_examples} examples"
    fig.suptitle(title or default, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
