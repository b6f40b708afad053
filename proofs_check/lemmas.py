"""Lemmas 1-6 of docs/theory.md section 5, each as a function that measures the claim in float64.

Every function takes a configuration, computes the analytic bound with the construction's
own formula (:mod:`construction.bounds`, :mod:`construction.piecewise`,
:mod:`construction.layout`), measures the real quantity independently on adversarial inputs
(the cases that make the bound tight) and random ones, and returns a :class:`LemmaResult`.
"""

from __future__ import annotations

import math

import numpy as np

from construction import bounds as cb
from construction import piecewise
from construction import weights as cw
from construction.layout import Layout, binary_code, code_bits
from construction.spec import ConstructionSpec
from construction.tasks import continuous_task
from proofs_check.results import LemmaResult, within

EPS64 = float(np.finfo(np.float64).eps)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# ----- lemma 1 -----------------------------------------------------------------------------
def softmax_leak(scores: np.ndarray, target: np.ndarray, beta: float) -> np.ndarray:
    """The real softmax mass off ``target`` for each row of ``scores`` (float64, computed as
    the off-target sum itself so tiny leaks keep their relative precision)."""
    z = beta * (scores - scores.max(axis=-1, keepdims=True))
    w = np.exp(z)
    return np.where(target, 0.0, w).sum(-1) / w.sum(-1)


def softmax_hard_attention(
    n_visible: int, n_target: int, beta: float, gap: float = cb.SCORE_GAP, *, trials: int = 512, seed=0
) -> LemmaResult:
    """Lemma 1: with every other score at least ``gap`` below every target score, the softmax
    mass off the target set is at most the construction's ``leaked_mass`` (which is itself at
    most docs/theory.md's (L - |S|) e^{-beta gap} / |S|).

    Adversarial rows (all targets tied, all others exactly ``gap`` below, at several offsets)
    attain the bound; random rows spread the targets above and the others further below.
    """
    if not 1 <= n_target <= n_visible:
        raise ValueError(f"need 1 <= n_target <= n_visible, got {n_target}, {n_visible}")
    rng = _rng(seed)
    N, S = int(n_visible), int(n_target)
    bound = float(cb.leaked_mass(N, S, beta, gap))
    theory = (N - S) * math.exp(-beta * gap) / S
    target = np.zeros(N, bool)
    target[:S] = True
    rows = []
    for offset in (0.0, -7.5, 1e3):  # softmax is shift invariant: the leak must not change
        rows.append(np.where(target, offset, offset - gap))
    spread = rng.uniform(0.0, 2.0, size=(trials, N))
    below = gap + rng.exponential(1.0, size=(trials, N)) * rng.integers(0, 2, size=(trials, N))
    tops = np.where(target, spread, 0.0)
    floor = np.where(target, spread, np.inf).min(-1, keepdims=True)
    rows.append(np.where(target, tops, floor - below))
    scores = np.concatenate([np.atleast_2d(r) for r in rows])
    perm = rng.permutation(N)  # the target's place in the row must not matter either
    leak = softmax_leak(scores[:, perm], target[perm], beta)
    measured = float(leak.max())
    holds = within(measured, bound) and bound <= theory * (1 + 1e-12)
    config = {"n_visible": N, "n_target": S, "beta": float(beta), "gap": float(gap)}
    details = (("leaked_mass <= THEORY (L-|S|)e^{-beta gap}/|S|", bound, theory, bound <= theory * (1 + 1e-12)),)
    return LemmaResult("1 softmax as hard attention", config, bound, measured, holds, "<=", details)


# ----- lemma 2 -----------------------------------------------------------------------------
def binary_code_gap(max_examples: int) -> LemmaResult:
    """Lemma 2: the +-1 codes of examples 0..M score ``bits`` with themselves and at most
    ``bits - 2`` with any other; the gap is exactly 2 (attained by codes one bit apart)."""
    bits = code_bits(max_examples)
    codes = binary_code(np.arange(max_examples + 1), bits)
    gram = codes @ codes.T
    own = np.diag(gram)
    off = ~np.eye(len(codes), dtype=bool)
    gap = float((own[:, None] - gram)[off].min())
    holds = bool(np.all(own == bits)) and gap == 2.0
    details = (("own score == bits", float(own.min()), float(bits), bool(np.all(own == bits))),)
    return LemmaResult(
        "2 binary example code gap", {"max_examples": int(max_examples), "bits": bits}, 2.0, gap, holds, "==", details
    )


# ----- lemma 3 -----------------------------------------------------------------------------
def relu_identities(*, vocab_size: int = 8, samples: int = 20000, seed=0) -> LemmaResult:
    """Lemma 3: |a| = ReLU(a) + ReLU(-a); for one-hot u and any v in [0, 1]^V (one-hot
    included), <u, v> = sum_j ReLU(u_j + v_j - 1); for s in [0, 1], q in {0, 1}:
    s q = ReLU(s + q - 1). Exact up to the one rounding of ``s + 1`` (<= eps64)."""
    rng = _rng(seed)
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    tiny, huge = np.finfo(np.float64).tiny, np.finfo(np.float64).max
    edges = np.array([0.0, -0.0, 5e-324, -5e-324, tiny, -tiny, 1.0, -1.0, huge, -huge, 0.5, -0.5])
    a = np.concatenate([edges, rng.standard_normal(samples) * 10.0 ** rng.uniform(-300, 300, samples)])
    abs_err = float(np.abs(relu(a) + relu(-a) - np.abs(a)).max())

    V = vocab_size
    eye = np.eye(V)
    u = eye[rng.integers(0, V, samples)]
    v = np.concatenate([eye, rng.uniform(0, 1, (samples - V, V)), np.ones((1, V)), np.zeros((1, V))])[:samples]
    v = np.concatenate([v, eye])  # every one-hot pair below
    u = np.concatenate([u, eye[rng.integers(0, V, V)]])
    pairs_u, pairs_v = np.repeat(eye, V, 0), np.tile(eye, (V, 1))
    u, v = np.concatenate([u, pairs_u]), np.concatenate([v, pairs_v])
    inner_err = float(np.abs((u * v).sum(-1) - relu(u + v - 1.0).sum(-1)).max())

    s = np.concatenate([[0.0, 1.0, 0.5, EPS64, 1 - EPS64, 1e-300, 1 / 3], rng.uniform(0, 1, samples)])
    prod_err = 0.0
    for q in (0.0, 1.0):
        prod_err = max(prod_err, float(np.abs(relu(s + q - 1.0) - s * q).max()))
    details = (
        ("|a| = ReLU(a) + ReLU(-a)", abs_err, 0.0, abs_err == 0.0),
        ("<u,v> = sum ReLU(u+v-1)", inner_err, EPS64, within(inner_err, EPS64)),
        ("s q = ReLU(s+q-1)", prod_err, EPS64, within(prod_err, EPS64)),
    )
    measured = max(abs_err, inner_err, prod_err)
    holds = all(d[3] for d in details)
    return LemmaResult("3 ReLU identities", {"vocab_size": V, "samples": samples}, EPS64, measured, holds, "<=", details)


# ----- lemma 4 -----------------------------------------------------------------------------
def _indicator_spec(delta: float) -> ConstructionSpec:
    tasks = (continuous_task(0, np.eye(2)), continuous_task(0, -np.eye(2)))
    return ConstructionSpec(tasks=tasks, vocab_size=2, example_len=2, max_examples=1, regime="continuous", delta=delta)


def indicator_exactness(
    delta: float = 1.0, *, perturbation: float = 0.0, samples: int = 4000, seed=0, model=None
) -> LemmaResult:
    """Lemma 4: the indicator MLP gives C_k = 1 exactly when the example fits task k (E_k = 0)
    and C_k = 0 exactly when it misses by the margin (E_k >= delta), and 0 off the labels.
    With E_k known only within ``perturbation``, |C_k - 1{fits}| <= perturbation / delta.

    The MLP evaluated is the built one: ``model.params`` (layer 3) when a model is given (so a
    broken model is caught), else :func:`construction.weights.indicator_mlp` for ``delta``.
    """
    rng = _rng(seed)
    if model is not None:
        spec = model.spec
        mlp = {k: np.asarray(v, np.float64) for k, v in model.params["block_2"]["mlp"].items()}
    else:
        spec = _indicator_spec(delta)
        mlp = cw.indicator_mlp(spec)
    delta, eta = float(spec.delta), float(perturbation)
    res, K = spec.residual, spec.num_tasks
    if spec.discrete:  # E = 1 - <x, G> lies in [0, 1]; a miss is exactly 1 = delta
        misses = np.array([delta])
    else:
        misses = delta * np.concatenate([[1.0, 1.0 + EPS64, 2.0, 1e6], 1.0 + rng.exponential(1.0, samples)])
    fits = np.zeros(1)
    base = np.concatenate([fits, misses])
    fit = np.concatenate([np.ones(1, bool), np.zeros(len(misses), bool)])
    # every base value moved by 0 and +-eta (the adversarial shifts), and once at random
    shifts = [np.zeros(len(base))]
    if eta > 0:
        shifts += [np.full(len(base), eta), np.full(len(base), -eta), rng.uniform(-eta, eta, len(base))]
    E = np.concatenate([base + s for s in shifts])
    is_fit = np.tile(fit, len(shifts))
    worst = 0.0
    for k in range(K):
        for label in (0.0, 1.0):
            r = np.zeros((len(E), res.dim))
            r[:, res["one"]] = 1.0
            r[:, res["is_label"]] = label
            r[:, res[f"E_{k}"]] = E[:, None]
            c = (np.maximum(r @ mlp["w_in"] + mlp["b_in"], 0.0) @ mlp["w_out"] + mlp["b_out"])[:, res[f"C_{k}"]][:, 0]
            want = is_fit & (label == 1.0)
            if label == 0.0:  # off the labels E >= -eta: C <= eta / delta
                keep = E >= -eta
                c, want = c[keep], want[keep]
            worst = max(worst, float(np.abs(c - want).max()))
    bound = eta / delta
    config = {"delta": delta, "perturbation": eta, "from_model": model is not None, "num_tasks": K}
    return LemmaResult("4 indicator exact under margin", config, bound, worst, within(worst, bound, atol=4 * EPS64))


# ----- lemma 5 -----------------------------------------------------------------------------
def averaging_error(
    n_examples: int, example_len: int, beta: float, per_position_error: float, *, trials: int = 512, seed=0
) -> LemmaResult:
    """Lemma 5: the averaging head at the query, attending with the real softmax of scores
    beta * is_label (a gap of 1), returns alpha within per_position_error + lambda, where
    lambda is lemma 1's leak (the construction's bound ``e_S = e_C + averaging_leak``).

    Label values are the true 0/1 indicators moved by up to ``per_position_error``; the other
    positions hold anything in [-eps, 1 + eps]. The adversarial cases (all indicators 0 moved
    up with the rest at 1 + eps, or all 1 moved down with the rest at -eps) attain the bound.
    """
    rng = _rng(seed)
    layout = Layout(example_len, n_examples)
    L, m, eps = layout.length, n_examples, float(per_position_error)
    lam = float(cb.leaked_mass(L, m, beta))
    bound = eps + lam
    is_label = layout.is_label
    weights = np.exp(beta * (is_label - 1.0))
    weights /= weights.sum()
    truth = rng.integers(0, 2, size=(trials, m)).astype(np.float64)
    truth = np.concatenate([np.zeros((1, m)), np.ones((1, m)), truth])
    c = np.zeros((len(truth), L))
    noise = rng.uniform(-eps, eps, size=(len(truth), m))
    noise[0], noise[1] = eps, -eps
    c[:, is_label] = truth + noise
    other = rng.uniform(-eps, 1 + eps, size=(len(truth), L - m))
    other[0], other[1] = 1 + eps, -eps
    c[:, ~is_label] = other
    s = c @ weights
    measured = float(np.abs(s - truth.mean(-1)).max())
    config = {"n_examples": m, "example_len": example_len, "beta": float(beta), "per_position_error": eps}
    details = (("averaging leak lambda", lam, lam, True),)
    atol = 2 * (L + m + 2) * EPS64 * (1 + eps)  # the float64 dot product and mean themselves (L u sum|a c|)
    return LemmaResult("5 averaging error", config, bound, measured, within(measured, bound, atol=atol), "<=", details)


# ----- lemma 6 -----------------------------------------------------------------------------
def product_approximation(bound: float, pieces: int, *, grid: int = 401) -> LemmaResult:
    """Lemma 6 (product): |product(s, q) - s q| <= (R/4)(h^2/4) for s in [0, 1], |q| <= R, with
    squares interpolated on [-1, 2] by ``pieces`` pieces of width h. Measured on a dense grid
    plus the worst points (s + q/R at a piece's midpoint and s - q/R at a knot)."""
    R, N = float(bound), int(pieces)
    s = np.linspace(0.0, 1.0, grid)
    q = np.linspace(-R, R, grid)
    S, Q = np.meshgrid(s, q)
    knots = np.linspace(*piecewise.SQUARE_RANGE, N + 1)
    special = np.concatenate([(knots[:-1] + knots[1:]) / 2, knots])
    A, B = np.meshgrid(special, special)  # s + q/R = a (a midpoint: worst), s - q/R = b
    ws, wq = ((A + B) / 2).ravel(), (R * (A - B) / 2).ravel()
    keep = (ws >= 0) & (ws <= 1) & (np.abs(wq) <= R)
    ss, qq = np.concatenate([S.ravel(), ws[keep]]), np.concatenate([Q.ravel(), wq[keep]])
    measured = float(np.abs(piecewise.product(ss, qq, R, N) - ss * qq).max())
    analytic = piecewise.product_error(R, N)
    config = {"value_bound": R, "pieces": N}
    return LemmaResult("6 product spline", config, analytic, measured, within(measured, analytic, atol=64 * EPS64 * R))


def log_approximation(floor: float, ceiling: float, pieces: int, *, grid: int = 20001) -> LemmaResult:
    """Lemma 6 (log): |log_spline(x) - log x| <= log_error on [floor, ceiling]; measured on a
    dense geometric grid plus each piece's analytic worst point x* = (r - 1) a / ln r."""
    N = int(pieces)
    knots = np.geomspace(floor, ceiling, N + 1)
    r = knots[1:] / knots[:-1]
    worst_pts = np.where(r > 1, (r - 1) * knots[:-1] / np.log(np.where(r > 1, r, 2.0)), knots[:-1])
    x = np.concatenate([np.geomspace(floor, ceiling, grid), knots, worst_pts])
    spline = piecewise.log_spline(floor, ceiling, N)
    measured = float(np.abs(spline(x) - np.log(x)).max())
    analytic = piecewise.log_error(floor, ceiling, N)
    config = {"floor": float(floor), "ceiling": float(ceiling), "pieces": N}
    # the ReLU sum's own float64 evaluation: N terms up to |coef| (ceiling - floor) each
    atol = 2 * (N + 1) * EPS64 * (abs(spline.const) + float(np.abs(spline.coefs).sum()) * (ceiling - floor))
    return LemmaResult("6 log spline", config, analytic, measured, within(measured, analytic, atol=atol))
