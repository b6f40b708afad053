"""Held-out linear probes: ridge regression on standardised features, scored on other rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Probe ridge penalty per training row, on standardised features.
RIDGE = 1e-3


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
    target for ``kind="class"``, or a 0/1 target thresholded at 0.5 for ``"binary"``) with the
    majority-class ``baseline``, or ``r2`` (``"real"``: pooled over the target's dimensions)."""
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


def score_of(entry) -> float:
    """A probe score's one number: its accuracy, else its R^2 (a dict or an object with those fields)."""
    if isinstance(entry, dict):
        return entry["accuracy"] if "accuracy" in entry else entry["r2"]
    return entry.accuracy if entry.accuracy is not None else entry.r2
