"""Every lemma over a grid of configurations, and the table ``superpose check`` prints."""

from __future__ import annotations

import math
import time
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np

from construction import construct, continuous_task, lookup_task, retrieval_task
from proofs_check import composition, lemmas, sweeps
from proofs_check.composition import check_tasks
from proofs_check.results import LemmaResult


@dataclass(frozen=True)
class ModelCase:
    """A construction to check: ``construct`` arguments and the prompt sizes to run."""

    name: str
    kwargs: dict = field(hash=False)
    n_examples: tuple[int, ...]

    def build(self, **overrides):
        return construct(**{**self.kwargs, **overrides})


def default_case(dtype: str = "float64", beta: float = 30.0, max_examples: int = 12) -> ModelCase:
    kw = dict(tasks=check_tasks(5), vocab_size=5, example_len=4, max_examples=max_examples, beta=beta, dtype=dtype)
    return ModelCase("discrete K=3 V=5 n=4", kw, (max_examples,))


def _random_tables(rng, K, V):
    return tuple(lookup_task(0, rng.integers(0, V, V), name=f"table{k}@0") for k in range(K))


def _continuous_tasks(rng, K, d, n):
    return tuple(continuous_task(int(rng.integers(0, n - 1)), rng.normal(size=(d, d)), name=f"lin{k}") for k in range(K))


def model_cases(grid: str, seed: int = 0) -> list[ModelCase]:
    rng = np.random.default_rng(seed)
    cases = [
        ModelCase("discrete K=1 V=3 n=2", dict(tasks=(retrieval_task(0, 3),), vocab_size=3, example_len=2, max_examples=4, dtype="float64"), (1, 4)),
        ModelCase(
            "discrete K=3 V=5 n=4",
            dict(tasks=check_tasks(5), vocab_size=5, example_len=4, max_examples=12, dtype="float64"),
            (5, 12) if grid == "full" else (12,),
        ),
        ModelCase(
            "continuous K=2 d=3 n=3",
            dict(tasks=_continuous_tasks(rng, 2, 3, 3), regime="continuous", example_len=3, max_examples=8,
                 delta=0.5, product_pieces=64, dtype="float64"),
            (8,),
        ),
    ]
    if grid == "full":
        cases += [  # float32 models against the bound with float32's rounding allowance
            ModelCase(c.name + " float32", {**c.kwargs, "dtype": "float32"}, c.n_examples) for c in cases[1:]
        ]
        cases += [
            ModelCase("discrete K=2 V=7 n=3 same position", dict(tasks=_random_tables(rng, 2, 7), vocab_size=7, example_len=3,
                      max_examples=40, beta=20.0, dtype="float64"), (40,)),
            ModelCase("continuous K=3 d=2 n=2", dict(tasks=_continuous_tasks(rng, 3, 2, 2), regime="continuous", example_len=2,
                      max_examples=6, delta=0.25, product_pieces=16, beta=25.0, dtype="float64"), (3, 6)),
        ]
    return cases


#: Lemma grids: quick (``superpose check --quick``, the CI default) and full.
GRIDS = {
    "quick": {
        "softmax": [(10, 1, 30.0), (100, 10, 5.0), (1000, 3, 12.0), (7, 7, 1.0)],
        "codes": [1, 3, 8, 12, 1000],
        "indicator": [(0.1, 0.0), (2.5, 0.1)],
        "averaging": [(12, 4, 30.0, 0.0), (100, 3, 10.0, 1e-3), (1, 2, 5.0, 0.1)],
        "product": [(1.0, 4), (3.5, 64)],
        "log": [(1e-4, 1.0, 4), (1e-4, 3.0, 64)],
    },
    "full": {
        "softmax": [(2, 1, 1.0), (10, 1, 30.0), (100, 1, 30.0), (100, 10, 5.0), (1000, 3, 12.0), (7, 7, 1.0), (500, 499, 3.0)],
        "codes": [1, 2, 3, 7, 8, 12, 100, 1000, 4095],
        "indicator": [(1.0, 0.0), (0.1, 0.0), (0.1, 0.01), (2.5, 0.1), (10.0, 3.0)],
        "averaging": [(12, 4, 30.0, 0.0), (12, 4, 30.0, 1e-6), (100, 3, 10.0, 1e-3), (1, 2, 5.0, 0.1), (1000, 2, 3.0, 0.01)],
        "product": [(R, N) for R in (1.0, 3.5) for N in (1, 4, 16, 64, 256)],
        "log": [(1e-4, c, N) for c in (1.0, 3.0) for N in (1, 4, 16, 64, 256)],
    },
}


def run_all(grid: str = "quick", *, seed: int = 0, progress=None) -> list[LemmaResult]:
    """Every lemma of docs/theory.md section 5 over ``grid`` ("quick" or "full"), in lemma order.

    ``progress``, if given, is called with a short label before each group of checks.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {grid!r}")
    g, say = GRIDS[grid], progress or (lambda _label: None)
    out: list[LemmaResult] = []
    say("lemmas 1-6")
    out += [lemmas.softmax_hard_attention(N, S, b, seed=seed) for N, S, b in g["softmax"]]
    out += [lemmas.binary_code_gap(M) for M in g["codes"]]
    out.append(lemmas.relu_identities(seed=seed))
    out += [lemmas.indicator_exactness(d, perturbation=e, seed=seed) for d, e in g["indicator"]]
    out += [lemmas.averaging_error(m, n, b, e, seed=seed) for m, n, b, e in g["averaging"]]
    out += [lemmas.product_approximation(R, N) for R, N in g["product"]]
    out += [lemmas.log_approximation(f, c, N) for f, c, N in g["log"]]
    for case in model_cases(grid, seed):
        say(f"model {case.name}")
        model = case.build()
        out.append(composition.width(model))
        out.append(lemmas.indicator_exactness(model=model, seed=seed))
        for m in case.n_examples:
            tokens = composition.adversarial_prompts(model.spec, m, seed=seed)
            trace = model.trace(tokens)
            run = dict(seed=seed, tokens=tokens, trace=trace)
            out.append(composition.attention_leak(model, m, **run))
            out.append(composition.score_gap(model, m, **run))
            out.append(composition.end_to_end(model, m, **run))
            if model.spec.discrete:
                out.append(composition.readout_kl(model, m, seed=seed, tokens=tokens))
    order = {name: i for i, name in enumerate(sorted({r.lemma for r in out}, key=_lemma_key))}
    return sorted(out, key=lambda r: order[r.lemma])


def _lemma_key(name: str):
    number, _, rest = name.partition(" ")
    return (int(number), rest)


def _fmt(x: float) -> str:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _describe(config: dict) -> str:
    skip = {"tasks", "regime"}
    parts = [f"{k}={v}" for k, v in config.items() if k not in skip]
    if "regime" in config:
        parts.insert(0, config["regime"])
    return " ".join(parts)


def format_table(results, *, width: int = 60) -> str:
    """A plain-text table: lemma, configuration, measured, relation, bound, holds."""
    rows = [("lemma", "configuration", "worst measured", "", "bound", "holds")]
    for r in results:
        cfg = _describe(r.config)
        cfg = cfg if len(cfg) <= width else cfg[: width - 3] + "..."
        rows.append((r.lemma, cfg, _fmt(r.measured), r.relation, _fmt(r.bound), "yes" if r.holds else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n_fail = sum(not r.holds for r in results)
    lines.append(f"{len(results)} checks, {n_fail} failed" if n_fail else f"{len(results)} checks, all hold")
    return "\n".join(lines)


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def check(grid: str = "quick", *, seed: int = 0, plots_dir=None, progress=None) -> dict:
    """Every lemma over ``grid`` ("quick" or "full"), then (with ``plots_dir``) the beta and
    prompt-length sweeps and their plots: ``{"results", "all_hold", "beta_sweep",
    "length_sweep", "plots", "seconds"}`` (what ``superpose check`` writes)."""
    say = progress or (lambda label: None)
    start = time.perf_counter()
    results = run_all(grid, seed=seed, progress=say)
    payload = {"results": [r.to_dict() for r in results], "all_hold": all(r.holds for r in results),
               "table": format_table(results)}
    if plots_dir is not None:
        quick = grid == "quick"
        say("beta sweep (float64 and float32 models)")
        beta = sweeps.beta_sweep(sweeps.BETAS_QUICK if quick else sweeps.BETAS_FULL, seed=seed)
        say("prompt-length sweep")
        length = sweeps.length_sweep(sweeps.LENGTHS_QUICK if quick else sweeps.LENGTHS_FULL, seed=seed)
        beta["crossover_beta_float32"] = sweeps.crossover_beta(beta, "float32")
        payload["beta_sweep"], payload["length_sweep"] = beta, length
        out = Path(plots_dir)
        payload["plots"] = [str(sweeps.plot_beta(beta, out / "check_beta.png")),
                            str(sweeps.plot_length(length, out / "check_length.png"))]
    payload["seconds"] = round(time.perf_counter() - start, 2)
    return payload


def command(grid: str = "quick", *, seed: int = 0, out: str | Path = "results", plots: bool = True,
            json_path: str | None = None, echo=print) -> bool:
    """``superpose check`` as one call: every lemma over ``grid`` (and, with ``plots``, the sweeps
    and their plots in ``out``), progress on stderr, the table and the float32 crossover
    ``echo``-ed, the payload written to ``json_path``; whether every claim holds."""
    import sys

    from empirical.results import provenance, write_json

    say = lambda label: print(f"[check] {label}", file=sys.stderr, flush=True)  # noqa: E731
    payload = check(grid, seed=seed, plots_dir=out if plots else None, progress=say)
    echo(payload.pop("table"))
    if "beta_sweep" in payload:
        cross = payload["beta_sweep"]["crossover_beta_float32"]
        echo(f"float32 rounding takes over from softmax leakage at beta ~ {cross:g}" if cross else "no float32 crossover")
    if json_path:
        write_json(json_path, {**provenance({"grid": grid, "seed": seed, "out": out}), **payload})
    return bool(payload["all_hold"])
