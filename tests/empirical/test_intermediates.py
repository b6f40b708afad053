"""One intermediates contract for every model: the constructed and trained transformer and
the real LLMs name their activations alike, and ``capture`` / ``edits`` mean the same."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from construction import construct, default_tasks, run, sample_prompts
from construction.primitives import activation_names, apply_rope, rope_tables
from empirical.llm import model_from_params
from tests.tiny_llm import random_params, tiny_config


@pytest.fixture(scope="module")
def llm():
    cfg = tiny_config()
    return model_from_params(cfg, random_params(cfg))


@pytest.fixture(scope="module")
def constructed():
    return construct(default_tasks(), vocab_size=10, example_len=5, max_examples=8)


def test_every_model_names_its_activations_alike(llm, constructed):
    _, lcap = llm.logits(np.arange(1, 9), capture=lambda name: True)
    assert set(lcap) == set(activation_names(llm.config.n_layers))
    tokens = sample_prompts(0, default_tasks(), [1 / 3] * 3, n_examples=4, batch=2, example_len=5).tokens
    _, ccap = jax.jit(lambda p, t: run(constructed.config, p, t, capture=lambda name: True))(constructed.params, tokens)
    no_mlp = {f"blocks.{l}.mlp.hidden" for l, width in enumerate(constructed.config.mlp_dims) if not width}
    assert no_mlp and set(ccap) == set(activation_names(7)) - no_mlp  # attention-only layers have no hidden units
    assert lcap["blocks.0.attn.pattern"].shape[-2:] == (8, 8) and ccap["blocks.0.attn.pattern"].ndim == 4


def test_an_llm_edit_is_a_patch_and_propagates_downstream(llm):
    ids = [3, 17, 40, 41, 9, 12]
    vec = np.random.default_rng(0).standard_normal(llm.config.d_model).astype(np.float32)
    for layer in range(llm.config.n_layers):
        edited, cap = llm.logits(np.array(ids), capture=[f"blocks.{layer}.resid_post"],
                                 edits={f"blocks.{layer}.resid_post": lambda x: x.at[:, -1].set(vec)})
        _, patched = llm.patch_last([ids], layer + 1, vec)
        np.testing.assert_array_equal(cap[f"blocks.{layer}.resid_post"][-1], vec)  # captured after the edit
        logp = jax.nn.log_softmax(edited[-1])
        np.testing.assert_allclose(logp, patched[0], atol=2e-5)  # the same as the scanned patch
    clean = llm.logits(np.array(ids))
    np.testing.assert_array_equal(edited[:-1], clean[:-1])  # causal: earlier positions untouched
    assert np.abs(edited[-1] - clean[-1]).max() > 1e-3


def test_edits_of_every_kind_reach_the_output(llm):
    ids = np.array([5, 6, 7, 8])
    clean = llm.logits(ids)
    for kind in ("attn.out", "mlp.out", "mlp.hidden", "resid_mid"):
        out = llm.logits(ids, edits={f"blocks.1.{kind}": lambda x: 0.0 * x})
        assert np.abs(out - clean).max() > 1e-4, kind
    zero = llm.logits(ids, edits={"logits": lambda x: x * 0.0})
    assert np.abs(zero).max() == 0
    with pytest.raises(ValueError, match="unknown activation names"):
        llm.logits(ids, edits={"blocks.9.resid_post": lambda x: x})


def test_one_rope_for_every_model():
    """The shared rotation is orthogonal per pair and relative: <R(p)q, R(p+d)k> depends on d only."""
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 16)).astype(np.float32)
    dots = []
    for p in (0, 5, 40):
        cos, sin = rope_tables(np.array([p, p + 3]), 16, 10000.0)
        rq, rk = np.asarray(apply_rope(np.stack([q, k]), cos, sin))
        np.testing.assert_allclose(np.linalg.norm(rq), np.linalg.norm(q), rtol=1e-5)
        dots.append(float(rq @ rk))
    np.testing.assert_allclose(dots, dots[0], rtol=1e-4)
