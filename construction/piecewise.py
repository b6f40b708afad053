"""Piecewise-linear functions as sums of ReLUs: what one MLP hidden layer computes exactly.

A :class:`ReluSpline` is ``f(x) = const + sum_i coef_i * ReLU(x - knot_i)``: the linear
interpolant of a function at the knots (flat below the first knot, continued linearly past
the last). The construction uses two: the square (for products, continuous regime) and the
logarithm (the optional readout). Their interpolation errors are lemma 6 of docs/theory.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Inputs of the squares in the product identity s*q = (R/4)((s + q/R)^2 - (s - q/R)^2).
SQUARE_RANGE = (-1.0, 2.0)


@dataclass(frozen=True)
class ReluSpline:
    knots: np.ndarray  # [N] where the ReLUs switch on
    coefs: np.ndarray  # [N] slope changes
    const: float  # value at (and below) the first knot

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        return self.const + np.maximum(x[..., None] - self.knots, 0.0) @ self.coefs


def interpolant(f, knots) -> ReluSpline:
    """The linear interpolant of ``f`` at ``knots`` (N + 1 increasing points, N pieces)."""
    knots = np.asarray(knots, dtype=np.float64)
    values = f(knots)
    slopes = np.diff(values) / np.diff(knots)
    coefs = np.diff(slopes, prepend=0.0)
    return ReluSpline(knots[:-1], coefs, float(values[0]))


def square_spline(pieces: int) -> ReluSpline:
    """u^2 on [-1, 2] with ``pieces`` equal pieces."""
    return interpolant(np.square, np.linspace(*SQUARE_RANGE, pieces + 1))


def square_error(pieces: int) -> float:
    """Max |spline(u) - u^2| on [-1, 2]: h^2 / 4 for pieces of width h (at their midpoints)."""
    h = (SQUARE_RANGE[1] - SQUARE_RANGE[0]) / pieces
    return h * h / 4.0


def product(s, q, bound: float, pieces: int):
    """The construction's approximation of s * q for s in [0, 1] and |q| <= bound."""
    sq = square_spline(pieces)
    return bound / 4.0 * (sq(s + q / bound) - sq(s - q / bound))


def product_error(bound: float, pieces: int) -> float:
    """Max |product(s, q) - s q|: both squares overestimate by [0, h^2/4], so the difference
    is off by at most h^2/4, times bound/4."""
    return bound / 4.0 * square_error(pieces)


def log_spline(floor: float, ceiling: float, pieces: int) -> ReluSpline:
    """log on [floor, ceiling] with geometric knots (equal error on every piece); log(floor) below."""
    return interpolant(np.log, np.geomspace(floor, ceiling, pieces + 1))


def log_error(floor: float, ceiling: float, pieces: int) -> float:
    """Max |log_spline(x) - log x| on [floor, ceiling].

    On [a, r a] the chord of log lies below it by at most ln((r-1)/ln r) - 1 + ln(r)/(r-1),
    whatever a (so geometric knots make every piece equally good).
    """
    lr = math.log(ceiling / floor) / pieces
    if lr == 0:
        return 0.0
    r = math.exp(lr)
    return math.log((r - 1) / lr) - 1 + lr / (r - 1)


def log_lipschitz(floor: float, ceiling: float, pieces: int) -> float:
    """The steepest slope of the log spline: its first piece's."""
    return float(np.max(np.abs(np.cumsum(log_spline(floor, ceiling, pieces).coefs))))
