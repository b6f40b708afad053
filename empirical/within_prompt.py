"""Superposition within one prompt, not only on average over prompts.

A mean over prompts cannot tell the paper's claim (probability on several tasks' answers in
ONE forward pass) from a model that commits to one task per prompt: a model that answers
task A in a fraction lambda of the prompts and task B in the rest has the same mean curve
P(A) against lambda as one that gives every prompt (lambda, 1 - lambda). These statistics
look at each prompt's task probabilities ``p`` [prompts, K] (the raw probability of every
task's answer) and summarise them over prompts:

* ``second``: the second-largest task probability (for two tasks, min(P_A, P_B)): 0 for a
  per-prompt chooser, min(lambda, 1 - lambda) for proportional mixing;
* ``entropy``: the entropy in bits of the prompt's task distribution renormalised over the
  tasks (0 for a chooser, H(lambda) for proportional mixing; at most log2 K);
* ``several``: whether at least two tasks each get at least ``threshold`` (0.1).

:func:`reference` gives the values of the two pure strategies for given proportions, so
every result can be read against them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054
THRESHOLD = 0.1


def mean_ci(x) -> dict:
    """Mean with a 95% normal confidence interval over the first axis (``ci95`` is the half-width)."""
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    half = float(Z95 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": mean, "ci95": half, "lo": mean - half, "hi": mean + half}


def _entropy_bits(q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, -q * np.log2(np.where(q > 0, q, 1.0)), 0.0)
    return terms.sum(axis=-1)


def per_prompt(p, threshold: float = THRESHOLD) -> dict[str, np.ndarray]:
    """The per-prompt statistics of task probabilities ``p`` [prompts, K >= 2]."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"need task probabilities of shape [prompts, K >= 2], got {p.shape}")
    if np.any(p < -1e-9) or np.any(p.sum(axis=1) > 1 + 1e-6):
        raise ValueError("task probabilities must be non-negative and sum to at most 1 per prompt")
    p = np.clip(p, 0.0, 1.0)
    top = -np.sort(-p, axis=1)
    total = p.sum(axis=1, keepdims=True)
    q = np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)
    return {
        "second": top[:, 1],
        "entropy": _entropy_bits(q),
        "several": (top[:, 1] >= threshold).astype(np.float64),
    }


def summary(p, threshold: float = THRESHOLD) -> dict:
    """Means (with 95% intervals) over prompts of :func:`per_prompt`'s statistics."""
    return {name: mean_ci(values) for name, values in per_prompt(p, threshold).items()}


def reference(proportions: Sequence[float], threshold: float = THRESHOLD) -> dict:
    """The statistics of the two pure strategies for in-context proportions ``proportions``:
    ``chooser`` (all mass on one task per prompt) and ``proportional`` (mass = proportions)."""
    d = np.asarray(proportions, dtype=np.float64)
    top = -np.sort(-d)
    return {
        "chooser": {"second": 0.0, "entropy": 0.0, "several": 0.0},
        "proportional": {
            "second": float(top[1]),
            "entropy": float(_entropy_bits(d[None])[0]),
            "several": float(top[1] >= threshold),
        },
    }
