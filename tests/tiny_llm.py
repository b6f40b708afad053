"""Tiny random Llama models and tokenisers for the tests and parity checks (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from empirical.llm.config import LlamaConfig, tiny
from empirical.llm.gguf_io import BPESpec, tiny_bpe, write_gguf
from empirical.llm.weights import params_from_named

# Merges that make "->", " the", "in", digits pairs and letter pairs single tokens, so prompts
# of the task families tokenise into a mix of short and merged tokens (and " t"+"he" merges
# with a prompt's trailing space: the token-merge case).
TINY_MERGES = (("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("-", ">"), ("Ġ", "a"),
               ("a", "n"), ("e", "r"), ("o", "n"), ("Ċ", "Ċ"), ("=", "1"), ("@", "2"))


def tiny_spec() -> BPESpec:
    """The byte-level BPE used by the tiny test models (vocabulary of 270)."""
    return tiny_bpe(TINY_MERGES)


def tiny_config(family: str = "llama", **changes: Any) -> LlamaConfig:
    """A tiny config whose vocabulary matches :func:`tiny_spec` (d_ff a multiple of 32 so
    every weight can be quantised)."""
    base = dict(vocab_size=len(tiny_spec().tokens), d_model=32, d_ff=64, max_len=2048)
    base.update(changes)
    return tiny(family=family, **base)


def hf_config(cfg: LlamaConfig, *, rope_scaling: dict | None = None):
    """The ``transformers`` config object of ``cfg`` (LlamaConfig or Qwen2Config)."""
    import transformers

    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if rope_scaling is not None:
        rope = {"rope_theta": cfg.rope_theta, **rope_scaling}
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
                  num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                  num_key_value_heads=cfg.n_kv_heads, rms_norm_eps=cfg.rms_eps,
                  max_position_embeddings=cfg.max_len, tie_word_embeddings=cfg.tie_embeddings,
                  rope_parameters=rope)
    if cfg.family == "qwen2":
        return transformers.Qwen2Config(**common)
    return transformers.LlamaConfig(head_dim=cfg.head_dim, **common)


def torch_model(cfg: LlamaConfig, *, seed: int = 0, std: float = 0.3, rope_scaling: dict | None = None):
    """A random ``transformers`` model of ``cfg`` (float32, eval mode): the reference."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hc = hf_config(cfg, rope_scaling=rope_scaling)
    cls = transformers.Qwen2ForCausalLM if cfg.family == "qwen2" else transformers.LlamaForCausalLM
    model = cls(hc).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, std)
    return model


def params_of_torch(cfg: LlamaConfig, model) -> dict:
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


def random_params(cfg: LlamaConfig, seed: int = 0, std: float = 0.3) -> dict:
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


def write_tiny_gguf(path: str | Path, cfg: LlamaConfig | None = None, *, seed: int = 0,
                    qtype: str = "F32") -> Path:
    """A tiny random GGUF model with the tiny tokenizer (loads with ``load_model(path)``)."""
    cfg = cfg or tiny_config()
    return write_gguf(path, cfg, random_params(cfg, seed), tokenizer=tiny_spec(), qtype=qtype)
