"""``superpose verify``: build Theorem 1's construction, run it on mixed prompts over a lambda
grid, and compare every number with its bound.

Per lambda, the output mass on each task's answer sits next to the task weight alpha; the
max |predict - y_hat| sits next to ``error_bound``; one traced batch is compared layer by
layer with the float64 reference; the readout's KL to the mixture sits next to its bound.
The result is a typed record, :class:`VerifyResult` (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from construction import (
    ROLES,
    construct,
    reference_trace,
    sample_prompts,
    superposition_target,
    task_outputs,
    task_weights,
    tasks_from_json,
)
from construction.tasks import DEFAULT_EXAMPLE_LEN, DEFAULT_VOCAB, default_tasks
from empirical.analysis.divergence import kl
from empirical.analysis.grid import LAMBDAS
from empirical.results import Record, Stampable, key, optional, record, result_type, save_figure


def mixture(lam: float, num_tasks: int) -> np.ndarray:
    """Task proportions at ``lam``: lam on the first task, the rest shared equally by the others."""
    if num_tasks == 1:
        return np.ones(1)
    return np.array([lam] + [(1 - lam) / (num_tasks - 1)] * (num_tasks - 1))


@dataclass(frozen=True, kw_only=True)
class VerifyConfig:
    vocab_size: int = DEFAULT_VOCAB
    example_len: int = DEFAULT_EXAMPLE_LEN
    n_examples: int = 20
    max_examples: int = 64
    prompts_per_lambda: int = 100
    beta: float = 30.0
    dtype: str = "float64"
    seed: int = 0


@record
class LambdaRow(Record):
    """One lambda: the task proportions, and per task (means over prompts) the task weight
    alpha, the output mass on its answer and y_hat there; the largest |predict - y_hat| and
    KL(mixture || readout) over the prompts."""

    lam: float = key("lambda")
    proportions: tuple[float, ...]
    alpha_mean: tuple[float, ...]
    mass_mean: tuple[float, ...]
    ideal_mass_mean: tuple[float, ...]
    max_error: float
    max_kl: float


@record
class LayerCheck(Record):
    """One layer of a traced batch against the float64 reference: its largest error and bound."""

    layer: int
    role: str
    max_error: float
    bound: float


@result_type("verify")
@record
class VerifyResult(Stampable):
    """``superpose verify``: every measured error of the construction beside its bound, and
    whether all hold. The provenance fields (``command`` ... ``date``) are set by the command
    line (None and left out of the JSON otherwise); ``spec``: the construction's description
    (:meth:`construction.spec.ConstructionSpec.to_dict`)."""

    tasks: tuple[str, ...]
    width: int
    width_formula: int
    error_bound: float
    kl_bound: float
    max_error: float
    max_kl: float
    holds: bool
    prompts: int
    lambdas: tuple[LambdaRow, ...]
    layers: tuple[LayerCheck, ...]
    spec: dict[str, Any]


def _floats(x) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(x, dtype=np.float64))


def kl_to_mixture(y_hat: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """KL(y_hat / |y_hat|_1 || probs) per prompt."""
    return kl(y_hat / y_hat.sum(-1, keepdims=True), probs)


def verify(tasks, cfg: VerifyConfig, *, progress: bool = True) -> VerifyResult:
    """Run the verification; returns the result (without provenance)."""
    model = construct(tasks, vocab_size=cfg.vocab_size, example_len=cfg.example_len,
                      max_examples=cfg.max_examples, beta=cfg.beta, dtype=cfg.dtype)
    allowance_dtype = None if cfg.dtype == "float64" else cfg.dtype
    bounds = model.bounds(cfg.n_examples, allowance_dtype)
    rng = np.random.default_rng(cfg.seed)
    rows, worst, worst_kl = [], 0.0, 0.0
    for lam in tqdm(LAMBDAS, desc="lambda grid", disable=not progress):
        prompts = sample_prompts(rng, tasks, mixture(lam, len(tasks)), n_examples=cfg.n_examples,
                                 batch=cfg.prompts_per_lambda, example_len=cfg.example_len)
        y_hat = superposition_target(prompts.tokens, tasks, cfg.example_len)
        out = model.predict(prompts.tokens)
        alpha = task_weights(prompts.tokens, tasks, cfg.example_len)
        answers = task_outputs(prompts.tokens, tasks, cfg.example_len)  # [b, K]
        mass = np.take_along_axis(out, answers, axis=1)  # output on each task's answer
        ideal = np.take_along_axis(y_hat, answers, axis=1)  # y_hat there (tasks may share an answer)
        err = float(np.abs(out - y_hat).max())
        kl = float(kl_to_mixture(y_hat, model.probabilities(prompts.tokens)).max())
        worst, worst_kl = max(worst, err), max(worst_kl, kl)
        rows.append(LambdaRow(lam=lam, proportions=_floats(mixture(lam, len(tasks))), alpha_mean=_floats(alpha.mean(0)),
                              mass_mean=_floats(mass.mean(0)), ideal_mass_mean=_floats(ideal.mean(0)), max_error=err,
                              max_kl=kl))
    probe = sample_prompts(rng, tasks, mixture(0.5, len(tasks)), n_examples=cfg.n_examples, batch=16,
                           example_len=cfg.example_len)
    layers = []
    for l, (got, want) in enumerate(zip(model.trace(probe.tokens).layers(), reference_trace(model.spec, probe.tokens))):
        layers.append(LayerCheck(layer=l, role=(("embed",) + ROLES)[l], max_error=float(np.abs(got - want).max()),
                                 bound=bounds.after_layer(l)))
    kl_bound = model.kl_bound(cfg.n_examples, allowance_dtype)
    return VerifyResult(
        tasks=tuple(t.name for t in tasks),
        width=model.width,
        width_formula=model.spec.width,
        error_bound=bounds.output,
        kl_bound=kl_bound,
        max_error=worst,
        max_kl=worst_kl,
        holds=bool(worst <= bounds.output and worst_kl <= kl_bound and all(r.max_error <= r.bound for r in layers)),
        prompts=len(LAMBDAS) * cfg.prompts_per_lambda,
        lambdas=tuple(rows),
        layers=tuple(layers),
        spec=model.spec.to_dict(),
    )


def format_report(result: VerifyResult) -> str:
    """The human-readable table ``superpose verify`` prints."""
    names = result.tasks
    head = f"{'lambda':>6} | " + " | ".join(f"{n[:12]:>12}: mass / y_hat / alpha" for n in names) + f" | {'max error':>9}"
    lines = ["Output mass on each task's answer (mean over prompts), the ideal y_hat there (tasks that share "
             "an answer on a query share its mass), and the task weight alpha.",
             f"Theorem 1 construction: {len(names)} tasks, width {result.width} "
             f"(formula {result.width_formula}), {result.prompts} prompts", head, "-" * len(head)]
    for row in result.lambdas:
        cells = " | ".join(f"{m:>14.4f} / {i:.4f} / {a:.3f}"
                           for m, i, a in zip(row.mass_mean, row.ideal_mass_mean, row.alpha_mean))
        lines.append(f"{row.lam:>6.1f} | {cells} | {row.max_error:>9.2e}")
    lines.append("")
    lines.append(f"{'layer':>5} {'role':>12} {'max error':>10} {'bound':>10}")
    for r in result.layers:
        lines.append(f"{r.layer:>5} {r.role:>12} {r.max_error:>10.2e} {r.bound:>10.2e}")
    lines.append("")
    lines.append(f"max |predict - y_hat| = {result.max_error:.3e}  <=  bound {result.error_bound:.3e}")
    lines.append(f"max KL(mixture || readout) = {result.max_kl:.3e}  <=  bound {result.kl_bound:.3e}")
    lines.append("HOLDS" if result.holds else "FAILS: a measured error exceeds its bound")
    return "\n".join(lines)


def plot(result: VerifyResult, path: Path) -> Path:
    """Output mass on each task's answer against lambda, with the ideal (mean alpha) lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lams = [r.lam for r in result.lambdas]
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, name in enumerate(result.tasks):
        color = f"C{k}"
        ax.plot(lams, [r.mass_mean[k] for r in result.lambdas], "o", color=color, label=f"{name}: output mass")
        ax.plot(lams, [r.ideal_mass_mean[k] for r in result.lambdas], "-", color=color, alpha=0.6,
                label=f"{name}: y_hat (ideal)")
        ax.plot(lams, [r.alpha_mean[k] for r in result.lambdas], ":", color=color, alpha=0.6,
                label=f"{name}: alpha")
    ax.set_xlabel("lambda (proportion of the first task's examples)")
    ax.set_ylabel("mean output mass on the task's answer")
    ax.set_title("Constructed transformer: superposition follows the in-context mixture")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def load_tasks(path: str | None, vocab: int, example_len: int):
    if path is None:
        return default_tasks(vocab), vocab, example_len
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    return tasks_from_json(data)


def command(tasks_file: str | None = None, *, prompts: int = 100, examples: int = 20, max_examples: int = 64,
            beta: float = 30.0, dtype: str = "float64", seed: int = 0, out: str | Path = "results",
            json_path: str | None = None, progress: bool = True, echo=print) -> bool:
    """``superpose verify`` as one call: build the construction for the tasks of ``tasks_file``
    (the default tasks without one), check it, ``echo`` the report, the plot (in ``out``) and the
    JSON written (``json_path``); whether every bound holds."""
    from dataclasses import asdict

    from empirical.results import provenance

    tasks, vocab, n = load_tasks(tasks_file, DEFAULT_VOCAB, DEFAULT_EXAMPLE_LEN)
    if prompts < 1 or examples < 1:
        raise ValueError("--prompts and --examples must be >= 1")
    cfg = VerifyConfig(vocab_size=vocab, example_len=n, n_examples=examples, max_examples=max(max_examples, examples),
                       prompts_per_lambda=prompts, beta=beta, dtype=dtype, seed=seed)
    result = verify(tasks, cfg, progress=progress)
    echo(format_report(result))
    echo(f"plot: {plot(result, Path(out) / 'verify_superposition.png')}")
    if json_path:
        replace(result, command="verify", **provenance(asdict(cfg))).write(json_path)
        echo(f"json: {json_path}")
    return result.holds
