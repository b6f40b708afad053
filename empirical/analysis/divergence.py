"""Divergences between distributions, row-wise over the last axis.

One convention everywhere: ``KL(p || q) = sum_{p_i > 0} p_i (log p_i - log max(q_i, floor))``
(natural log): terms where ``p`` is zero vanish, and only ``q`` is floored, so that a zero
where ``p`` has mass stays finite. The floor is :data:`FLOOR` unless a study states its own
(the constructed-versus-learned comparison floors at ``1e-12``, as its committed numbers were
computed).
"""

from __future__ import annotations

import numpy as np

#: The default floor of ``q`` in :func:`kl`.
FLOOR = 1e-30


def kl(p, q, *, floor: float = FLOOR, log_ratio: bool = False) -> np.ndarray:
    """KL(p || q) per row (a float for 1-D inputs). ``p`` is taken in float64; a float32 ``q``
    keeps its precision in ``log q`` (as the float32 construction's check computes it: pass
    float64 for a float64 log). ``log_ratio`` takes ``log(p / q)`` in one step instead of
    ``log p - log q`` (equal up to the last bit; the LLM probe's committed numbers were
    computed so)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q)
    q = np.maximum(q if np.issubdtype(q.dtype, np.floating) else q.astype(np.float64), floor)
    if p.ndim == 1:  # one distribution: the sum over its support only
        m = p > 0
        return float(np.sum(p[m] * (np.log(p[m] / q[m]) if log_ratio else np.log(p[m]) - np.log(q[m]))))
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(p > 0, p, 1.0)
        log = np.log(safe / q) if log_ratio else np.log(safe) - np.log(q)
        return np.where(p > 0, p * log, 0.0).sum(axis=-1)


def tv(p, q) -> np.ndarray:
    """Total variation distance ``0.5 * |p - q|_1`` per row."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(-1)


def normalised(y, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``y`` divided by their sum (at least ``eps``)."""
    y = np.asarray(y)
    return y / np.maximum(y.sum(axis=-1, keepdims=True), eps)
