"""Parity of our Qwen3 decoder (``family="qwen3"``, one variant file in
:mod:`empirical.llm.architectures`) with PyTorch ``transformers``' ``Qwen3ForCausalLM``.

Tiny random Qwen3 models (grouped KV heads, untied and tied heads) are loaded by ours from a
Hugging Face safetensors folder and from a GGUF file of llama.cpp's ``qwen3`` layout (Q/K
unpermuted, the per-head norms as ``attn_q_norm`` / ``attn_k_norm``), which transformers'
own GGUF loader reads back to exactly the reference's weights: float32 logits within the
float32 rounding bound of :func:`tests.tiny_llm.tolerance` (the one the Llama and Qwen2
parity tests use). A control shows the bound is tight enough to see the query/key norms:
the same weights run without them miss it by orders of magnitude. The KV-cached scoring
path must equal full forward passes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from empirical.llm import load_model, model_from_params  # noqa: E402
from tests.tiny_llm import (  # noqa: E402
    check_cached_scoring, params_of_torch, precise_logits, reference_logits, save_hf_folder, tiny_config,
    tiny_spec, tolerance, torch_model,
)

VARIANTS = {
    "untied": dict(tie_embeddings=False),
    "tied-mqa": dict(tie_embeddings=True, n_kv_heads=1, rope_theta=1_000_000.0),
}


def _reference(variant: str):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    cfg = tiny_config(family="qwen3", **VARIANTS[variant])
    model = torch_model(cfg, seed=2)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert "model.layers.0.self_attn.q_norm.weight" in model.state_dict()
    assert "model.layers.0.self_attn.q_proj.bias" not in model.state_dict()
    ids, ref = reference_logits(model, cfg.vocab_size)
    return cfg, model, ids, ref


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hf_folder_matches_transformers(variant, tmp_path):
    cfg, model, ids, ref = _reference(variant)
    save_hf_folder(tmp_path, model)
    m = load_model(tmp_path)
    assert m.config == cfg.replace(rms_eps=m.config.rms_eps)
    assert m.config.family == "qwen3" and m.config.arch.qk_norm and not m.config.qkv_bias
    diff, tol = np.abs(precise_logits(m, ids) - ref).max(), tolerance(cfg, ids.shape[-1], ref)
    assert diff < tol, f"{variant}: max |logit diff| {diff:.2e} (tolerance {tol:.1e})"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gguf_matches_transformers(variant, tmp_path):
    """Our GGUF writer's qwen3 file: our loader gives the reference's logits, and transformers'
    GGUF loader reads exactly the reference's weights from it."""
    import torch
    from transformers import AutoModelForCausalLM

    from empirical.llm.gguf_io import write_gguf
    from empirical.llm.weights import GGUFFile

    cfg, model, ids, ref = _reference(variant)
    path = write_gguf(tmp_path / "m.gguf", cfg, params_of_torch(cfg, model), tokenizer=tiny_spec())
    stored = {t.name: np.asarray(t.data) for t in GGUFFile(path).tensors}
    sd = model.state_dict()
    np.testing.assert_array_equal(stored["blk.1.attn_k_norm.weight"], sd["model.layers.1.self_attn.k_norm.weight"])
    np.testing.assert_array_equal(stored["blk.0.attn_q.weight"], sd["model.layers.0.self_attn.q_proj.weight"])
    m = load_model(path)
    assert m.config.family == "qwen3" and m.config.tie_embeddings == cfg.tie_embeddings
    diff, tol = np.abs(precise_logits(m, ids) - ref).max(), tolerance(cfg, ids.shape[-1], ref)
    assert diff < tol, f"{variant} GGUF: max |logit diff| {diff:.2e} (tolerance {tol:.1e})"
    # transformers' GGUF config reader ignores qwen3's key_length (it assumes head_dim 128):
    # the tensors come from the file, the sizes from the reference's config
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="m.gguf", dtype=torch.float32,
                                                  config=model.config).eval()
    assert type(theirs).__name__ == "Qwen3ForCausalLM"
    assert set(theirs.state_dict()) == set(sd)
    for name, w in theirs.state_dict().items():
        np.testing.assert_array_equal(w.numpy(), sd[name].numpy(), err_msg=f"{variant}: {name}")


def test_tolerance_sees_the_query_key_norms():
    """The same weights without the per-head query/key norms (run as a Llama) miss the
    reference by far more than the tolerance: the parity above can fail."""
    cfg, model, ids, ref = _reference("untied")
    params = params_of_torch(cfg, model)
    layers = {k: v for k, v in params["layers"].items() if k not in ("q_norm", "k_norm")}
    plain = model_from_params(cfg.replace(family="llama"), {**params, "layers": layers})
    diff, tol = np.abs(precise_logits(plain, ids) - ref).max(), tolerance(cfg, ids.shape[-1], ref)
    assert diff > 100 * tol, f"without q/k norms: max |logit diff| {diff:.2e} (tolerance {tol:.1e})"


def test_kv_cache_scoring_equals_full_forward(tmp_path):
    """Prefix pass + cached continuations (the probe's scoring) = one full forward pass."""
    cfg, model, ids, _ = _reference("tied-mqa")
    check_cached_scoring(model_from_params(cfg, params_of_torch(cfg, model)), ids[0])
