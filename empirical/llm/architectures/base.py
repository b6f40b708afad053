"""What an architecture is (:class:`Architecture`), and the parts its variant files share:
the tensor names every variant uses and the reading of a Hugging Face ``config.json``'s
common keys (sizes and RoPE)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

#: Our per-layer projections (paths under ``layers``: a Dense's ``kernel``, or a weight of the
#: shared MLP) -> Hugging Face module names (every variant has them).
HF_LINEAR = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
             "o": "self_attn.o_proj", "mlp/w_gate": "mlp.gate_proj", "mlp/w_in": "mlp.up_proj",
             "mlp/w_out": "mlp.down_proj"}

#: Hugging Face projection modules -> llama.cpp's ``blk.N.<part>`` names.
GGUF_LINEAR = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}

#: Whole-model tensors: Hugging Face name -> GGUF name.
GGUF_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}

#: The pre-norm pair of a Llama-style block: ours -> Hugging Face module, and that -> GGUF.
PRE_NORMS = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
GGUF_PRE_NORMS = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}

#: Per-head query/key norms: ours -> Hugging Face module, and that -> GGUF.
QK_NORMS = {"q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm"}
GGUF_QK_NORMS = {"self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}

#: The keys every Hugging Face ``config.json`` must give (positive integers).
HF_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _no_fields(f, fields: dict, names: set[str]) -> dict:
    return fields


def _no_problems(cfg) -> list[str]:
    return []


def _no_metadata(writer, cfg) -> None:
    return None


def _same_tensors(tensors: dict) -> dict:
    return tensors


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """One decoder architecture: the switches the decoder reads, and its file formats.

    ``norms`` maps our per-layer norm names (``layers/<name>/scale``) to Hugging Face module
    names; ``gguf_names`` maps every per-layer Hugging Face module to llama.cpp's name.
    ``norm_shift`` is what Hugging Face's norm weights lack of the factor they multiply by
    (Gemma: ``1 + weight``; GGUF files store the factor). The hooks:

    * ``from_hf(config_json) -> fields`` of :class:`empirical.llm.config.DecoderConfig`;
    * ``gguf_fields(f, fields, tensor_names) -> fields``: what a GGUF file adds to the
      common fields, ``f(key, default)`` reading ``<gguf arch>.<key>``;
    * ``check(cfg) -> problems`` beyond the common checks;
    * ``gguf_metadata(writer, cfg)``: extra metadata a writer stores (and refusals);
    * ``hf_tensors(tensors) -> tensors``: renames of a checkpoint's tensors (wrappers).
    """

    name: str
    description: str
    hf_model_types: tuple[str, ...]
    gguf_archs: tuple[str, ...]
    hf_classes: tuple[str, str]  # transformers' config and causal-LM class names (tests)
    norms: Mapping[str, str]
    gguf_names: Mapping[str, str]
    qkv_bias: bool = False
    qk_norm: bool = False
    sandwich_norms: bool = False
    mlp: str = "swiglu"
    embed_scale: bool = False
    norm_shift: float = 0.0
    gguf_permuted_qk: bool = False
    gguf_rope_freqs: bool = True
    from_hf: Callable[[Mapping[str, Any]], dict] = field(default=lambda cfg: {})
    gguf_fields: Callable[..., dict] = _no_fields
    check: Callable[[Any], list[str]] = _no_problems
    gguf_metadata: Callable[[Any, Any], None] = _no_metadata
    hf_tensors: Callable[[dict], dict] = _same_tensors

    @property
    def hf_names(self) -> dict[str, str]:
        """Our per-layer parameter groups (norms and projections) -> Hugging Face modules."""
        return {**self.norms, **HF_LINEAR}


def hf_sizes(cfg: Mapping[str, Any], *, tie_default: bool = False, eps_default: float = 1e-6,
             max_len_default: int = 8192) -> dict:
    """The size fields every variant reads alike from a Hugging Face ``config.json``."""
    n_heads = cfg["num_attention_heads"]
    return dict(
        vocab_size=cfg["vocab_size"], d_model=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"],
        n_heads=n_heads, n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
        head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // n_heads), d_ff=cfg["intermediate_size"],
        rms_eps=float(cfg.get("rms_norm_eps", eps_default)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        max_len=int(cfg.get("max_position_embeddings", max_len_default)))


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


def hf_rope(cfg: Mapping[str, Any], head_dim: int) -> dict:
    """``rope_theta`` and ``rope_freq_factors`` of a ``config.json`` (old and new spellings;
    default RoPE or Llama-3 scaling)."""
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
    return dict(rope_theta=theta, rope_freq_factors=factors)
