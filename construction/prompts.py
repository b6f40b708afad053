"""Mixed prompts: m examples whose tasks follow given proportions, randomly interleaved.

Discrete prompts are int arrays [batch, m*n + n-1]; continuous prompts are float arrays
[batch, m*n + n-1, d] with entries in [-B, B]. Every draw comes from an explicit numpy
Generator (or an int seed), so the same seed gives the same prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from construction.layout import Layout
from construction.tasks import Task, validate_tasks


@dataclass(frozen=True)
class Prompts:
    """A batch of prompts and how they were drawn."""

    tokens: np.ndarray  # [batch, L] symbols or [batch, L, d] vectors
    example_tasks: np.ndarray  # [batch, m] the task that generated each example
    layout: Layout
    proportions: tuple[float, ...]

    def __len__(self):
        return self.tokens.shape[0]


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def exact_counts(proportions: np.ndarray, m: int) -> np.ndarray:
    """Example counts per task summing to m, closest to proportions * m (largest remainder)."""
    raw = proportions * m
    counts = np.floor(raw).astype(int)
    short = m - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def _check_proportions(proportions, num_tasks: int) -> np.ndarray:
    p = np.asarray(proportions, dtype=np.float64)
    if p.shape != (num_tasks,):
        raise ValueError(f"need one proportion per task ({num_tasks}), got {p.shape[0] if p.ndim else 'a scalar'}")
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"proportions must be non-negative and sum to 1, got {p.tolist()}")
    return p


def sample_prompts(
    rng,
    tasks: Sequence[Task],
    proportions: Sequence[float],
    *,
    n_examples: int,
    batch: int,
    vocab_size: int | None = None,
    example_len: int,
    interleave: str = "exact",
    token_bound: float = 1.0,
    margin: float | None = None,
    max_tries: int = 1000,
) -> Prompts:
    """Draw ``batch`` prompts of ``n_examples`` examples and a query.

    ``interleave="exact"``: each prompt has the counts closest to ``proportions * m``, in a
    random order (the paper's real-LLM protocol); ``"iid"``: each example's task is drawn
    independently (its training-from-scratch protocol). Inputs are uniform symbols (discrete)
    or uniform vectors in [-B, B]^d (continuous); labels are the example's task applied to them.
    Continuous prompts with ``margin`` are redrawn until every other task misses every label
    by at least ``margin`` in L1 (docs/theory.md's margin assumption).
    """
    rng = _rng(rng)
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not tasks:
        raise ValueError("need at least one task")
    vocab = tasks[0].vocab_size if vocab_size is None else vocab_size
    regime = validate_tasks(tasks, vocab_size=vocab, example_len=example_len)
    p = _check_proportions(proportions, len(tasks))
    if interleave == "exact":
        base = np.repeat(np.arange(len(tasks)), exact_counts(p, n_examples))
        example_tasks = rng.permuted(np.broadcast_to(base, (batch, n_examples)), axis=1)
    elif interleave == "iid":
        example_tasks = rng.choice(len(tasks), size=(batch, n_examples), p=p)
    else:
        raise ValueError(f"interleave must be 'exact' or 'iid', got {interleave!r}")
    layout = Layout(example_len, n_examples)
    n = example_len
    if regime == "discrete":
        inputs = rng.integers(0, vocab, size=(batch, n_examples + 1, n - 1))
        labels = np.stack([t.apply(inputs[:, :-1]) for t in tasks], axis=-1)
        labels = np.take_along_axis(labels, example_tasks[..., None], axis=-1)[..., 0]
        body = np.concatenate([inputs[:, :-1], labels[..., None]], axis=-1).reshape(batch, -1)
        tokens = np.concatenate([body, inputs[:, -1]], axis=1).astype(np.int32)
    else:
        inputs = _continuous_inputs(rng, tasks, example_tasks, n, vocab, token_bound, margin, max_tries)
        outs = np.stack([t.apply(inputs[:, :-1]) for t in tasks], axis=-2)  # [b, m, K, d]
        labels = np.take_along_axis(outs, example_tasks[..., None, None], axis=-2)[..., 0, :]
        body = np.concatenate([inputs[:, :-1], labels[:, :, None]], axis=2).reshape(batch, -1, vocab)
        tokens = np.concatenate([body, inputs[:, -1]], axis=1)
    return Prompts(tokens, example_tasks, layout, tuple(float(x) for x in p))


def _continuous_inputs(rng, tasks, example_tasks, n, d, bound, margin, max_tries):
    batch, m = example_tasks.shape
    inputs = rng.uniform(-bound, bound, size=(batch, m + 1, n - 1, d))
    if margin is None:
        return inputs
    for _ in range(max_tries):
        outs = np.stack([t.apply(inputs[:, :-1]) for t in tasks], axis=-2)  # [b, m, K, d]
        own = np.take_along_axis(outs, example_tasks[..., None, None], axis=-2)
        gaps = np.abs(outs - own).sum(-1)  # [b, m, K]
        others = np.arange(len(tasks)) != example_tasks[..., None]
        bad = np.any(others & (gaps < margin), axis=-1)  # [b, m]
        if not bad.any():
            return inputs
        inputs[:, :-1][bad] = rng.uniform(-bound, bound, size=(int(bad.sum()), n - 1, d))
    raise ValueError(
        f"could not draw examples whose tasks differ by the margin {margin} in {max_tries} tries: "
        "the tasks are too close for that margin"
    )
