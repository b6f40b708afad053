"""Explicit error bounds of the construction, composed layer by layer (docs/theory.md section 5).

Every attention layer leaks at most lemma 1's mass off its hard-attention target; every MLP
step is Lipschitz with a known constant (exact ReLU identities in the discrete regime); the
continuous products and the log readout add their spline errors (lemma 6). The composition
bounds every block of the residual stream at every position, so tests can compare the
Flax model with :func:`construction.reference.reference_trace` layer by layer.

In float32 (or any finite precision) :func:`rounding_allowance` adds, per layer, a standard
forward-error term u * (fan-in) * (absolute sum of the terms), propagated like the leakage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from construction import piecewise
from construction.layout import Layout
from construction.reference import averaging_targets, task_head_targets
from construction.spec import NUM_LAYERS, ConstructionSpec

#: Which residual blocks the embedding (index 0) and each layer (1..7) write.
WRITES = (("token",), ("G",), ("E",), ("C",), ("S",), ("Q",), ("OUT",), ("LOGITS",))

#: Score gap between a head's target and everything else, in units of beta (lemmas 1-2).
SCORE_GAP = 1.0


def leaked_mass(n_visible, n_target, beta: float, gap: float = SCORE_GAP):
    """Lemma 1: softmax mass off a target set of size n_target among n_visible scores, when
    every other score is at least ``gap`` below the target's: (N-S)e^{-b g} / (S + (N-S)e^{-b g})."""
    other = np.asarray(n_visible, dtype=np.float64) - n_target
    e = math.exp(-beta * gap)
    return other * e / (n_target + other * e)


def head_leaks(spec: ConstructionSpec, layout: Layout) -> tuple[float, float]:
    """(task-head leak, averaging-head leak): the worst lemma 1 mass over positions and heads."""
    visible = np.arange(layout.length) + 1
    task = max(
        float(np.max(leaked_mass(visible, (task_head_targets(layout, t.position) > 0).sum(1), spec.beta)))
        for t in spec.tasks
    )
    avg_targets = (averaging_targets(layout) > 0).sum(1)
    ties_all = avg_targets == visible  # no label visible yet: every score ties, nothing leaks
    avg = float(np.max(np.where(ties_all, 0.0, leaked_mass(visible, avg_targets, spec.beta))))
    return task, avg


@dataclass(frozen=True)
class Bounds:
    """Bounds on max |model - reference| per residual block (``G``, ``E``, ... ``LOGITS``)."""

    blocks: dict[str, float]
    task_leak: float
    averaging_leak: float
    product_error: float
    log_spline_error: float

    def after_layer(self, layer: int) -> float:
        """Bound on the whole residual stream after ``layer`` (0: the embedding; 1..7)."""
        written = [b for group in WRITES[: layer + 1] for b in group if b in self.blocks]
        return max([self.blocks[b] for b in written], default=0.0)

    @property
    def output(self) -> float:
        """Bound on |OUT at the query - y_hat| (entrywise): the theorem's epsilon."""
        return self.blocks["OUT"]


def magnitudes(spec: ConstructionSpec) -> np.ndarray:
    """A bound on |entry| for every residual dimension (for the rounding allowance)."""
    res, m = spec.residual, spec.residual.zeros()
    r = spec.value_bounds
    m[:] = 1.0
    # the token block holds inputs (|x| <= B) and labels (task outputs, |y| <= R_k)
    m[res["token"]] = 1.0 if spec.discrete else max(spec.token_bound, r.max())
    for k in range(spec.num_tasks):
        m[res[f"G_{k}"]] = m[res[f"Q_{k}"]] = r[k]
        m[res[f"E_{k}"]] = 1.0 if spec.discrete else spec.vocab_size * (spec.token_bound + r[k])
    m[res["OUT"]] = r.sum()
    if spec.discrete:
        m[res["LOGITS"]] = abs(math.log(spec.log_floor)) + math.log(spec.log_ceiling) + 1.0
    return m


def scores_exact(spec: ConstructionSpec) -> bool:
    """Attention scores are sums of at most qk_dim terms, each 0 or +-beta: with an integer
    beta and beta * qk_dim < 2^24 every partial sum is an integer that float32 holds exactly."""
    return float(spec.beta).is_integer() and spec.beta * spec.qk_dim < 2**24


def rounding_allowance(spec: ConstructionSpec, layout: Layout, unit_roundoff: float, layers) -> list[float]:
    """Per stage, a forward-error bound of its floating-point evaluation (not propagated yet):
    [embedding, layer 1, ..., layer 7]. The embedding rounds continuous tokens once (u/2 of
    their magnitude) and is exact for symbols.

    Attention: the softmax weights carry relative error <= (L + 3) u (plus 2 qk u beta (b+1)
    from the scores when they are not exact), the weighted sum <= L u, the value and output
    projections (D + v) u, all times A_v, the largest absolute sum along the value path. MLP:
    (D + W + 2) u times the largest absolute sum |W_out|^T(|W_in|^T m + |b_in|) + |b_out|,
    with m the bound on every residual entry (:func:`magnitudes`). ``layers`` are the numpy
    (attention, MLP) weights of :func:`construction.weights.layer_weights`.
    """
    mag, u = magnitudes(spec), unit_roundoff
    score_terms = 0.0 if scores_exact(spec) else 2 * spec.qk_dim * spec.beta * (spec.code_bits + 1)
    out = [0.0 if spec.discrete else float(u / 2 * mag[spec.residual["token"]].max())]
    for attn, mlp in layers:
        value_abs = np.einsum("dhv,d->hv", np.abs(attn["value"]), mag)
        a_attn = np.einsum("hvd,hv->d", np.abs(attn["out"]), value_abs).max()
        attn_factor = 2 * layout.length + spec.width + spec.vocab_size + 4 + score_terms
        hidden = np.abs(mlp["w_in"]).T @ mag + np.abs(mlp["b_in"])
        a_mlp = (np.abs(mlp["w_out"]).T @ hidden + np.abs(mlp["b_out"])).max()
        mlp_factor = spec.width + mlp["w_in"].shape[1] + 2
        out.append(float(u * (attn_factor * a_attn + mlp_factor * a_mlp + 2 * mag.max())))
    return out


def compose(spec: ConstructionSpec, n_examples: int, rounding: list[float] | None = None) -> Bounds:
    """The composed bounds for prompts of ``n_examples`` examples (exact arithmetic when
    ``rounding`` is None, else with the per-layer allowances added where each layer writes)."""
    layout = Layout(spec.example_len, n_examples)
    task_leak, avg_leak = head_leaks(spec, layout)
    r = rounding or [0.0] * (NUM_LAYERS + 1)
    R = spec.value_bounds
    diam = 2.0 * R.max() if not spec.discrete else 1.0  # value spread a leak can move an entry by
    e = {"token": r[0]}
    table_norm = max(float(np.abs(t.matrix).sum(axis=1).max()) for t in spec.tasks)  # |T_k dx| <= this |dx|
    e["G"] = task_leak * diam + table_norm * e["token"] + r[1]
    lip_error = 1.0 if spec.discrete else float(spec.vocab_size)  # |dE| <= |dG|_inf (disc.), |dx|_1 + |dG|_1
    e["E"] = lip_error * (e["G"] + e["token"]) + r[2]
    e["C"] = e["E"] / spec.delta + r[3]
    e["S"] = e["C"] + avg_leak + r[4]
    e["Q"] = task_leak * diam + table_norm * e["token"] + r[5]
    if spec.discrete:
        prod_err = 0.0
        e["OUT"] = spec.num_tasks * (e["S"] + e["Q"]) + r[6]
    else:  # the product spline is 2R-Lipschitz in s and 2-Lipschitz in q on its domain
        prod_err = float(sum(piecewise.product_error(b, spec.product_pieces) for b in R))
        e["OUT"] = float(sum(2 * b * e["S"] + 2 * e["Q"] for b in R)) + prod_err + r[6]
    log_err = 0.0
    if spec.discrete:
        lip = piecewise.log_lipschitz(spec.log_floor, spec.log_ceiling, spec.log_pieces)
        e["LOGITS"] = lip * e["OUT"] + r[7]
        log_err = piecewise.log_error(spec.log_floor, spec.log_ceiling, spec.log_pieces)
    return Bounds(e, task_leak, avg_leak, prod_err, log_err)


def kl_bound(spec: ConstructionSpec, bounds: Bounds) -> float:
    """Bound on KL(y_hat/|y_hat|_1 || softmax(logits)) at the query, for prompts whose every
    example fits at least one task (so |y_hat|_1 = sum_k alpha_k >= 1).

    With logits within e_L = (LOGITS bound + log spline error) of log max(y_hat, eta): each
    support term of the KL is at most 2 e_L + log(1 + (V - 1) eta).
    """
    if not spec.discrete:
        raise ValueError("the KL bound concerns the discrete regime's readout")
    e_l = bounds.blocks["LOGITS"] + bounds.log_spline_error
    return 2.0 * e_l + math.log1p((spec.vocab_size - 1) * spec.log_floor)
