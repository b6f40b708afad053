"""Weight loaders: GGUF files (via the ``gguf`` package) and Hugging Face checkpoint folders.

Both produce a numpy parameter tree in :mod:`empirical.llm.model`'s layout. Nothing is
downloaded: only local files are read.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from empirical.llm import architectures
from empirical.llm.architectures.base import GGUF_GLOBAL
from empirical.llm.config import DecoderConfig, config_from_hf


def layer_norms(cfg: DecoderConfig) -> dict[str, str]:
    """Our per-layer norm names -> the Hugging Face module each one is, for ``cfg``'s architecture."""
    return dict(cfg.arch.norms)


def hf_norm_shift(cfg: DecoderConfig) -> float:
    """What Hugging Face's norm weights lack of the factor they multiply by (Gemma: 1)."""
    return cfg.arch.norm_shift


def params_from_named(cfg: DecoderConfig, get: Callable[[str], np.ndarray], *,
                      norm_shift: float | None = None) -> dict:
    """Assemble the parameter tree from Hugging Face tensor names (``[out, in]`` weights).

    ``get(name)`` returns a float numpy array for a Hugging Face tensor name such as
    ``model.layers.3.self_attn.q_proj.weight``; which names a layer has is its architecture's
    map (:attr:`Architecture.hf_names`). ``norm_shift`` is added to every norm weight
    (default :func:`hf_norm_shift`: Gemma's norms multiply by ``1 + weight``; GGUF files
    store that sum already, so their reader passes 0).
    """
    L = cfg.n_layers
    shift = np.float32(hf_norm_shift(cfg) if norm_shift is None else norm_shift)

    def stack(fmt: str, transpose: bool) -> np.ndarray:
        arrs = [np.asarray(get(fmt.format(l)), np.float32) for l in range(L)]
        for l, a in enumerate(arrs[1:], 1):
            if a.shape != arrs[0].shape:
                raise ValueError(f"{fmt.format(l)} has shape {a.shape}, but {fmt.format(0)} has {arrs[0].shape}")
        return np.stack([a.T if transpose else a for a in arrs])

    pre = "model.layers.{}."
    arch = cfg.arch
    layers: dict = {ours: {"scale": stack(pre + theirs + ".weight", False) + shift}
                    for ours, theirs in arch.norms.items()}
    for ours, theirs in arch.hf_names.items():
        if ours in arch.norms:
            continue
        group, _, leaf = ours.partition("/")
        layers.setdefault(group, {})[leaf or "kernel"] = stack(pre + theirs + ".weight", True)
        if cfg.qkv_bias and ours in ("q", "k", "v"):
            layers[ours]["bias"] = stack(pre + theirs + ".bias", False)
    params = {
        "embed": {"embedding": np.asarray(get("model.embed_tokens.weight"), np.float32)},
        "layers": layers,
        "final_norm": {"scale": np.asarray(get("model.norm.weight"), np.float32) + shift},
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
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        text = f.read(n) if n >= 0 else b""
    if n < 0 or len(text) < n:
        raise ValueError(f"{path}: truncated safetensors file (its header runs past the end)")
    header = json.loads(text)
    if not isinstance(header, dict):
        raise ValueError(f"{path}: malformed safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise ValueError(f"{path}: malformed safetensors header entry for {name}")
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


def load_hf_folder(folder: str | Path) -> tuple[DecoderConfig, dict]:
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
    tensors = cfg.arch.hf_tensors(tensors)  # e.g. Gemma3ForConditionalGeneration's text decoder

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise ValueError(f"{folder}: tensor {name} missing")
        return tensors[name]

    return cfg, params_from_named(cfg, get)


# ----------------------------------------------------------------------------- GGUF

_GGUF_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
                 10: "<u8", 11: "<i8", 12: "<f8"}
_GGUF_STRING, _GGUF_ARRAY, _GGUF_BOOL = 8, 9, 7


#: A metadata key as the GGUF specification names them: lower snake case words separated by
#: dots (``general.architecture``, ``llama.rope.freq_base``); a damaged key mostly is not one.
_GGUF_KEY = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")


class GGUFField:
    """One metadata value of a GGUF file; ``contents()`` as ``gguf.GGUFReader`` gives it."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def contents(self):
        v = self.value
        return v.tolist() if isinstance(v, np.ndarray) else v


class GGUFTensor:
    """One tensor of a GGUF file: ``name``, ``tensor_type``, ``shape`` (GGUF order), ``data``
    (a read-only view: float arrays for F32/F16, else ``[rows, bytes per row]`` uint8)."""

    __slots__ = ("name", "tensor_type", "shape", "data")

    def __init__(self, name, tensor_type, shape, data):
        self.name, self.tensor_type, self.shape, self.data = name, tensor_type, shape, data


class GGUFFile:
    """A GGUF file's metadata (``fields``) and tensors (``tensors``), memory-mapped.

    A small reader of the format (version 2 and 3, little-endian) in the layout
    ``gguf.GGUFReader`` exposes; it reads a 262k-token vocabulary in a fraction of a second
    where that reader takes many. Every length is checked against the file's size, so a
    damaged file fails with a ValueError instead of running away.
    """

    def __init__(self, path: str | Path):
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        self.path = Path(path)
        if self.path.stat().st_size < 24:
            raise ValueError(f"{self.path.name}: truncated GGUF ({self.path.stat().st_size} bytes, "
                             "less than its header)")
        buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = memoryview(buf)
        size = len(buf)
        pos = 0

        def take(n: int) -> int:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise ValueError(f"{self.path.name}: truncated or corrupt GGUF (read past the end)")
            start, pos = pos, pos + n
            return start

        def u32() -> int:
            return struct.unpack_from("<I", raw, take(4))[0]

        def u64() -> int:
            return struct.unpack_from("<Q", raw, take(8))[0]

        def string() -> str:
            n = u64()
            try:
                return bytes(raw[take(n): pos]).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{self.path.name}: corrupt GGUF (a string at byte {pos - n} is not UTF-8)") from None

        def value(kind: int):
            if kind == _GGUF_STRING:
                return string()
            if kind in _GGUF_SCALARS:
                dt = np.dtype(_GGUF_SCALARS[kind])
                v = np.frombuffer(raw, dt, 1, take(dt.itemsize))[0].item()
                return bool(v) if kind == _GGUF_BOOL else v
            if kind == _GGUF_ARRAY:
                item, count = u32(), u64()
                if item == _GGUF_STRING:
                    if count * 8 > size - pos:
                        raise ValueError(f"{self.path.name}: truncated or corrupt GGUF (array of {count} strings)")
                    return [string() for _ in range(count)]
                if item not in _GGUF_SCALARS:
                    raise ValueError(f"{self.path.name}: corrupt GGUF (array item type {item})")
                dt = np.dtype(_GGUF_SCALARS[item])
                arr = np.frombuffer(raw, dt, count, take(count * dt.itemsize))
                return arr.astype(bool) if item == _GGUF_BOOL else arr
            raise ValueError(f"{self.path.name}: corrupt GGUF (value type {kind})")

        if bytes(raw[take(4): pos]) != b"GGUF":
            raise ValueError(f"{self.path.name}: not a GGUF file (bad magic)")
        version = u32()
        if version not in (2, 3):
            raise ValueError(f"{self.path.name}: unsupported GGUF version {version}")
        n_tensors, n_kv = u64(), u64()
        header_end = pos
        if n_tensors > size or n_kv > size:
            raise ValueError(f"{self.path.name}: corrupt GGUF header")
        self.fields: dict[str, GGUFField] = {"GGUF.version": GGUFField(version),
                                             "GGUF.tensor_count": GGUFField(n_tensors),
                                             "GGUF.kv_count": GGUFField(n_kv)}
        for _ in range(n_kv):
            key = string()
            if not _GGUF_KEY.fullmatch(key) or key in self.fields:
                raise ValueError(f"{self.path.name}: corrupt GGUF (metadata key {key!r} is not a GGUF key name "
                                 "or repeats)")
            self.fields[key] = GGUFField(value(u32()))
        metadata_end = pos
        infos = []
        for _ in range(n_tensors):
            name = string()
            n_dims = u32()
            if not 1 <= n_dims <= 4:
                raise ValueError(f"{self.path.name}: corrupt GGUF ({name} has {n_dims} dimensions)")
            dims = [u64() for _ in range(n_dims)]
            kind = u32()
            if kind not in GGMLQuantizationType._value2member_map_:
                raise ValueError(f"{self.path.name}: corrupt GGUF (tensor {name} of unknown type {kind})")
            infos.append((name, dims, GGMLQuantizationType(kind), u64()))
        align = int(self.fields["general.alignment"].value) if "general.alignment" in self.fields else 32
        if align <= 0:
            raise ValueError(f"{self.path.name}: corrupt GGUF alignment {align}")
        base = -(-pos // align) * align
        #: Byte ranges [start, end) of the file's parts (where a damaged byte lies).
        self.sections = {"header": (0, header_end), "metadata": (header_end, metadata_end),
                         "tensor infos": (metadata_end, pos), "padding": (pos, base), "tensor data": (base, size)}
        self.tensors: list[GGUFTensor] = []
        spans = []
        for name, dims, qtype, offset in infos:
            if qtype not in GGML_QUANT_SIZES:
                raise ValueError(f"{self.path.name}: corrupt GGUF (tensor {name} of unknown type {qtype!r})")
            block, nbytes = GGML_QUANT_SIZES[qtype]
            if any(d <= 0 or d > size * block for d in dims) or dims[0] % block:
                raise ValueError(f"{self.path.name}: corrupt GGUF (tensor {name} of shape {dims})")
            rows = math.prod(dims[1:])
            row_bytes = dims[0] // block * nbytes
            start, count = base + offset, rows * row_bytes
            if start + count > size:
                raise ValueError(f"{self.path.name}: truncated GGUF (tensor {name} runs past the end)")
            spans.append((start, start + count, name))
            data = buf[start: start + count]
            if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
                data = data.view(np.float32 if qtype == GGMLQuantizationType.F32 else np.float16)
                data = data.reshape(*dims[::-1])
            else:
                data = data.reshape(*dims[:0:-1], row_bytes)
            self.tensors.append(GGUFTensor(name, qtype, np.array(dims), data))
        _check_layout(self.path.name, spans, base, size, align)


def _check_layout(name: str, spans: list[tuple[int, int, str]], base: int, size: int, align: int) -> None:
    """A GGUF file's tensors lie one after the other from the data section's start, each at the
    next multiple of ``align`` after the previous one, with unique names: a damaged offset, type
    or name (which would silently read another tensor's bytes or drop one) is an error."""
    names = [n for _, _, n in spans]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: corrupt GGUF (tensor names repeat)")
    expected = base
    for start, end, tensor in sorted(spans):
        if start != expected:
            raise ValueError(f"{name}: corrupt GGUF (tensor {tensor} at offset {start - base}, expected "
                             f"{expected - base}: overlapping or misplaced tensor data)")
        expected = -(-end // align) * align
    if spans and size - expected >= align:
        raise ValueError(f"{name}: corrupt GGUF ({size - expected} bytes after the last tensor)")


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


#: Metadata a GGUF file must hold (under its architecture's prefix).
_GGUF_REQUIRED = ("attention.head_count", "embedding_length", "block_count", "feed_forward_length")


def gguf_config(reader) -> DecoderConfig:
    """Architecture from a GGUF file's metadata: the fields every architecture stores alike,
    then what its architecture's ``gguf_fields`` adds (Gemma 3: its local layers, see
    :mod:`empirical.llm.architectures.gemma3`)."""
    name = gguf_field(reader, "general.architecture")
    arch = architectures.for_gguf_arch(name)

    def f(key: str, default=None):
        value = gguf_field(reader, f"{name}.{key}", default)
        if key in _GGUF_REQUIRED and not (isinstance(value, (int, np.integer)) and value > 0):
            raise ValueError(f"GGUF metadata {name}.{key} is {value!r}, not a positive integer")
        return value

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
        vocab = len(gguf_field(reader, "tokenizer.ggml.tokens", ()))
    if not vocab:
        raise ValueError(f"GGUF metadata has neither {name}.vocab_size nor tokenizer.ggml.tokens")
    fields = dict(
        vocab_size=int(vocab), d_model=d_model, n_layers=int(f("block_count")), n_heads=n_heads,
        n_kv_heads=int(f("attention.head_count_kv", n_heads)), head_dim=head_dim,
        d_ff=int(f("feed_forward_length")),
        rms_eps=float(f("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(f("rope.freq_base", 10000.0)), rope_freq_factors=factors,
        tie_embeddings="output.weight" not in names, max_len=int(f("context_length", 8192)))
    try:
        return DecoderConfig(family=arch.name, **arch.gguf_fields(f, fields, names))
    except ValueError as err:
        raise ValueError(f"GGUF metadata describes no valid model: {err}") from None


def dequantize_tensor(tensor) -> np.ndarray:
    """A GGUF tensor as float32 ``[rows, cols]`` numpy (any type ``gguf`` can dequantise)."""
    from gguf import quants

    return np.asarray(quants.dequantize(tensor.data, tensor.tensor_type), np.float32)


def gguf_parts(cfg: DecoderConfig) -> dict[str, str]:
    """Hugging Face per-layer module names -> llama.cpp's ``blk.N.<part>`` names."""
    return dict(cfg.arch.gguf_names)


def gguf_name(cfg: DecoderConfig, name: str) -> str:
    """llama.cpp's name of the tensor Hugging Face calls ``name`` (``model.layers.N.<mod>.<kind>``
    or a whole-model tensor)."""
    if name in GGUF_GLOBAL:
        return GGUF_GLOBAL[name]
    _, _, l, rest = name.split(".", 3)
    mod, kind = rest.rsplit(".", 1)
    return f"blk.{l}.{cfg.arch.gguf_names[mod]}.{kind}"


def load_gguf(path: str | Path) -> tuple[DecoderConfig, dict, object]:
    """Config, parameters and the open ``GGUFReader`` (for the tokenizer) of a GGUF file."""
    reader = GGUFFile(path)
    cfg = gguf_config(reader)
    arch = gguf_field(reader, "general.architecture")
    by_name = {t.name: t for t in reader.tensors}

    def get(name: str) -> np.ndarray:
        gname = gguf_name(cfg, name)
        if gname not in by_name:
            raise ValueError(f"{path}: GGUF tensor {gname} missing")
        used.add(gname)
        w = dequantize_tensor(by_name[gname])
        if cfg.arch.gguf_permuted_qk and ("attn_q." in gname or "attn_k." in gname):
            heads = cfg.n_heads if "attn_q." in gname else cfg.n_kv_heads
            w = unpermute_qk(w, heads)
        return w

    used = {"rope_freqs.weight"}
    params = params_from_named(cfg, get, norm_shift=0.0)
    unused = sorted(set(by_name) - used)
    if unused:  # e.g. a damaged name: output.weight read as another tensor would silently tie the head
        raise ValueError(f"{path}: GGUF tensors the {arch} architecture does not use: {unused[:3]}")
    return cfg, params, reader


def state_dict_from_params(cfg: DecoderConfig, params: Mapping, *,
                           norm_shift: float | None = None) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_named`: Hugging Face names -> ``[out, in]`` arrays
    (``norm_shift`` subtracted from every norm scale; 0 gives what a GGUF file stores)."""
    shift = np.float32(hf_norm_shift(cfg) if norm_shift is None else norm_shift)
    out = {"model.embed_tokens.weight": np.asarray(params["embed"]["embedding"]),
           "model.norm.weight": np.asarray(params["final_norm"]["scale"]) - shift}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = np.asarray(params["lm_head"]["kernel"]).T
    lay = params["layers"]
    norms = cfg.arch.norms
    for l in range(cfg.n_layers):
        pre = f"model.layers.{l}."
        for ours, theirs in cfg.arch.hf_names.items():
            if ours in norms:
                out[pre + theirs + ".weight"] = np.asarray(lay[ours]["scale"][l]) - shift
                continue
            group, _, leaf = ours.partition("/")
            out[pre + theirs + ".weight"] = np.asarray(lay[group][leaf or "kernel"][l]).T
            if not leaf and "bias" in lay[group]:
                out[pre + theirs + ".bias"] = np.asarray(lay[group]["bias"][l])
    return out
