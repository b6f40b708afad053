"""The ``check`` subcommand: every lemma of THEORY.md section 5 as a measured fact.

    superpose check --quick --json results/check.json --out results

Runs each lemma over a grid of configurations (``--quick``: the small grid), prints a table
(lemma, configuration, worst measured, bound, holds), writes the JSON result atomically and
the plots "measured error and bound against beta" (float32 and float64 models) and "against
prompt length" to ``--out``; exits 1 if any lemma fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

#: Values below this are drawn at this height on log plots (an exact 0 has no logarithm).
PLOT_FLOOR = 1e-17


def register(subparsers) -> None:
    from empirical.cli import add_common

    parser = subparsers.add_parser(
        "check",
        help="check every lemma and bound of Theorem 1 (THEORY.md section 5) in float64",
        description=__doc__.splitlines()[0],
    )
    add_common(parser)
    parser.add_argument("--quick", action="store_true", help="the small grid (CI); default: the full grid")
    parser.add_argument("--no-plots", action="store_true", help="skip the beta and prompt-length sweeps")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from empirical.results import provenance, write_json
    from proofs_check import format_table, run_all, sweeps

    grid = "quick" if args.quick else "full"
    config = {"grid": grid, "seed": args.seed, "out": args.out}
    start = time.perf_counter()
    say = lambda label: print(f"[check] {label}", file=sys.stderr, flush=True)  # noqa: E731
    results = run_all(grid, seed=args.seed, progress=say)
    print(format_table(results))
    payload = {"results": [r.to_dict() for r in results], "all_hold": all(r.holds for r in results)}
    if not args.no_plots:
        say("beta sweep (float64 and float32 models)")
        beta = sweeps.beta_sweep(sweeps.BETAS_QUICK if args.quick else sweeps.BETAS_FULL, seed=args.seed)
        say("prompt-length sweep")
        length = sweeps.length_sweep(sweeps.LENGTHS_QUICK if args.quick else sweeps.LENGTHS_FULL, seed=args.seed)
        beta["crossover_beta_float32"] = sweeps.crossover_beta(beta, "float32")
        payload["beta_sweep"], payload["length_sweep"] = beta, length
        out = Path(args.out)
        payload["plots"] = [str(plot_beta(beta, out / "check_beta.png")), str(plot_length(length, out / "check_length.png"))]
        cross = beta["crossover_beta_float32"]
        print(f"float32 rounding takes over from softmax leakage at beta ~ {cross:g}" if cross else "no float32 crossover")
    payload["seconds"] = round(time.perf_counter() - start, 2)
    if args.json:
        write_json(args.json, {**provenance(config), **payload})
    return 0 if payload["all_hold"] else 1


def _floor(values):

    return np.maximum(np.asarray(values, dtype=float), PLOT_FLOOR)


def plot_beta(sweep: dict, path: Path) -> Path:
    """Measured max |predict - y_hat| and the bounds against beta, float64 and float32."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from empirical.results import save_figure

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
    ax.set_xlabel("attention sharpness beta")
    ax.set_ylabel("max |out - y_hat| at the query")
    ax.set_title(f"Error vs beta (K=3, V=5, n=4, m={sweep['n_examples']})")
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def plot_length(sweep: dict, path: Path) -> Path:
    """Measured error and bound against prompt length, one colour per beta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from empirical.results import save_figure

    L = sweep["prompt_length"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, beta in enumerate(sweep["betas"]):
        ax.loglog(L, _floor(sweep[f"bound_beta{beta:g}"]), f"C{i}-", label=f"bound, beta={beta:g}")
        ax.loglog(L, _floor(sweep[f"measured_beta{beta:g}"]), f"C{i}o", ms=4, label=f"measured, beta={beta:g}")
    ax.set_xlabel("prompt length L (tokens)")
    ax.set_ylabel("max |out - y_hat| at the query")
    ax.set_title(f"Error vs prompt length ({sweep['dtype']})")
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    path = save_figure(fig, path)
    plt.close(fig)
    return path
