"""Where the bounds bite: measured error and bound against beta and against prompt length.

Both sweeps build real models (float32 and float64) and measure max |predict - y_hat| over
adversarial and random prompts; the bounds are the construction's (``error_bound``, exact
arithmetic, and with the float32 rounding allowance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from construction import construct, superposition_target
from proofs_check.composition import adversarial_prompts, check_tasks

#: Values below this are drawn at this height on log plots (an exact 0 has no logarithm).
PLOT_FLOOR = 1e-17

BETAS_QUICK = tuple(float(b) for b in range(2, 42, 3))
BETAS_FULL = tuple(float(b) for b in range(1, 46))
LENGTHS_QUICK = (1, 4, 16, 64)
LENGTHS_FULL = (1, 2, 4, 8, 16, 32, 64, 128)


def _model_kwargs(max_examples: int) -> dict:
    return dict(tasks=check_tasks(5), vocab_size=5, example_len=4, max_examples=max_examples)


def _measure(model, tokens) -> float:
    spec = model.spec
    y = superposition_target(tokens, spec.tasks, spec.example_len)
    return float(np.abs(np.asarray(model.predict(tokens), np.float64) - y).max())


def beta_sweep(betas: Sequence[float] = BETAS_QUICK, *, n_examples: int = 12, dtypes=("float64", "float32"), seed=0) -> dict:
    """For each dtype and beta: measured max |predict - y_hat| (the default three-task set,
    ``n_examples`` examples, so alpha is a multiple of 1/12: float32 cannot hold it exactly)
    and the bounds: ``bound_exact`` (leakage only) and ``bound_<dtype>`` (with rounding)."""
    kw = _model_kwargs(n_examples)
    probe = construct(**kw, beta=1.0)
    tokens = adversarial_prompts(probe.spec, n_examples, batch=32, seed=seed)
    out = {"betas": [float(b) for b in betas], "n_examples": n_examples, "prompts": int(len(tokens))}
    for dtype in dtypes:
        measured, bound = [], []
        for beta in betas:
            model = construct(**kw, beta=float(beta), dtype=dtype)
            measured.append(_measure(model, tokens))
            bound.append(model.error_bound(n_examples, dtype))
        out[f"measured_{dtype}"] = measured
        out[f"bound_{dtype}"] = bound
    out["bound_exact"] = [construct(**kw, beta=float(b)).error_bound(n_examples) for b in betas]
    return out


def length_sweep(
    lengths: Sequence[int] = LENGTHS_QUICK, *, betas: Sequence[float] = (10.0, 30.0), dtype: str = "float64", seed=0
) -> dict:
    """For each beta and number of examples m: measured max |predict - y_hat| and the bound
    (rounding of ``dtype`` included), with the prompt length L = m n + n - 1."""
    M = max(lengths)
    out = {"n_examples": [int(m) for m in lengths], "dtype": dtype, "betas": [float(b) for b in betas]}
    models = {b: construct(**_model_kwargs(M), beta=float(b), dtype=dtype) for b in betas}
    spec = next(iter(models.values())).spec
    out["prompt_length"] = [int(m * spec.example_len + spec.example_len - 1) for m in lengths]
    for b, model in models.items():
        measured, bound = [], []
        for m in lengths:
            tokens = adversarial_prompts(model.spec, int(m), batch=16, seed=seed)
            measured.append(_measure(model, tokens))
            bound.append(model.error_bound(int(m), dtype))
        out[f"measured_beta{b:g}"] = measured
        out[f"bound_beta{b:g}"] = bound
    return out


def crossover_beta(sweep: dict, dtype: str = "float32") -> float | None:
    """The smallest beta where the leakage-only bound falls below the measured ``dtype`` error
    (from there on, rounding, not softmax leakage, sets the error)."""
    for beta, exact, got in zip(sweep["betas"], sweep["bound_exact"], sweep[f"measured_{dtype}"]):
        if exact < got:
            return float(beta)
    return None


def _floor(values):
    return np.maximum(np.asarray(values, dtype=float), PLOT_FLOOR)


def _finish(fig, ax, path: Path, xlabel: str, title: str) -> Path:
    """Labels, the legend beside the axes, the grid; saved atomically and closed."""
    import matplotlib.pyplot as plt

    from empirical.results import legend_outside, save_figure

    ax.set_xlabel(xlabel)
    ax.set_ylabel("max |out - y_hat| at the query")
    ax.set_title(title)
    legend_outside(ax)
    ax.grid(True, which="major", alpha=0.3)
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def plot_beta(sweep: dict, path: Path) -> Path:
    """Measured max |predict - y_hat| and the bounds against beta, float64 and float32."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    b = sweep["betas"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.semilogy(b, _floor(sweep["bound_exact"]), "k-", label="bound (leakage, exact arithmetic)")
    ax.semilogy(b, _floor(sweep["bound_float64"]), "C0--", label="bound + float64 rounding allowance")
    ax.semilogy(b, _floor(sweep["bound_float32"]), "C1--", label="bound + float32 rounding allowance")
    ax.semilogy(b, _floor(sweep["measured_float64"]), "C0o", ms=4, label="measured, float64 model")
    ax.semilogy(b, _floor(sweep["measured_float32"]), "C1s", ms=4, label="measured, float32 model")
    ax.axhline(float(np.finfo("float32").eps), color="C1", lw=0.6, ls=":", label="float32 eps")
    cross = sweep.get("crossover_beta_float32")
    if cross:
        ax.axvline(cross, color="grey", lw=0.6, ls=":")
    return _finish(fig, ax, path, "attention sharpness beta", f"Error vs beta (K=3, V=5, n=4, m={sweep['n_examples']})")


def plot_length(sweep: dict, path: Path) -> Path:
    """Measured error and bound against prompt length, one colour per beta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    L = sweep["prompt_length"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, beta in enumerate(sweep["betas"]):
        ax.loglog(L, _floor(sweep[f"bound_beta{beta:g}"]), f"C{i}-", label=f"bound, beta={beta:g}")
        ax.loglog(L, _floor(sweep[f"measured_beta{beta:g}"]), f"C{i}o", ms=4, label=f"measured, beta={beta:g}")
    return _finish(fig, ax, path, "prompt length L (tokens)", f"Error vs prompt length ({sweep['dtype']})")
