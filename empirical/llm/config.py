"""Frozen configuration of a decoder-only LLM: the Llama family (incl. Qwen2) and Gemma 3."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

FAMILIES = ("llama", "qwen2", "gemma3")


@dataclass(frozen=True, kw_only=True)
class LlamaConfig:
    """Architecture of a Llama-family decoder (SmolLM2, Llama 2/3, Mistral-style, Qwen2).

    ``family="qwen2"`` only switches on the biases of the Q, K and V projections; every other
    difference between these models is a number in this config. ``rope_freq_factors``, when
    set, divides RoPE's inverse frequencies element-wise (Llama-3 rope scaling, or the
    ``rope_freqs`` tensor of a GGUF file); it has ``head_dim // 2`` entries.

    ``family="gemma3"`` (Gemma 3's text decoder) switches on what Gemma adds: RMS norms after
    attention and after the MLP as well as before, RMS norms of each query and key head, a
    GELU (tanh) gated MLP, the embedding scaled by ``sqrt(d_model)``, attention scaled by
    ``query_scale ** -0.5``, and sliding-window attention on the layers flagged in
    ``local_layers`` (a key is seen when ``query_pos - key_pos < sliding_window``), which
    use RoPE base ``rope_local_theta`` instead of ``rope_theta`` (``rope_freq_factors`` then
    applies to the global layers only). Norm scales are stored as the factor they multiply
    by (Gemma's ``1 + weight``). ``final_softcap``, when set, caps the logits as
    ``cap * tanh(x / cap)``. (Gemma 3 has no attention softcapping: transformers ignores
    ``attn_logit_softcapping`` and llama.cpp's converter requires it unset.)
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
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.local_layers and len(self.local_layers) != self.n_layers:
            raise ValueError(f"local_layers has {len(self.local_layers)} entries for {self.n_layers} layers")
        if any(self.local_layers) and not (self.sliding_window and self.sliding_window > 0):
            raise ValueError("local (sliding-window) layers need a positive sliding_window")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.rope_freq_factors is not None and len(self.rope_freq_factors) != self.head_dim // 2:
            raise ValueError("rope_freq_factors must have head_dim // 2 entries")

    @property
    def qkv_bias(self) -> bool:
        """Whether Q, K and V projections carry biases (Qwen2)."""
        return self.family == "qwen2"

    @property
    def gemma(self) -> bool:
        """Whether this is Gemma 3's decoder (extra norms, GELU MLP, local layers)."""
        return self.family == "gemma3"

    @property
    def attn_scale(self) -> float:
        """The factor multiplying query-key dot products."""
        return (self.query_scale if self.query_scale is not None else self.head_dim) ** -0.5

    def replace(self, **changes: Any) -> "LlamaConfig":
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
        per_layer = attn + mlp + 2 * d + (2 * d + 2 * hd if self.gemma else 0)
        head = 0 if self.tie_embeddings else d * self.vocab_size
        return self.vocab_size * d + self.n_layers * per_layer + d + head


def llama3_freq_factors(
    *, head_dim: int, theta: float, factor: float, low_freq_factor: float,
    high_freq_factor: float, original_max_position_embeddings: int,
) -> tuple[float, ...]:
    """Llama-3 rope scaling written as per-frequency divisors of RoPE's inverse frequencies."""
    out = []
    low_wavelen = original_max_position_embeddings / low_freq_factor
    high_wavelen = original_max_position_embeddings / high_freq_factor
    for i in range(head_dim // 2):
        inv = 1.0 / theta ** (2 * i / head_dim)
        wavelen = 2 * math.pi / inv
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(float(factor))
        else:
            s = (original_max_position_embeddings / wavelen - low_freq_factor) / (
                high_freq_factor - low_freq_factor)
            out.append(1.0 / ((1 - s) / factor + s))
    return tuple(out)


#: The keys every Hugging Face ``config.json`` must give (positive integers).
HF_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def config_from_hf(cfg: Mapping[str, Any]) -> LlamaConfig:
    """Build a config from a Hugging Face ``config.json`` dict (Llama, Mistral, Qwen2)."""
    model_type = cfg.get("model_type", "llama")
    if model_type == "gemma3" and isinstance(cfg.get("text_config"), Mapping):
        return config_from_hf({**cfg["text_config"], "model_type": "gemma3_text"})
    missing = [k for k in HF_REQUIRED if not isinstance(cfg.get(k), int) or cfg[k] < 1]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)} (positive integers)")
    if model_type == "gemma3_text":
        return _gemma3_from_hf(cfg)
    if model_type in ("llama", "mistral"):
        family = "llama"
    elif model_type == "qwen2":
        family = "qwen2"
    else:
        raise ValueError(f"unsupported model_type {model_type!r} (supported: llama, mistral, qwen2, gemma3_text)")
    if model_type == "llama" and cfg.get("attention_bias", False):
        raise ValueError("Llama configs with attention_bias=true are not supported")
    n_heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_heads
    rope = dict(cfg.get("rope_parameters") or {})
    scaling = cfg.get("rope_scaling") or {}
    theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    params = {**scaling, **rope}
    factors = None
    if rope_type == "llama3":
        factors = llama3_freq_factors(
            head_dim=head_dim, theta=theta, factor=params["factor"],
            low_freq_factor=params["low_freq_factor"], high_freq_factor=params["high_freq_factor"],
            original_max_position_embeddings=params["original_max_position_embeddings"])
    elif rope_type != "default":
        raise ValueError(f"unsupported rope type {rope_type!r} (supported: default, llama3)")
    return LlamaConfig(
        vocab_size=cfg["vocab_size"], d_model=cfg["hidden_size"],
        n_layers=cfg["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=cfg.get("num_key_value_heads") or n_heads, head_dim=head_dim,
        d_ff=cfg["intermediate_size"], rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=theta, rope_freq_factors=factors,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)), family=family,
        max_len=int(cfg.get("max_position_embeddings", 8192)),
    )


def gemma3_layer_types(n_layers: int, pattern: int = 6) -> tuple[bool, ...]:
    """Gemma 3's default layout: every ``pattern``-th layer global, the others local."""
    return tuple(bool((i + 1) % pattern) for i in range(n_layers))


def _gemma3_from_hf(cfg: Mapping[str, Any]) -> LlamaConfig:
    """A Gemma 3 text config (``Gemma3TextConfig`` keys, old and new rope spellings)."""
    n = cfg["num_hidden_layers"]
    types = cfg.get("layer_types")
    if types is None:
        local = gemma3_layer_types(n, int(cfg.get("sliding_window_pattern", 6)))
    else:
        if len(types) != n or set(types) - {"sliding_attention", "full_attention"}:
            raise ValueError(f"layer_types must name sliding_attention or full_attention for each of {n} layers")
        local = tuple(t == "sliding_attention" for t in types)
    rope = dict(cfg.get("rope_parameters") or {})
    full = dict(rope.get("full_attention") or {})
    local_rope = dict(rope.get("sliding_attention") or {})
    if "rope_type" in rope and not full:  # a flat rope_parameters dict: the global layers' one
        full = rope
    full.update(cfg.get("rope_scaling") or {})
    theta = float(full.get("rope_theta", cfg.get("rope_theta", 1_000_000.0)))
    local_theta = float(local_rope.get("rope_theta", cfg.get("rope_local_base_freq", 10_000.0)))
    head_dim = int(cfg.get("head_dim") or 256)
    factors = None
    kind = full.get("rope_type") or full.get("type") or "default"
    if kind == "linear":
        factors = (float(full["factor"]),) * (head_dim // 2)
    elif kind != "default":
        raise ValueError(f"unsupported Gemma 3 rope type {kind!r} (supported: default, linear)")
    if (local_rope.get("rope_type") or "default") != "default":
        raise ValueError("Gemma 3's local layers must use default RoPE")
    if cfg.get("use_bidirectional_attention"):
        raise ValueError("bidirectional Gemma 3 (embedding) models are not supported")
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise ValueError(f"unsupported Gemma 3 activation {act!r} (supported: gelu_pytorch_tanh)")
    n_heads = cfg["num_attention_heads"]
    return LlamaConfig(
        vocab_size=cfg["vocab_size"], d_model=cfg["hidden_size"], n_layers=n, n_heads=n_heads,
        n_kv_heads=cfg.get("num_key_value_heads") or n_heads, head_dim=head_dim,
        d_ff=cfg["intermediate_size"], rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=theta, rope_freq_factors=factors,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)), family="gemma3",
        max_len=int(cfg.get("max_position_embeddings", 32768)),
        sliding_window=int(cfg["sliding_window"]) if cfg.get("sliding_window") else None,
        local_layers=local if cfg.get("sliding_window") else (False,) * n,
        rope_local_theta=local_theta, query_scale=float(cfg.get("query_pre_attn_scalar", head_dim)),
        final_softcap=cfg.get("final_logit_softcapping"),
    )


def tiny(*, family: str = "llama", **changes: Any) -> LlamaConfig:
    """A tiny random-test configuration (GQA with 2 query heads per KV head)."""
    base = dict(vocab_size=96, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                d_ff=48, rms_eps=1e-6, rope_theta=10000.0, family=family, max_len=256)
    base.update(changes)
    return LlamaConfig(**base)


def llama3_8b(**changes: Any) -> LlamaConfig:
    """The Llama-3-8B shape (for benchmarks with random weights)."""
    base = dict(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                head_dim=128, d_ff=14336, rms_eps=1e-5, rope_theta=500000.0,
                rope_freq_factors=llama3_freq_factors(
                    head_dim=128, theta=500000.0, factor=8.0, low_freq_factor=1.0,
                    high_freq_factor=4.0, original_max_position_embeddings=8192),
                tie_embeddings=False, family="llama", max_len=8192)
    base.update(changes)
    return LlamaConfig(**base)
