"""Frozen configuration of a decoder-only LLM of any registered architecture
(:mod:`empirical.llm.architectures`: Llama incl. SmolLM2, Qwen2, Qwen3, Gemma 3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from empirical.llm import architectures
from empirical.llm.architectures.base import HF_REQUIRED, Architecture, llama3_freq_factors

__all__ = ["DecoderConfig", "HF_REQUIRED", "config_from_hf", "llama3_8b", "llama3_freq_factors",
           "tiny"]


@dataclass(frozen=True, kw_only=True)
class DecoderConfig:
    """Architecture and sizes of a decoder-only LLM.

    ``family`` names its architecture in :data:`empirical.llm.architectures.REGISTRY`
    (``"llama"``, ``"qwen2"``, ``"qwen3"``, ``"gemma3"``), which decides the block's parts
    (Q/K/V biases, query/key norms, sandwich norms, the MLP's activation, a scaled embedding);
    every other difference between models is a number here. ``rope_freq_factors``, when set,
    divides RoPE's inverse frequencies element-wise (Llama-3 rope scaling, the ``rope_freqs``
    tensor of a GGUF file, or Gemma's linear scaling); it has ``head_dim // 2`` entries.
    Layers flagged in ``local_layers`` attend only to keys less than ``sliding_window``
    positions back and use RoPE base ``rope_local_theta`` (``rope_freq_factors`` then applies
    to the global layers only). Attention scales by ``query_scale ** -0.5`` (default
    ``head_dim``). ``final_softcap``, when set, caps the logits as ``cap * tanh(x / cap)``.
    Norm scales are stored as the factor they multiply by.
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_freq_factors: tuple[float, ...] | None = None
    tie_embeddings: bool = False
    family: str = "llama"
    max_len: int = 8192
    dtype: str = "float32"
    sliding_window: int | None = None
    local_layers: tuple[bool, ...] = ()
    rope_local_theta: float = 10000.0
    query_scale: float | None = None
    final_softcap: float | None = None

    def __post_init__(self) -> None:
        arch = architectures.get(self.family)
        problems = list(arch.check(self))
        if self.local_layers and len(self.local_layers) != self.n_layers:
            problems.append(f"local_layers has {len(self.local_layers)} entries for {self.n_layers} layers")
        if any(self.local_layers) and not (self.sliding_window and self.sliding_window > 0):
            problems.append("local (sliding-window) layers need a positive sliding_window")
        if self.n_heads % self.n_kv_heads:
            problems.append(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            problems.append(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.rope_freq_factors is not None and len(self.rope_freq_factors) != self.head_dim // 2:
            problems.append("rope_freq_factors must have head_dim // 2 entries")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def arch(self) -> Architecture:
        """The registered architecture of ``family``."""
        return architectures.get(self.family)

    @property
    def qkv_bias(self) -> bool:
        """Whether Q, K and V projections carry biases (Qwen2)."""
        return self.arch.qkv_bias

    @property
    def attn_scale(self) -> float:
        """The factor multiplying query-key dot products."""
        return (self.query_scale if self.query_scale is not None else self.head_dim) ** -0.5

    def replace(self, **changes: Any) -> "DecoderConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        out = dataclasses.asdict(self)
        if out["rope_freq_factors"] is not None:
            out["rope_freq_factors"] = list(out["rope_freq_factors"])
        out["local_layers"] = list(out["local_layers"])
        return out

    def n_params(self) -> int:
        """Number of parameters (embedding counted once when tied)."""
        d, h, kv, hd = self.d_model, self.n_heads, self.n_kv_heads, self.head_dim
        attn = d * h * hd * 2 + d * kv * hd * 2 + (h * hd + 2 * kv * hd if self.qkv_bias else 0)
        mlp = 3 * d * self.d_ff
        norms = sum(hd if name in ("q_norm", "k_norm") else d for name in self.arch.norms)
        head = 0 if self.tie_embeddings else d * self.vocab_size
        return self.vocab_size * d + self.n_layers * (attn + mlp + norms) + d + head


def config_from_hf(cfg: Mapping[str, Any]) -> DecoderConfig:
    """Build a config from a Hugging Face ``config.json`` dict, through the architecture that
    reads its ``model_type``; a multimodal wrapper's ``text_config`` is read as the decoder's."""
    model_type = cfg.get("model_type", "llama")
    if isinstance(cfg.get("text_config"), Mapping):
        inner = cfg["text_config"]
        return config_from_hf({**inner, "model_type": inner.get("model_type") or f"{model_type}_text"})
    arch = architectures.for_hf_model_type(model_type)
    missing = [k for k in HF_REQUIRED if not isinstance(cfg.get(k), int) or cfg[k] < 1]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)} (positive integers)")
    return DecoderConfig(family=arch.name, **arch.from_hf(cfg))


def tiny(*, family: str = "llama", **changes: Any) -> DecoderConfig:
    """A tiny random-test configuration (GQA with 2 query heads per KV head)."""
    base = dict(vocab_size=96, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                d_ff=48, rms_eps=1e-6, rope_theta=10000.0, family=family, max_len=256)
    base.update(changes)
    return DecoderConfig(**base)


def llama3_8b(**changes: Any) -> DecoderConfig:
    """The Llama-3-8B shape (for benchmarks with random weights)."""
    base = dict(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                head_dim=128, d_ff=14336, rms_eps=1e-5, rope_theta=500000.0,
                rope_freq_factors=llama3_freq_factors(
                    head_dim=128, theta=500000.0, factor=8.0, low_freq_factor=1.0,
                    high_freq_factor=4.0, original_max_position_embeddings=8192),
                tie_embeddings=False, family="llama", max_len=8192)
    base.update(changes)
    return DecoderConfig(**base)
