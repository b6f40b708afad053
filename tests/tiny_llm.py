"""Tiny random decoders (Llama, Qwen2, Qwen3) and tokenisers for the tests and parity checks (nothing downloaded)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from empirical.llm.config import DecoderConfig, tiny
from empirical.llm.gguf_io import BPESpec, tiny_bpe, write_gguf
from empirical.llm.weights import params_from_named

# Merges that make "->", " the", "in", digits pairs and letter pairs single tokens, so prompts
# of the task families tokenise into a mix of short and merged tokens (and " t"+"he" merges
# with a prompt's trailing space: the token-merge case).
TINY_MERGES = (("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("-", ">"), ("Ġ", "a"),
               ("a", "n"), ("e", "r"), ("o", "n"), ("Ċ", "Ċ"), ("=", "1"), ("@", "2"))


#: float32's unit roundoff.
U32 = 2.0 ** -24


def tolerance(cfg, n_tokens: int, ref: np.ndarray) -> float:
    """How far two correct float32 implementations' logits ``ref`` may lie apart. Each of the
    S = 2 + 6L sequential matmul stages (embedding and head; per layer the Q/K/V projections, the
    scores, the mix of values, the output projection, the gate/up and the down projections)
    sums up to k = max(d_model, d_ff, tokens) products in an order of its own (XLA's against
    MKL's), and the rounding differences grow like a random walk: about sqrt(S k) u relative
    to the logits' size, u = 2^-24. The largest difference over ~10^4 logits lies within ~4.5
    standard deviations; 8 leaves room for the norms and softmax that rescale errors. Tiny
    models: ~1.2e-4 (measured 2e-5 to 3e-5); SmolLM2: ~9e-3 (measured 9e-5)."""
    k = max(cfg.d_model, cfg.d_ff, n_tokens)
    return 8.0 * math.sqrt((2 + 6 * cfg.n_layers) * k) * U32 * float(np.abs(ref).max())


def tiny_spec() -> BPESpec:
    """The byte-level BPE used by the tiny test models (vocabulary of 270)."""
    return tiny_bpe(TINY_MERGES)


def tiny_config(family: str = "llama", **changes: Any) -> DecoderConfig:
    """A tiny config whose vocabulary matches :func:`tiny_spec` (d_ff a multiple of 32 so
    every weight can be quantised)."""
    base = dict(vocab_size=len(tiny_spec().tokens), d_model=32, d_ff=64, max_len=2048)
    base.update(changes)
    return tiny(family=family, **base)


def hf_config(cfg: DecoderConfig, *, rope_scaling: dict | None = None):
    """The ``transformers`` config object of ``cfg`` (the class its architecture names)."""
    import transformers

    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if rope_scaling is not None:
        rope = {"rope_theta": cfg.rope_theta, **rope_scaling}
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
                  num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                  num_key_value_heads=cfg.n_kv_heads, rms_norm_eps=cfg.rms_eps,
                  max_position_embeddings=cfg.max_len, tie_word_embeddings=cfg.tie_embeddings,
                  rope_parameters=rope)
    if cfg.family != "qwen2":  # Qwen2Config derives head_dim from the sizes
        common["head_dim"] = cfg.head_dim
    return getattr(transformers, cfg.arch.hf_classes[0])(**common)


def torch_model(cfg: DecoderConfig, *, seed: int = 0, std: float = 0.3, rope_scaling: dict | None = None):
    """A random ``transformers`` model of ``cfg`` (float32, eval mode): the reference."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hc = hf_config(cfg, rope_scaling=rope_scaling)
    model = getattr(transformers, cfg.arch.hf_classes[1])(hc).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, std)
    return model


def params_of_torch(cfg: DecoderConfig, model) -> dict:
    """Our parameter tree from a ``transformers`` model's state dict."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        sd.setdefault("lm_head.weight", sd["model.embed_tokens.weight"])
    return params_from_named(cfg, sd.__getitem__)


def save_hf_folder(folder: str | Path, model, *, tokenizer_backend=None) -> Path:
    """Write a Hugging Face folder (config.json, model.safetensors, optional tokenizer.json)."""
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer_backend is not None:
        tokenizer_backend.save(str(folder / "tokenizer.json"))
    return folder


def random_params(cfg: DecoderConfig, seed: int = 0, std: float = 0.3) -> dict:
    """Random numpy parameters of ``cfg`` (no torch needed)."""
    from empirical.llm.model import init_params
    import jax

    params = init_params(cfg, jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def draw(path, a):
        a = np.asarray(a)
        if "norm" in jax.tree_util.keystr(path):
            return (1.0 + 0.1 * rng.standard_normal(a.shape)).astype(np.float32)
        return (std * rng.standard_normal(a.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, params)


def write_tiny_gguf(path: str | Path, cfg: DecoderConfig | None = None, *, seed: int = 0,
                    qtype: str = "F32") -> Path:
    """A tiny random GGUF model with the tiny tokenizer (loads with ``load_model(path)``)."""
    cfg = cfg or tiny_config()
    return write_gguf(path, cfg, random_params(cfg, seed), tokenizer=tiny_spec(), qtype=qtype)


def precise_logits(m, ids) -> np.ndarray:
    """``m.logits(ids)`` with full-precision matrix products (the parity tests' setting)."""
    import jax

    with jax.default_matmul_precision("highest"):
        return np.asarray(m.logits(ids))


def check_cached_scoring(m, seq, atol: float = 1e-4) -> np.ndarray:
    """Prefix passes over ``seq[:15]`` and ``seq[:9]`` plus cached continuations (the probe's
    scoring) equal one full forward pass over ``seq`` (>= 30 tokens); returns the full pass's
    log-probabilities for further checks."""
    import jax

    with jax.default_matmul_precision("highest"):
        full = np.asarray(m.logits(seq))
        last, cache = m.prefix([seq[:15].tolist(), seq[:9].tolist()])
        np.testing.assert_allclose(np.asarray(last[0]), full[14], atol=atol)
        np.testing.assert_allclose(np.asarray(last[1]), full[8], atol=atol)
        cont = m.continuation_logprobs(cache, last, [0, 1], [seq[15:30], seq[9:12]])
    ref_lp = np.asarray(jax.nn.log_softmax(full, axis=-1))
    np.testing.assert_allclose(cont[0], [ref_lp[14 + j, seq[15 + j]] for j in range(15)], atol=atol)
    np.testing.assert_allclose(cont[1], [ref_lp[8 + j, seq[9 + j]] for j in range(3)], atol=atol)
    return ref_lp


def reference_logits(model, vocab_size: int, *, seed: int = 0, shape=(2, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Random token ids of ``shape`` and a ``transformers`` model's logits for them."""
    import torch

    ids = np.random.default_rng(seed).integers(0, vocab_size, shape)
    with torch.no_grad():
        return ids, model(torch.tensor(ids)).logits.numpy()
