"""Every lemma over a grid of configurations, the table ``superpose check`` prints, and its
result, a :class:`CheckResult` (a typed record; ``to_json`` / ``from_json``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from construction import construct, continuous_task, lookup_task, retrieval_task
from empirical.results import Record, Stampable, optional, record, result_type
from proofs_check import composition, lemmas, sweeps
from proofs_check.composition import check_tasks
from proofs_check.results import LemmaResult

#: The betas of the prompt-length sweep (:class:`LengthSweep` has a field pair for each).
LENGTH_BETAS = (10.0, 30.0)


# --------------------------------------------------------------------------- the result, typed


@record
class CheckedLemma(Record):
    """One lemma checked at one configuration: a :class:`proofs_check.results.LemmaResult` as
    the JSON holds it (``details``: (name, measured, bound, holds) rows)."""

    lemma: str
    config: dict[str, Any]
    bound: float
    measured: float
    holds: bool
    relation: str
    details: tuple[tuple[str, float, float, bool], ...]

    @classmethod
    def of(cls, result: LemmaResult) -> "CheckedLemma":
        """The record of a check's :class:`LemmaResult`."""
        return cls(lemma=result.lemma, config=result.config, bound=result.bound, measured=result.measured,
                   holds=result.holds, relation=result.relation, details=tuple(tuple(d) for d in result.details))


@record
class BetaSweep(Record):
    """Measured max |predict - y_hat| and the bounds against beta, float64 and float32 models
    (:func:`proofs_check.sweeps.beta_sweep`), and the float32 crossover (None: none)."""

    betas: tuple[float, ...]
    n_examples: int
    prompts: int
    measured_float64: tuple[float, ...]
    bound_float64: tuple[float, ...]
    measured_float32: tuple[float, ...]
    bound_float32: tuple[float, ...]
    bound_exact: tuple[float, ...]
    crossover_beta_float32: float | None


@record
class LengthSweep(Record):
    """Measured error and bound against the number of examples (and the prompt length), for
    each beta of :data:`LENGTH_BETAS` (:func:`proofs_check.sweeps.length_sweep`)."""

    n_examples: tuple[int, ...]
    dtype: str
    betas: tuple[float, ...]
    prompt_length: tuple[int, ...]
    measured_beta10: tuple[float, ...]
    bound_beta10: tuple[float, ...]
    measured_beta30: tuple[float, ...]
    bound_beta30: tuple[float, ...]

    def measured(self, beta: float) -> tuple[float, ...]:
        """The measured errors at ``beta`` (one of :data:`LENGTH_BETAS`), per number of examples."""
        return getattr(self, f"measured_beta{beta:g}")

    def bound(self, beta: float) -> tuple[float, ...]:
        """The bounds at ``beta`` (one of :data:`LENGTH_BETAS`), per number of examples."""
        return getattr(self, f"bound_beta{beta:g}")


@result_type("check")
@record
class CheckResult(Stampable):
    """``superpose check``: every lemma's check, whether all hold, and (with plots) the beta and
    prompt-length sweeps and their plots. The provenance fields are set by the command line
    (None and left out of the JSON otherwise)."""

    results: tuple[CheckedLemma, ...]
    all_hold: bool
    beta_sweep: BetaSweep | None = optional()
    length_sweep: LengthSweep | None = optional()
    plots: tuple[str, ...] | None = optional()
    seconds: float

    def with_provenance(self, provenance: dict, **more) -> "CheckResult":
        """This result with the provenance fields (``config``, ``package_version``, ``device``,
        ``date``) and ``more`` (``command``) set."""
        return replace(self, **provenance, **more)


def _tuples(sweep: dict) -> dict:
    """A sweep's lists as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in sweep.items()}


# --------------------------------------------------------------------------- the checks


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
    """A plain-text table: lemma, configuration, measured, relation, bound, holds (of
    :class:`LemmaResult` or :class:`CheckedLemma` rows)."""
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


def check(grid: str = "quick", *, seed: int = 0, plots_dir=None, progress=None) -> CheckResult:
    """Every lemma over ``grid`` ("quick" or "full"), then (with ``plots_dir``) the beta and
    prompt-length sweeps and their plots: what ``superpose check`` writes, without provenance."""
    say = progress or (lambda label: None)
    start = time.perf_counter()
    results = tuple(CheckedLemma.of(r) for r in run_all(grid, seed=seed, progress=say))
    beta = length = plots = None
    if plots_dir is not None:
        quick = grid == "quick"
        say("beta sweep (float64 and float32 models)")
        swept = sweeps.beta_sweep(sweeps.BETAS_QUICK if quick else sweeps.BETAS_FULL, seed=seed)
        say("prompt-length sweep")
        length = LengthSweep(**_tuples(sweeps.length_sweep(sweeps.LENGTHS_QUICK if quick else sweeps.LENGTHS_FULL,
                                                           betas=LENGTH_BETAS, seed=seed)))
        beta = BetaSweep(**_tuples(swept), crossover_beta_float32=sweeps.crossover_beta(swept, "float32"))
        out = Path(plots_dir)
        plots = (str(sweeps.plot_beta(beta.to_json(), out / "check_beta.png")),
                 str(sweeps.plot_length(length.to_json(), out / "check_length.png")))
    return CheckResult(results=results, all_hold=all(r.holds for r in results), beta_sweep=beta, length_sweep=length,
                       plots=plots, seconds=round(time.perf_counter() - start, 2))


def command(grid: str = "quick", *, seed: int = 0, out: str | Path = "results", plots: bool = True,
            json_path: str | None = None, echo=print) -> bool:
    """``superpose check`` as one call: every lemma over ``grid`` (and, with ``plots``, the sweeps
    and their plots in ``out``), progress on stderr, the table and the float32 crossover
    ``echo``-ed, the payload written to ``json_path``; whether every claim holds."""
    import sys

    from empirical.results import provenance

    say = lambda label: print(f"[check] {label}", file=sys.stderr, flush=True)  # noqa: E731
    result = check(grid, seed=seed, plots_dir=out if plots else None, progress=say)
    echo(format_table(result.results))
    if result.beta_sweep is not None:
        cross = result.beta_sweep.crossover_beta_float32
        echo(f"float32 rounding takes over from softmax leakage at beta ~ {cross:g}" if cross else "no float32 crossover")
    if json_path:
        result.with_provenance(provenance({"grid": grid, "seed": seed, "out": out}), command="check").write(json_path)
    return bool(result.all_hold)
