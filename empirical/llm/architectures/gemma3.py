"""The Gemma 3 architecture (its text decoder).

What Gemma adds to a Llama block: RMS norms after attention and after the MLP as well as
before (sandwich norms), an RMS norm of every query and key head, a GELU (tanh) gated MLP,
the embedding scaled by ``sqrt(d_model)``, attention scaled by ``query_scale ** -0.5``, and
sliding-window attention on the layers flagged ``local_layers`` with their own RoPE base.
Hugging Face stores norm weights as ``weight`` with the factor ``1 + weight``; llama.cpp's
GGUF files store the factor. GGUF files carry only llama.cpp's fixed layout (every 6th layer
global unless ``sliding_window_pattern`` says otherwise, local RoPE base 10000, queries
scaled by ``head_dim ** -0.5``; the 27B model, d_model 5376, by ``(d_model / heads) ** -0.5``).
"""

from __future__ import annotations

from typing import Any, Mapping

from empirical.llm.architectures.base import (
    GGUF_LINEAR, GGUF_QK_NORMS, QK_NORMS, Architecture, hf_sizes,
)


def gemma3_layer_types(n_layers: int, pattern: int = 6) -> tuple[bool, ...]:
    """Gemma 3's default layout: every ``pattern``-th layer global, the others local."""
    return tuple(bool((i + 1) % pattern) for i in range(n_layers))


def from_hf(cfg: Mapping[str, Any]) -> dict:
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
    return dict(
        hf_sizes(cfg, tie_default=True, max_len_default=32768), head_dim=head_dim,
        rope_theta=theta, rope_freq_factors=factors,
        sliding_window=int(cfg["sliding_window"]) if cfg.get("sliding_window") else None,
        local_layers=local if cfg.get("sliding_window") else (False,) * n,
        rope_local_theta=local_theta, query_scale=float(cfg.get("query_pre_attn_scalar", head_dim)),
        final_softcap=cfg.get("final_logit_softcapping"),
    )


def gguf_fields(f, fields: dict, names: set[str]) -> dict:
    """What a GGUF file of arch ``gemma3`` says (or llama.cpp assumes) beyond the common fields."""
    n_layers, head_dim = fields["n_layers"], fields["head_dim"]
    pattern = f("attention.sliding_window_pattern", 6)
    local = (tuple(bool(x) for x in pattern) if isinstance(pattern, (list, tuple))
             else gemma3_layer_types(n_layers, int(pattern)))
    window = f("attention.sliding_window")
    factors = fields["rope_freq_factors"]
    if f("rope.scaling.type", "none") == "linear" and factors is None:
        factors = (float(f("rope.scaling.factor", 1.0)),) * (head_dim // 2)
    d_model, n_heads = fields["d_model"], fields["n_heads"]
    return dict(fields, rope_freq_factors=factors, sliding_window=None if window is None else int(window),
                local_layers=local if window else (False,) * n_layers, rope_local_theta=10000.0,
                query_scale=float(d_model / n_heads if d_model == 5376 else head_dim),
                final_softcap=f("final_logit_softcapping"))


def gguf_metadata(writer, cfg) -> None:
    """A Gemma 3 GGUF file holds llama.cpp's fixed layout, its window and its softcap."""
    fixed = dict(local_layers=gemma3_layer_types(cfg.n_layers) if cfg.sliding_window else (False,) * cfg.n_layers,
                 rope_local_theta=10000.0, query_scale=float(cfg.head_dim), rope_freq_factors=None)
    odd = [k for k, v in fixed.items() if getattr(cfg, k) != v]
    if odd:
        raise ValueError(f"a Gemma 3 GGUF file cannot carry {', '.join(odd)} other than llama.cpp's fixed values")
    if cfg.sliding_window:
        writer.add_sliding_window(cfg.sliding_window)
    if cfg.final_softcap:
        writer.add_final_logit_softcapping(cfg.final_softcap)


def hf_tensors(tensors: dict) -> dict:
    """A ``Gemma3ForConditionalGeneration`` checkpoint's text decoder under the causal LM's names."""
    if "model.embed_tokens.weight" in tensors:
        return tensors
    return {n.replace("model.language_model.", "model."): t for n, t in tensors.items()
            if n.startswith("model.language_model.") or n == "lm_head.weight"}


ARCH = Architecture(
    name="gemma3",
    description="Gemma 3 text decoder (sandwich and q/k norms, GELU-tanh MLP, local layers)",
    hf_model_types=("gemma3_text",),
    gguf_archs=("gemma3",),
    hf_classes=("Gemma3TextConfig", "Gemma3ForCausalLM"),
    norms={"attn_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
           "mlp_norm": "pre_feedforward_layernorm", "post_mlp_norm": "post_feedforward_layernorm", **QK_NORMS},
    gguf_names={**GGUF_LINEAR, "input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
                "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
                **GGUF_QK_NORMS},
    qk_norm=True,
    sandwich_norms=True,
    mlp="gelu_tanh",
    embed_scale=True,
    norm_shift=1.0,
    gguf_rope_freqs=False,
    from_hf=from_hf,
    gguf_fields=gguf_fields,
    gguf_metadata=gguf_metadata,
    hf_tensors=hf_tensors,
)
