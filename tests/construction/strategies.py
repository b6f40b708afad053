"""Hypothesis strategies for random constructions: tasks, vocabularies, mixtures, lengths."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from construction import lookup_task, retrieval_task, shift_task


@dataclass(frozen=True)
class Case:
    tasks: tuple
    vocab: int
    example_len: int
    n_examples: int
    max_examples: int
    beta: float
    proportions: tuple
    seed: int


def _table(kind: str, vocab: int, rng: np.random.Generator) -> list[int]:
    if kind == "identity":
        return list(range(vocab))
    if kind == "shift":
        return [(v + int(rng.integers(1, vocab + 1))) % vocab for v in range(vocab)]
    if kind == "constant":
        return [int(rng.integers(vocab))] * vocab
    if kind == "permutation":
        return rng.permutation(vocab).tolist()
    return rng.integers(0, vocab, vocab).tolist()  # any map


@st.composite
def cases(draw, *, max_vocab=64, max_tasks=6, max_example_len=10, max_examples=128, max_beta=32.0):
    """Random constructions. beta stops at 32 by default: beyond ~33 the exact-arithmetic
    leakage bound (e^-beta per position) falls below float64's own rounding (~1e-16), and a
    comparison then needs the float64 rounding allowance (``error_bound(m, "float64")``)."""
    vocab = draw(st.integers(2, max_vocab))
    n = draw(st.integers(2, max_example_len))
    k = draw(st.integers(1, max_tasks))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kinds = draw(st.lists(st.sampled_from(["identity", "shift", "constant", "permutation", "map"]),
                          min_size=k, max_size=k))
    tasks = tuple(
        lookup_task(draw(st.integers(0, n - 2)), _table(kind, vocab, rng), name=f"t{i}:{kind}")
        for i, kind in enumerate(kinds)
    )
    m = draw(st.integers(1, max_examples))
    big_m = draw(st.integers(m, max(m, max_examples)))
    weights = np.array(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    props = weights / weights.sum() if weights.sum() > 0 else np.full(k, 1 / k)
    beta = draw(st.floats(12.0, max_beta))
    return Case(tasks, vocab, n, m, big_m, beta, tuple(props), seed)


__all__ = ["Case", "cases", "retrieval_task", "shift_task"]
