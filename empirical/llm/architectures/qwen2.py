"""The Qwen2 architecture: Llama's, with biases on the Q, K and V projections."""

from __future__ import annotations

from typing import Any, Mapping

from empirical.llm.architectures.base import (
    GGUF_LINEAR, GGUF_PRE_NORMS, PRE_NORMS, Architecture, hf_rope, hf_sizes,
)


def from_hf(cfg: Mapping[str, Any]) -> dict:
    sizes = hf_sizes(cfg)
    return {**sizes, **hf_rope(cfg, sizes["head_dim"])}


ARCH = Architecture(
    name="qwen2",
    description="Qwen2 (Llama with Q/K/V biases)",
    hf_model_types=("qwen2",),
    gguf_archs=("qwen2",),
    hf_classes=("Qwen2Config", "Qwen2ForCausalLM"),
    norms=PRE_NORMS,
    gguf_names={**GGUF_LINEAR, **GGUF_PRE_NORMS},
    qkv_bias=True,
    from_hf=from_hf,
)
