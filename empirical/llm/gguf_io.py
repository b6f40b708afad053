"""Writing GGUF files the way llama.cpp's converter lays them out (for tests and exports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from empirical.llm.config import DecoderConfig
from empirical.llm.weights import gguf_name, permute_qk, state_dict_from_params


@dataclass(frozen=True, kw_only=True)
class BPESpec:
    """A byte-level BPE tokenizer as GGUF stores it (tokens in GPT-2's byte alphabet)."""

    tokens: Sequence[str]
    merges: Sequence[str]
    types: Sequence[int]
    pre: str = "smollm"
    bos_id: int | None = None
    eos_id: int | None = None
    add_bos: bool = False
    extra: Mapping[str, int] = field(default_factory=dict)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_bpe(merge_pairs: Sequence[tuple[str, str]], specials: Sequence[str] = ("<|endoftext|>", "<s>")) -> BPESpec:
    """A small byte-level BPE: the 256 byte tokens, one token per merge, then the specials."""
    alphabet = list(bytes_to_unicode().values())
    tokens = list(alphabet)
    merges = []
    for a, b in merge_pairs:
        if a not in tokens or b not in tokens:
            raise ValueError(f"merge {a} {b}: parts must be tokens already")
        merges.append(f"{a} {b}")
        if a + b not in tokens:
            tokens.append(a + b)
    types = [1] * len(tokens) + [3] * len(specials)
    tokens += list(specials)
    return BPESpec(tokens=tokens, merges=merges, types=types, pre="smollm",
                   bos_id=len(tokens) - 1, eos_id=len(tokens) - len(specials), add_bos=False)


def write_gguf(path: str | Path, cfg: DecoderConfig, params: Mapping, *, tokenizer: BPESpec | None = None,
               qtype: str = "F32") -> Path:
    """Write ``params`` as a GGUF file (2-D weights in ``qtype``, e.g. F32, F16, Q8_0, Q4_0).

    Weights whose rows are not a whole number of quantisation blocks stay float32.

    The layout is the architecture's (:mod:`empirical.llm.architectures`), as llama.cpp's
    converter lays it out: Q and K rows permuted where it permutes them (``llama``), norm
    weights stored as the factor they multiply by (Gemma 3's ``1 + weight``), and the metadata
    the architecture adds (Gemma 3's sliding window; its layer pattern and local RoPE base are
    llama.cpp's fixed ones, so the config must have them).
    """
    import gguf

    arch = cfg.arch
    q = gguf.GGMLQuantizationType[qtype]
    w = gguf.GGUFWriter(str(path), arch.gguf_archs[0])
    w.add_name("superpose-test")
    w.add_block_count(cfg.n_layers)
    w.add_context_length(cfg.max_len)
    w.add_embedding_length(cfg.d_model)
    w.add_feed_forward_length(cfg.d_ff)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_vocab_size(cfg.vocab_size)
    arch.gguf_metadata(w, cfg)
    if tokenizer is not None:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(tokenizer.pre)
        w.add_token_list(list(tokenizer.tokens))
        w.add_token_types(list(tokenizer.types))
        w.add_token_merges(list(tokenizer.merges))
        if tokenizer.bos_id is not None:
            w.add_bos_token_id(tokenizer.bos_id)
        if tokenizer.eos_id is not None:
            w.add_eos_token_id(tokenizer.eos_id)
        w.add_add_bos_token(tokenizer.add_bos)
    sd = state_dict_from_params(cfg, params, norm_shift=0.0)
    for name, arr in sd.items():
        arr = np.ascontiguousarray(arr, np.float32)
        gname = gguf_name(cfg, name)
        if arch.gguf_permuted_qk and (".attn_q." in gname or ".attn_k." in gname):
            arr = permute_qk(arr, cfg.n_heads if ".attn_q." in gname else cfg.n_kv_heads)
        block = gguf.GGML_QUANT_SIZES[q][0]
        if arr.ndim == 2 and q != gguf.GGMLQuantizationType.F32 and arr.shape[-1] % block == 0:
            w.add_tensor(gname, gguf.quants.quantize(arr, q), raw_dtype=q)
        else:
            w.add_tensor(gname, arr)
    if cfg.rope_freq_factors is not None and arch.gguf_rope_freqs:
        w.add_tensor("rope_freqs.weight", np.asarray(cfg.rope_freq_factors, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
