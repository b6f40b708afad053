"""Weight loaders: GGUF files (via the ``gguf`` package) and Hugging Face checkpoint folders.

Both produce a numpy parameter tree in :mod:`empirical.llm.model`'s layout. Nothing is
downloaded: only local files are read.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from empirical.llm.config import LlamaConfig, config_from_hf

# GGUF architectures whose Q/K weights llama.cpp's converter permutes for its rope layout.
GGUF_PERMUTED_QK = frozenset({"llama", "mistral"})
GGUF_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}


def params_from_named(cfg: LlamaConfig, get: Callable[[str], np.ndarray]) -> dict:
    """Assemble the parameter tree from Hugging Face tensor names (``[out, in]`` weights).

    ``get(name)`` returns a float numpy array for a Hugging Face tensor name such as
    ``model.layers.3.self_attn.q_proj.weight``.
    """
    L = cfg.n_layers

    def stack(fmt: str, transpose: bool) -> np.ndarray:
        arrs = [np.asarray(get(fmt.format(l)), np.float32) for l in range(L)]
        return np.stack([a.T if transpose else a for a in arrs])

    pre = "model.layers.{}."
    layers: dict = {
        "attn_norm": {"scale": stack(pre + "input_layernorm.weight", False)},
        "mlp_norm": {"scale": stack(pre + "post_attention_layernorm.weight", False)},
    }
    for ours, theirs in (("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"),
                         ("v", "self_attn.v_proj"), ("o", "self_attn.o_proj"),
                         ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"),
                         ("down", "mlp.down_proj")):
        layers[ours] = {"kernel": stack(pre + theirs + ".weight", True)}
        if cfg.qkv_bias and ours in ("q", "k", "v"):
            layers[ours]["bias"] = stack(pre + theirs + ".bias", False)
    params = {
        "embed": {"embedding": np.asarray(get("model.embed_tokens.weight"), np.float32)},
        "layers": layers,
        "final_norm": {"scale": np.asarray(get("model.norm.weight"), np.float32)},
    }
    if not cfg.tie_embeddings:
        params["lm_head"] = {"kernel": np.asarray(get("lm_head.weight"), np.float32).T}
    return params


# ----------------------------------------------------------------------------- safetensors

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16,
              "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into float32 numpy arrays (BF16 widened exactly)."""
    path = Path(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{path.name}: unsupported dtype {info['dtype']} for {name}")
        if not np.issubdtype(_ST_DTYPES[info["dtype"]], np.floating) and info["dtype"] != "BF16":
            raise ValueError(f"{path}: {name} has dtype {info['dtype']}; weights must be floating point")
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[start:end], dtype=_ST_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.reshape(info["shape"]).astype(np.float32, copy=False)
    return out


def load_hf_folder(folder: str | Path) -> tuple[LlamaConfig, dict]:
    """Config and parameters from a Hugging Face folder (config.json + *.safetensors)."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json")
    cfg = config_from_hf(json.loads(cfg_path.read_text()))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights")
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        tensors.update(read_safetensors(f))
    raw = json.loads(cfg_path.read_text())
    if "tie_word_embeddings" not in raw and "lm_head.weight" not in tensors:
        cfg = cfg.replace(tie_embeddings=True)  # the config is silent and there is no output head: tied

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise KeyError(f"{folder}: tensor {name} missing")
        return tensors[name]

    return cfg, params_from_named(cfg, get)


# ----------------------------------------------------------------------------- GGUF

def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (interleaved rope pairs -> rotate-half layout).

    ``w`` is ``[n_heads * head_dim, in]``. llama.cpp's converter reorders each head's rows
    from ``(2, head_dim/2)`` to ``(head_dim/2, 2)``; this is the inverse.
    """
    out_dim = w.shape[0]
    hd = out_dim // n_heads
    return (w.reshape(n_heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's Q/K permutation (the inverse of :func:`unpermute_qk`); used by writers."""
    hd = w.shape[0] // n_heads
    return (w.reshape(n_heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def gguf_field(reader, key: str, default=None):
    """The value of a GGUF metadata field (scalars, strings and arrays), or ``default``."""
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def gguf_config(reader) -> LlamaConfig:
    """Architecture from a GGUF file's metadata."""
    arch = gguf_field(reader, "general.architecture")
    if arch not in GGUF_ARCHS:
        raise ValueError(f"unsupported GGUF architecture {arch!r} (supported: {sorted(GGUF_ARCHS)})")
    f = lambda k, d=None: gguf_field(reader, f"{arch}.{k}", d)  # noqa: E731
    n_heads = int(f("attention.head_count"))
    d_model = int(f("embedding_length"))
    head_dim = int(f("attention.key_length", d_model // n_heads))
    names = {t.name for t in reader.tensors}
    factors = None
    if "rope_freqs.weight" in names:
        t = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
        factors = tuple(float(x) for x in np.asarray(t.data, np.float32).ravel())
    vocab = f("vocab_size")
    if vocab is None:
        vocab = len(gguf_field(reader, "tokenizer.ggml.tokens"))
    return LlamaConfig(
        vocab_size=int(vocab), d_model=d_model, n_layers=int(f("block_count")), n_heads=n_heads,
        n_kv_heads=int(f("attention.head_count_kv", n_heads)), head_dim=head_dim,
        d_ff=int(f("feed_forward_length")),
        rms_eps=float(f("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(f("rope.freq_base", 10000.0)), rope_freq_factors=factors,
        tie_embeddings="output.weight" not in names, family=GGUF_ARCHS[arch],
        max_len=int(f("context_length", 8192)),
    )


def dequantize_tensor(tensor) -> np.ndarray:
    """A GGUF tensor as float32 ``[rows, cols]`` numpy (any type ``gguf`` can dequantise)."""
    from gguf import quants

    return np.asarray(quants.dequantize(tensor.data, tensor.tensor_type), np.float32)


def load_gguf(path: str | Path) -> tuple[LlamaConfig, dict, object]:
    """Config, parameters and the open ``GGUFReader`` (for the tokenizer) of a GGUF file."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    cfg = gguf_config(reader)
    arch = gguf_field(reader, "general.architecture")
    by_name = {t.name: t for t in reader.tensors}
    hf_to_gguf = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}

    def get(name: str) -> np.ndarray:
        if name in hf_to_gguf:
            gname = hf_to_gguf[name]
        else:
            _, _, l, rest = name.split(".", 3)
            mod, kind = rest.rsplit(".", 1)
            gname = f"blk.{l}.{parts[mod]}.{kind}"
        if gname not in by_name:
            raise KeyError(f"{path}: tensor {gname} missing")
        w = dequantize_tensor(by_name[gname])
        if arch in GGUF_PERMUTED_QK and ("attn_q." in gname or "attn_k." in gname):
            heads = cfg.n_heads if "attn_q." in gname else cfg.n_kv_heads
            w = unpermute_qk(w, heads)
        return w

    return cfg, params_from_named(cfg, get), reader


def state_dict_from_params(cfg: LlamaConfig, params: Mapping) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_named`: Hugging Face names -> ``[out, in]`` arrays."""
    out = {"model.embed_tokens.weight": np.asarray(params["embed"]["embedding"]),
           "model.norm.weight": np.asarray(params["final_norm"]["scale"])}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = np.asarray(params["lm_head"]["kernel"]).T
    lay = params["layers"]
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
             "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
             "down": "mlp.down_proj"}
    for l in range(cfg.n_layers):
        pre = f"model.layers.{l}."
        out[pre + "input_layernorm.weight"] = np.asarray(lay["attn_norm"]["scale"][l])
        out[pre + "post_attention_layernorm.weight"] = np.asarray(lay["mlp_norm"]["scale"][l])
        for ours, theirs in names.items():
            out[pre + theirs + ".weight"] = np.asarray(lay[ours]["kernel"][l]).T
            if "bias" in lay[ours]:
                out[pre + theirs + ".bias"] = np.asarray(lay[ours]["bias"][l])
    return out
