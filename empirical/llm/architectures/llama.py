"""The Llama architecture (SmolLM2, Llama 2 and 3, Mistral-style dense models): pre-norm
blocks, grouped-query attention with RoPE (optionally Llama-3 scaled), a SwiGLU MLP.

llama.cpp's converter permutes the rows of Q and K of this architecture for its interleaved
rope layout; the readers undo it.
"""

from __future__ import annotations

from typing import Any, Mapping

from empirical.llm.architectures.base import (
    GGUF_LINEAR, GGUF_PRE_NORMS, PRE_NORMS, Architecture, hf_rope, hf_sizes,
)


def from_hf(cfg: Mapping[str, Any]) -> dict:
    if cfg.get("model_type", "llama") == "llama" and cfg.get("attention_bias", False):
        raise ValueError("Llama configs with attention_bias=true are not supported")
    sizes = hf_sizes(cfg)
    return {**sizes, **hf_rope(cfg, sizes["head_dim"])}


ARCH = Architecture(
    name="llama",
    description="Llama family (SmolLM2, Llama 2/3, Mistral-style)",
    hf_model_types=("llama", "mistral"),
    gguf_archs=("llama", "mistral"),
    hf_classes=("LlamaConfig", "LlamaForCausalLM"),
    norms=PRE_NORMS,
    gguf_names={**GGUF_LINEAR, **GGUF_PRE_NORMS},
    gguf_permuted_qk=True,
    from_hf=from_hf,
)
