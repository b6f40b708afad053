"""The one Model interface (empirical.models): the construction's transformer (FlaxModel, with
constructed or learned weights) and a real LLM (empirical.llm.loading.LLM) both satisfy it,
and its batched readouts equal what a plain forward pass gives."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from construction import default_task_set, sample_prompts
from empirical.models import FlaxModel, Model, layer_name, residual_names

TS = default_task_set()


def _prompts(n: int, n_examples: int, seed: int = 0) -> np.ndarray:
    return sample_prompts(np.random.default_rng(seed), TS.tasks, [0.4, 0.3, 0.3], n_examples=n_examples, batch=n,
                          vocab_size=TS.vocab_size, example_len=TS.example_len).tokens


@pytest.fixture(scope="module")
def flax_models():
    """The constructed model and the shipped ``lookup`` model, in blocks of 3 rows (so that
    7 prompts take three calls, the last one padded)."""
    trained, _ = FlaxModel.trained("lookup", batch=3)
    return {"constructed": FlaxModel.constructed(TS, bits=5, batch=3), "lookup": trained}


@pytest.fixture(scope="module")
def llm():
    from empirical.llm import model_from_params
    from tests.tiny_llm import random_params, tiny_config

    cfg = tiny_config(n_layers=2)
    return model_from_params(cfg, random_params(cfg, std=0.2))


def _softmax(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_both_kinds_of_model_satisfy_the_protocol(flax_models, llm):
    for m in (*flax_models.values(), llm):
        assert isinstance(m, Model)
        assert isinstance(m.name, str) and m.name
    m = flax_models["lookup"]
    assert (m.num_layers, m.d_model, m.vocab_size) == (m.config.num_layers, m.config.d_model, m.config.output_dim)
    assert (llm.num_layers, llm.d_model, llm.vocab_size) == (llm.config.n_layers, llm.config.d_model,
                                                            llm.config.vocab_size)
    assert not isinstance(object(), Model)


@pytest.mark.parametrize("name", ["constructed", "lookup"])
def test_flax_last_probs_and_residuals_are_the_forward_pass_at_the_last_token(flax_models, name):
    m = flax_models[name]
    tokens = _prompts(7, 6)
    logits, cap = m.logits(tokens, capture=residual_names(m.num_layers))
    probs = m.last_probs(tokens)
    assert probs.shape == (7, m.vocab_size) and probs.dtype == np.float64
    last, _ = m.logits(tokens, last_only=True)
    np.testing.assert_allclose(probs, _softmax(np.asarray(last)[:, -1]), atol=1e-6)
    # the full pass agrees up to float32 rounding (the construction's log spline magnifies it)
    np.testing.assert_allclose(probs, _softmax(np.asarray(logits)[:, -1]), atol=1e-3 if name == "constructed" else 1e-5)
    res = m.last_residuals(tokens)
    assert res.shape == (m.num_layers + 1, 7, m.d_model)
    for l in range(m.num_layers + 1):
        np.testing.assert_allclose(res[l], np.asarray(cap[layer_name(l)])[:, -1], atol=1e-4)
    # one prompt alone reads the same as in a batch (the padding of a block changes nothing)
    np.testing.assert_allclose(m.last_probs(tokens[5:6]), probs[5:6], atol=1e-5)


def test_llm_last_probs_of_ragged_prompts_equal_each_prompt_alone(llm):
    rng = np.random.default_rng(1)
    prompts = [list(rng.integers(0, llm.vocab_size, size=n)) for n in (3, 11, 6, 1)]
    probs = llm.last_probs(prompts)
    assert probs.shape == (4, llm.vocab_size) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    for i, p in enumerate(prompts):
        alone = np.asarray(llm.logits(np.asarray(p)))[-1]
        np.testing.assert_allclose(probs[i], _softmax(alone), atol=1e-5)
        np.testing.assert_allclose(probs[i], llm.last_probs([p])[0], atol=1e-5)
        np.testing.assert_allclose(np.asarray(llm.logits(np.asarray(p), last_only=True))[0], alone, atol=1e-5)
    # equal-length prompts may come as one [P, L] array
    arr = rng.integers(0, llm.vocab_size, size=(3, 5))
    np.testing.assert_allclose(llm.last_probs(arr), llm.last_probs([list(r) for r in arr]), atol=1e-12)


def test_llm_last_residuals_equal_the_captured_residuals(llm):
    rng = np.random.default_rng(2)
    prompts = [list(rng.integers(0, llm.vocab_size, size=n)) for n in (4, 9)]
    res = llm.last_residuals(prompts)
    assert res.shape == (llm.num_layers + 1, 2, llm.d_model)
    for i, p in enumerate(prompts):
        _, cap = llm.logits(np.asarray(p), capture=residual_names(llm.num_layers))
        for l in range(llm.num_layers + 1):
            np.testing.assert_allclose(res[l, i], np.asarray(cap[layer_name(l)])[-1], atol=1e-4)


def test_patching_the_own_residual_or_nothing_changes_nothing(flax_models, llm):
    tokens = _prompts(5, 4, seed=3)
    rng = np.random.default_rng(3)
    ragged = [list(rng.integers(0, llm.vocab_size, size=n)) for n in (5, 2, 8)]
    for m, prompts in ((flax_models["lookup"], tokens), (llm, ragged)):
        res = m.last_residuals(prompts)
        junk = np.full(m.d_model, 3.0)
        for layer in (0, m.num_layers):
            clean, patched = m.patch_probs(prompts, layer, res[layer])
            np.testing.assert_allclose(clean, m.last_probs(prompts), atol=1e-5)
            np.testing.assert_allclose(patched, clean, atol=1e-4)
            # a junk vector where the mask is empty: nothing is replaced
            _, masked = m.patch_probs(prompts, layer, junk, np.zeros(m.d_model))
            np.testing.assert_allclose(masked, clean, atol=1e-4)
        _, changed = m.patch_probs(prompts, 1, junk)
        assert np.abs(changed - clean).max() > 1e-3
        with pytest.raises(ValueError, match="layer must lie"):
            m.patch_probs(prompts, m.num_layers + 1, junk)
        with pytest.raises(ValueError, match="vectors must be"):
            m.patch_probs(prompts, 1, np.zeros(3))


def test_bad_prompts_are_one_clear_error(flax_models, llm):
    m = flax_models["lookup"]
    good = _prompts(2, 3)
    for bad, match in ((good.astype(np.float32), "integer"), (good[0], r"\[P, L\]"), (good[None], r"\[P, L\]"),
                       ([list(good[0]), list(good[1][:-1])], "one length")):
        for call in (m.last_probs, m.last_residuals):
            with pytest.raises(ValueError, match=match):
                call(bad)
    for bad in (np.zeros((2, 3), np.float32), [[0.5, 1.0]], np.zeros(4, np.int32), np.zeros((1, 2, 3), np.int32),
                [], [[]], [[1, llm.vocab_size]]):
        for call in (llm.last_probs, llm.last_residuals):
            with pytest.raises(ValueError):
                call(bad)


def test_a_constructed_model_reads_as_its_own_probabilities():
    """FlaxModel.of a construction with batch None: ``last_probs`` is ``probabilities``, bit for bit."""
    from construction import construct

    c = construct(TS.tasks, vocab_size=TS.vocab_size, example_len=TS.example_len, max_examples=16)
    tokens = _prompts(9, 5, seed=4)
    np.testing.assert_array_equal(FlaxModel.of(c).last_probs(tokens), np.asarray(c.probabilities(tokens), np.float64))
    assert jax.numpy.allclose(FlaxModel.of(c, batch=4).last_probs(tokens), c.probabilities(tokens), atol=1e-5)
