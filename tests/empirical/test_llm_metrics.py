"""The Figure 2 metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.llm.metrics import collapse, kl_divergence, mean_var, other_mass, r_metric


def test_kl_uses_raw_probabilities():
    d = [0.5, 0.5]
    assert kl_divergence(d, d) == pytest.approx(0.0)
    # P sums to 0.5: KL = log 2 (the other mass counts)
    assert kl_divergence(d, [0.25, 0.25]) == pytest.approx(np.log(2))
    assert kl_divergence([1.0, 0.0], [0.5, 0.0]) == pytest.approx(np.log(2))  # D_k = 0 terms vanish
    assert np.isfinite(kl_divergence([0.5, 0.5], [0.0, 1.0]))


def test_the_sweeps_kl_is_the_prompts_shares_against_the_raw_answer_probabilities():
    """The sweep's KL at each lambda is the mean over prompts of KL(D || P), D the prompt's actual
    task shares and P the raw answer probabilities (the mass elsewhere counts), recomputed with
    kl_divergence from the per-prompt values the sweep keeps (P to 5 decimals, at least 0.5/37:
    the recomputation is good to ~1e-3)."""
    from empirical import sweep

    rng = np.random.default_rng(0)

    def probs(tokens):
        return 0.5 * rng.dirichlet(np.ones(37), size=len(tokens)) + 0.5 / 37

    res = sweep.sweep(probs, "add", [1, 4], n_prompts=20, n_examples=5, lambdas=(0.0, 0.3, 1.0), progress=False)
    for pt in res["points"]:
        pp = pt["per_prompt"]
        want = np.mean([kl_divergence([s, 1 - s], [a, b]) for s, a, b in zip(pp["share_a"], pp["p_a"], pp["p_b"])])
        assert pt["kl"]["mean"] == pytest.approx(want, abs=2e-3), pt["lambda"]
        assert want > 1.0  # P holds ~1/10 of the mass: far from D, so a KL that ignores it differs


def test_other_mass():
    assert other_mass([0.2, 0.3]) == pytest.approx(0.5)


def test_r_metric():
    lp = np.log
    answers = ["a", "b", "c"]
    # continuations: x > a > b > y > c: the 3rd largest is b -> a, b count
    cont = {"x": lp(0.3), "a": lp(0.99), "y": lp(0.05)}
    r, thr = r_metric([lp(0.2), lp(0.1), lp(0.01)], cont, answers)
    assert r == 2 and np.exp(thr) == pytest.approx(0.1)  # the answers' exact scores win over the beam's
    r, _ = r_metric([lp(0.3), lp(0.3), lp(0.3)], {}, answers)
    assert r == 3
    r, _ = r_metric([lp(0.01), lp(0.01), lp(0.01)], {"p": lp(0.5), "q": lp(0.4), "s": lp(0.3)}, answers)
    assert r == 0


def test_collapse():
    # a = [5, 6] (p 0.5 then 0.8), b = [5, 7] (0.5 then 0.1), c = [9] (0.2)
    ids = [(5, 6), (5, 7), (9,)]
    lps = [np.log([0.5, 0.8]), np.log([0.5, 0.1]), np.log([0.2])]
    c = collapse(ids, lps)
    np.testing.assert_allclose(c["first"], [0.5, 0.5, 0.2])
    np.testing.assert_allclose(c["rest"], [0.8, 0.1, 1.0])
    np.testing.assert_allclose(c["matrix"], [[0.8, 0.1, 0], [0.8, 0.1, 0], [0, 0, 1.0]])
    assert list(c["multi"]) == [True, True, False]


def test_mean_var():
    out = mean_var([[1.0, 2.0], [3.0, 4.0]])
    assert out == {"mean": [2.0, 3.0], "var": [1.0, 1.0]}
