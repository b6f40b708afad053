"""Metrics of Figure 2 as small pure numpy functions."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from empirical.analysis.divergence import kl


def kl_divergence(d: Sequence[float], p: Sequence[float], *, floor: float = 1e-30) -> float:
    """KL(D || P) = sum_k D_k log(D_k / P_k) over D_k > 0, with P the *raw* (unnormalised)
    answer probabilities, as in the paper (so the mass on other continuations counts)."""
    return kl(d, np.asarray(p, np.float64), floor=floor, log_ratio=True)


def other_mass(p: Sequence[float]) -> float:
    """1 - the total probability of the (distinct) task answers."""
    return float(1.0 - np.sum(p))


#: Tolerance of the authors' comparison ``P(answer) >= P(k-th completion) - 1e-5``.
PAPER_TOLERANCE = 1e-5


def r_paper(answer_probs: Sequence[float], completions: Mapping[str, float], answers: Sequence[str],
            k: int | None = None, *, tol: float = PAPER_TOLERANCE) -> tuple[int, float, list[float]]:
    """r as the authors compute it (``is_topk`` in ``edixiong/task-superposition``'s
    ``run_experiments.py``): the number of tasks whose answer probability is at least the
    probability of the k-th most probable *completion* (default k = number of tasks), less
    ``tol``. Returns ``(r, threshold, probs)``.

    ``completions`` maps texts to probabilities from :func:`empirical.llm.scoring.enumerate_completions_paper`
    (summed over tokenisations, the final newline's probability left out, complete only where
    the newline is the most probable next token). Only completions the search reached form the
    pool; an answer's probability is its completion's when the search reached it, otherwise
    ``answer_probs`` (its scored probability, no newline). With fewer than k completions the
    missing ones count as probability 0 (the original would fail), so every answer counts.
    """
    k = k or len(answers)
    if len(answer_probs) != len(answers):
        raise ValueError("one probability per answer is needed")
    probs = [float(completions.get(a, p)) for a, p in zip(answers, answer_probs)]
    vals = sorted((float(v) for v in completions.values()), reverse=True)
    thr = vals[k - 1] if len(vals) >= k else 0.0
    return int(sum(p >= thr - tol for p in probs)), float(thr), probs


def r_complete(answer_logprobs: Sequence[float], continuations: Mapping[str, float],
               answers: Sequence[str], k: int | None = None) -> tuple[int, float]:
    """Our stricter r: the number of tasks whose answer *with its newline* is at least as
    probable as the k-th most probable complete continuation (default k = number of tasks);
    returns ``(r, threshold_logprob)``.

    ``continuations`` maps texts to log-probabilities found by
    :func:`empirical.llm.scoring.enumerate_continuations` (any newline-bearing token closes a
    continuation and its probability counts; one text keeps its most probable tokenisation);
    the answers (scored exactly, newline included) are complete continuations too, so they
    always join the pool and their scored values replace the beam's. On the same model it is
    usually at most :func:`r_paper`.
    """
    k = k or len(answers)
    pool = dict(continuations)
    for a, lp in zip(answers, answer_logprobs):
        pool[a] = float(lp)
    vals = sorted(pool.values(), reverse=True)
    thr = vals[k - 1] if len(vals) >= k else -np.inf
    r = int(sum(float(lp) >= thr for lp in answer_logprobs))
    return r, float(thr)


#: The earlier name of :func:`r_complete` (kept for existing callers).
r_metric = r_complete


def collapse(token_ids: Sequence[Sequence[int]], token_logprobs: Sequence[Sequence[float]]) -> dict:
    """Generation collapse from each answer's per-token log-probabilities.

    Conditioning on task i's first answer token, the probability of task j's whole answer is
    ``P(a_j) / P(first_i)`` when a_j starts with that token and 0 otherwise. Returns
    ``first`` (P(first token of a_i)), ``rest`` (P(rest of a_i | its first token)),
    ``matrix[i][j]`` (P(a_j | prompt + first token of a_i)), and ``multi`` (answers with more
    than one token).
    """
    k = len(token_ids)
    first = np.array([float(np.exp(t[0])) for t in token_logprobs])
    total = np.array([float(np.sum(t)) for t in token_logprobs])
    mat = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if token_ids[j][0] == token_ids[i][0]:
                mat[i, j] = float(np.exp(total[j] - token_logprobs[i][0]))
    return {"first": first, "rest": np.diag(mat).copy(), "matrix": mat,
            "multi": np.array([len(t) > 1 for t in token_ids])}


def mean_var(x: Sequence[float] | np.ndarray, axis: int = 0) -> dict:
    """Mean and (population) variance along ``axis``, as lists or floats."""
    x = np.asarray(x, np.float64)
    m, v = x.mean(axis=axis), x.var(axis=axis)
    return {"mean": m.tolist(), "var": v.tolist()}
