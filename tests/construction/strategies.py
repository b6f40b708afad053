"""Hypothesis strategies for random constructions: tasks, vocabularies, mixtures, lengths."""

from __future__ import annotations

import math
import os
from collections import Counter
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


#: Task sets drawn per generated shape, checked together through one compiled model (one
#: compilation per shape): a few in the default "ci" profile, many in "thorough".
CASES_PER_SHAPE = {"thorough": 32}.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 3)
#: A group's attention scores (cases x heads x L^2, 4 prompts each) stay below this many
#: numbers, so long prompts get smaller groups instead of exhausting memory.
GROUP_SCORES = 3e7


@st.composite
def case_groups(draw, *, max_vocab=64, max_tasks=6, max_example_len=10, max_examples=128, max_beta=32.0,
                size=None):
    """Random constructions, in groups that share one shape (vocabulary V, example length n,
    K tasks, m examples per prompt, M): every case has its own tasks (positions, tables),
    beta, proportions and prompts. ``size`` None: up to :data:`CASES_PER_SHAPE` per group.

    beta stops at 32 by default: beyond ~33 the exact-arithmetic leakage bound (e^-beta per
    position) falls below float64's own rounding (~1e-16), and a comparison then needs the
    float64 rounding allowance (``error_bound(m, "float64")``). It starts at
    :func:`beta_floor`: long prompts need a sharper attention for the bound to resolve one
    example."""
    vocab = draw(st.integers(2, max_vocab))
    n = draw(st.integers(2, max_example_len))
    k = draw(st.integers(1, max_tasks))
    m = draw(st.integers(1, max_examples))
    big_m = draw(st.integers(m, max(m, max_examples)))
    if size is None:
        length = n * (m + 1)
        size = int(max(1, min(CASES_PER_SHAPE, GROUP_SCORES // (4 * k * length * length))))
    group = []
    for _ in range(size):
        seed = draw(st.integers(0, 2**31 - 1))
        rng = np.random.default_rng(seed)
        kinds = draw(st.lists(st.sampled_from(["identity", "shift", "constant", "permutation", "map"]),
                              min_size=k, max_size=k))
        tasks = tuple(
            lookup_task(draw(st.integers(0, n - 2)), _table(kind, vocab, rng), name=f"t{i}:{kind}")
            for i, kind in enumerate(kinds)
        )
        weights = np.array(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
        props = weights / weights.sum() if weights.sum() > 0 else np.full(k, 1 / k)
        beta = draw(st.floats(min(beta_floor(k, n, m), max_beta), max_beta))
        group.append(Case(tasks, vocab, n, m, big_m, beta, tuple(props), seed))
    return tuple(group)


def cases(**kw):
    """One random construction (a group of one)."""
    return case_groups(size=1, **kw).map(lambda group: group[0])


def beta_floor(k: int, n: int, m: int) -> float:
    """The least beta drawn for K = ``k`` tasks, examples of ``n`` tokens and ``m`` examples per
    prompt. The exact-arithmetic output bound is leakage, about 2 K n m e^-beta; from this beta
    on it stays below 1/(2m) (measured: at most 0.41 / (2m) for K <= 6, V <= 64, n <= 10 and
    m <= M <= 200), so a miscount of one example, 1/m in y_hat, falls outside the bound."""
    return max(12.0, math.log(4 * k * n * m * m) + 1.0)


#: Construction cases checked, per test (``checked``); tests/conftest.py writes the summary.
CHECKED: Counter = Counter()


def checked(n: int = 1) -> None:
    """Count ``n`` construction cases as checked by the running test."""
    CHECKED[os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]] += n


__all__ = ["CASES_PER_SHAPE", "CHECKED", "Case", "beta_floor", "case_groups", "cases", "checked", "retrieval_task",
           "shift_task"]
