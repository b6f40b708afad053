"""Similarity of representations: linear CKA."""

from __future__ import annotations

import numpy as np


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same rows ([N, D1], [N, D2]): 1 for equal
    representations up to rotation and isotropic scaling, 0 for unrelated ones."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else 0.0


def cka_matrix(res_a: list[np.ndarray], res_b: list[np.ndarray], rows: int = 3000, seed: int = 0) -> np.ndarray:
    """Linear CKA between every layer of a and every layer of b ([..., D] each), on the same
    (sub-sampled) token rows."""
    flat_a = [r.reshape(-1, r.shape[-1]) for r in res_a]
    flat_b = [r.reshape(-1, r.shape[-1]) for r in res_b]
    n = flat_a[0].shape[0]
    pick = np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False)
    return np.array([[linear_cka(x[pick], y[pick]) for y in flat_b] for x in flat_a])
