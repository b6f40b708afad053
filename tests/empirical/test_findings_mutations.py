"""Mutation check of the findings layer, in the spirit of test_proofs_composition.py: a
deliberately broken task-vector patch, KL and within-prompt statistic are monkeypatched in,
and the tests that guard them (called here as plain functions) must fail. A test that still
passes on the broken code would not be evidence for the working code. (The same checks pass
on the working code in their own files; the cheap ones are repeated here as a baseline.)"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from empirical import models as M
from empirical import sweep
from empirical import task_vectors as TV
from empirical import within_prompt as wp
from empirical.llm import metrics
from tests.empirical import test_llm_metrics, test_scaling, test_task_vectors, test_within_prompt


def failing(*checks) -> list[str]:
    """The names of ``checks`` (no-argument calls) that fail with an AssertionError."""
    failed = []
    for check in checks:
        try:
            check()
        except AssertionError:
            failed.append(getattr(check, "__name__", repr(check)))
    return failed


def named(fn, *args):
    call = functools.partial(fn, *args)
    call.__name__ = f"{fn.__name__}{args}"
    return call


# --------------------------------------------------------------------------- task-vector patching


@pytest.fixture(scope="module")
def subjects():
    return {"constructed": M.FlaxModel.constructed(test_task_vectors.TS, bits=5),
            "lookup": M.FlaxModel.trained("lookup")[0]}


def _patch_checks(subjects):
    s = subjects["constructed"]
    return (named(test_task_vectors.check_patch_matches_an_independent_edit, subjects["lookup"]),
            named(test_task_vectors.check_patch_matches_an_independent_edit, s, TV.s_block_mask(s), (5, 4)),
            named(test_task_vectors.check_the_constructed_models_patched_readout_is_the_predicted_mixture, s))


def test_a_patch_that_does_nothing_is_caught(subjects, monkeypatch):
    real = M._clean_and_patched

    def unchanged(config, params, tokens, name, vectors, mask):  # the edit's mask is all zeros
        return real(config, params, tokens, name, vectors, mask * 0)

    monkeypatch.setattr(M, "_clean_and_patched", unchanged)
    assert len(failing(*_patch_checks(subjects))) == 3


def test_a_patch_one_layer_late_is_caught(subjects, monkeypatch):
    real = TV.patch

    def late(model, tokens, layer, vectors, mask=None):
        return real(model, tokens, min(layer + 1, model.num_layers), vectors, mask)

    monkeypatch.setattr(TV, "patch", late)
    assert failing(*_patch_checks(subjects))


# --------------------------------------------------------------------------- KL


def _kl_checks():
    return (test_llm_metrics.test_the_sweeps_kl_is_the_prompts_shares_against_the_raw_answer_probabilities,
            test_scaling.test_the_committed_study_reproduces_on_a_seeded_subset)


_raw_kl = metrics.kl_divergence


def _normalised(d, p, *, floor=1e-30):
    """A KL that renormalises the answer probabilities (the mass on other continuations is lost)."""
    p = np.maximum(np.asarray(p, np.float64), floor)
    return _raw_kl(d, p / p.sum())


def test_the_kl_checks_pass_on_the_working_code():
    assert failing(*_kl_checks()) == []


def test_a_kl_that_ignores_the_other_mass_is_caught(monkeypatch):
    monkeypatch.setattr(metrics, "kl_divergence", _normalised)  # the scaling study's per-prompt KL
    assert test_scaling.test_the_committed_study_reproduces_on_a_seeded_subset.__name__ in failing(*_kl_checks())


def test_a_sweep_kl_that_ignores_the_other_mass_is_caught(monkeypatch):
    from dataclasses import replace

    from empirical.results import MeanCI

    real = sweep._point

    def point(lam, p, prompts, fam):
        out = real(lam, p, prompts, fam)
        p_ans = np.take_along_axis(p, prompts["answers"], axis=1)
        share = (prompts["example_task"] == 0).mean(axis=1)
        return replace(out, kl=MeanCI.of([_normalised([s, 1 - s], row) for s, row in zip(share, p_ans)]))

    monkeypatch.setattr(sweep, "_point", point)
    assert failing(*_kl_checks()) == [
        test_llm_metrics.test_the_sweeps_kl_is_the_prompts_shares_against_the_raw_answer_probabilities.__name__]


def test_a_reversed_kl_is_caught(monkeypatch):
    monkeypatch.setattr(metrics, "kl_divergence", lambda d, p, floor=1e-30: _raw_kl(np.maximum(p, floor), d))
    assert failing(*_kl_checks())


# --------------------------------------------------------------------------- within-prompt statistics


def _within_checks():
    t = test_within_prompt
    return (*(named(t.test_pure_strategies_give_their_reference_values, lam) for lam in (0.1, 0.3, 0.5, 0.9)),
            t.test_a_blend_is_in_between_in_proportion, t.test_other_mass_and_many_tasks)


def test_the_within_prompt_checks_pass_on_the_working_code():
    assert failing(*_within_checks()) == []


@pytest.mark.parametrize("broken", ["largest for second", "entropy not renormalised", "several on the largest"])
def test_a_broken_within_prompt_statistic_is_caught(monkeypatch, broken):
    real = wp.per_prompt

    def per_prompt(p, threshold=wp.THRESHOLD):
        out = dict(real(p, threshold))
        p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
        top = -np.sort(-p, axis=1)
        if broken == "largest for second":
            out["second"] = top[:, 0]
        elif broken == "entropy not renormalised":
            out["entropy"] = wp._entropy_bits(p)
        else:
            out["several"] = (top[:, 0] >= threshold).astype(np.float64)
        return out

    monkeypatch.setattr(wp, "per_prompt", per_prompt)
    assert failing(*_within_checks())
