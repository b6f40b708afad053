"""Lemmas 1-6 (docs/theory.md section 5): the measured value stays within its bound over
hypothesis-generated configurations, and the checks fail when the claim is false."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from construction import bounds as cb
from construction import piecewise
from proofs_check import lemmas
from proofs_check.results import LemmaResult, within

finite = dict(allow_nan=False, allow_infinity=False)


@settings(deadline=None)
@given(
    st.integers(1, 400).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))),
    st.floats(0.05, 60.0, **finite),
    st.floats(0.1, 3.0, **finite),
    st.integers(0, 2**16),
)
def test_softmax_leak_within_lemma1(sizes, beta, gap, seed):
    n_visible, n_target = sizes
    r = lemmas.softmax_hard_attention(n_visible, n_target, beta, gap, trials=64, seed=seed)
    assert r.holds, r
    assert r.measured <= r.bound * (1 + 1e-9)
    # the adversarial rows make the bound tight: it is the true worst case, not a loose estimate
    assert r.measured >= r.bound * (1 - 1e-9)


def test_softmax_leak_exceeds_claim_at_a_smaller_gap():
    """A checker that cannot fail is worthless: scores only half the claimed gap apart leak
    more than lemma 1's bound for the claimed gap."""
    scores = np.array([[0.0] + [-0.5] * 9])
    target = np.zeros(10, bool)
    target[0] = True
    real = lemmas.softmax_leak(scores, target, 30.0)[0]
    assert not within(real, float(cb.leaked_mass(10, 1, 30.0, 1.0)))


@settings(deadline=None)
@given(st.integers(1, 5000))
def test_binary_code_gap_is_exactly_two(max_examples):
    r = lemmas.binary_code_gap(max_examples)
    assert r.holds and r.measured == 2.0 and r.relation == "=="


@settings(deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**16))
def test_relu_identities(vocab_size, seed):
    r = lemmas.relu_identities(vocab_size=vocab_size, samples=500, seed=seed)
    assert r.holds, r.details
    assert r.details[0][1] == 0.0  # |a| = ReLU(a) + ReLU(-a) is exact in floating point


@settings(deadline=None)
@given(st.floats(0.01, 10.0, **finite), st.floats(0.0, 0.5, **finite), st.integers(0, 2**16))
def test_indicator_exact_under_margin(delta, fraction, seed):
    r = lemmas.indicator_exactness(delta, perturbation=fraction * delta, samples=200, seed=seed)
    assert r.holds, r
    if fraction == 0:
        assert r.measured == 0.0  # exact: 1 on fits, 0 on misses by the margin, 0 off labels


@settings(deadline=None)
@given(
    st.integers(1, 200), st.integers(2, 6), st.floats(0.5, 50.0, **finite), st.floats(0.0, 0.3, **finite),
    st.integers(0, 2**16),
)
def test_averaging_error_within_lemma5(m, n, beta, eps, seed):
    r = lemmas.averaging_error(m, n, beta, eps, trials=32, seed=seed)
    assert r.holds, r
    assert r.measured >= r.bound * (1 - 1e-6) - 1e-15  # tight: the adversarial case attains it


@settings(deadline=None)
@given(st.floats(0.05, 10.0, **finite), st.integers(1, 300))
def test_product_spline_within_lemma6(bound, pieces):
    r = lemmas.product_approximation(bound, pieces, grid=61)
    assert r.holds, r


@settings(deadline=None)
@given(st.floats(1e-6, 0.5, **finite), st.floats(1.0, 20.0, **finite), st.integers(1, 300))
def test_log_spline_within_lemma6(floor, ratio_to_one, pieces):
    ceiling = max(1.0, floor * 2) * ratio_to_one
    r = lemmas.log_approximation(floor, ceiling, pieces, grid=2001)
    assert r.holds, r
    assert r.measured >= 0.9 * r.bound  # the per-piece worst points attain it


def test_spline_errors_shrink_like_one_over_pieces_squared():
    product = [piecewise.product_error(1.0, n) for n in (8, 16, 32, 64)]
    log = [piecewise.log_error(1e-4, 1.0, n) for n in (64, 128, 256)]
    assert all(math.isclose(a / b, 4.0, rel_tol=1e-9) for a, b in zip(product, product[1:]))
    assert all(3.5 < a / b < 4.5 for a, b in zip(log, log[1:]))
    measured = [lemmas.product_approximation(1.0, n, grid=101).measured for n in (8, 16, 32)]
    assert measured[0] > measured[1] > measured[2]


def test_results_are_small_frozen_records():
    r = lemmas.binary_code_gap(4)
    assert isinstance(r, LemmaResult)
    d = r.to_dict()
    assert {"lemma", "config", "bound", "measured", "holds", "relation"} <= set(d)
    try:
        r.holds = False  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("LemmaResult must be frozen")
