"""The Qwen3 architecture (dense): Qwen2's block without the Q/K/V biases, with an RMS norm
of every query and key head (over ``head_dim``, learned scale shared by the heads) before
RoPE. llama.cpp stores those norms as ``attn_q_norm`` / ``attn_k_norm`` and leaves Q and K
unpermuted."""

from __future__ import annotations

from typing import Any, Mapping

from empirical.llm.architectures.base import (
    GGUF_LINEAR, GGUF_PRE_NORMS, GGUF_QK_NORMS, PRE_NORMS, QK_NORMS, Architecture, hf_rope, hf_sizes,
)


def from_hf(cfg: Mapping[str, Any]) -> dict:
    if cfg.get("attention_bias", False):
        raise ValueError("Qwen3 configs with attention_bias=true are not supported")
    if cfg.get("use_sliding_window", False):
        raise ValueError("Qwen3 configs with use_sliding_window=true are not supported")
    sizes = hf_sizes(cfg)
    return {**sizes, **hf_rope(cfg, sizes["head_dim"])}


ARCH = Architecture(
    name="qwen3",
    description="Qwen3 (dense; per-head RMS norms of queries and keys, no Q/K/V biases)",
    hf_model_types=("qwen3",),
    gguf_archs=("qwen3",),
    hf_classes=("Qwen3Config", "Qwen3ForCausalLM"),
    norms={**PRE_NORMS, **QK_NORMS},
    gguf_names={**GGUF_LINEAR, **GGUF_PRE_NORMS, **GGUF_QK_NORMS},
    qk_norm=True,
    from_hf=from_hf,
)
