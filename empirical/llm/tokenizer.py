"""Tokenisers through the ``tokenizers`` library, from GGUF metadata or ``tokenizer.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# Pre-tokenisation regexes of llama.cpp's BPE pre-tokenizer types (public tokenizer specs).
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_DIGIT_SPLIT_PRE = frozenset({"smollm", "starcoder", "refact", "codeshell", "command-r"})
_GPT2_PRE = frozenset({"gpt2", "default", "gpt-2", "olmo", "jais", "mpt"})
_LLAMA3_PRE = frozenset({"llama-bpe", "llama3", "smaug-bpe"})
_QWEN2_PRE = frozenset({"qwen2", "deepseek-r1-qwen"})
SUPPORTED_GGUF_PRE = tuple(sorted(_DIGIT_SPLIT_PRE | _GPT2_PRE | _LLAMA3_PRE | _QWEN2_PRE))


@dataclass(frozen=True, kw_only=True)
class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the model's BOS convention.

    ``encode`` never adds special tokens itself; :meth:`encode_prompt` prepends BOS when the
    model expects it (``add_bos``).
    """

    backend: object
    bos_id: int | None
    eos_id: int | None
    add_bos: bool

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary including added tokens."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added."""
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of ``text`` as the start of a sequence (BOS prepended when the model uses one)."""
        ids = self.encode(text)
        return ([self.bos_id] + ids) if self.add_bos and self.bos_id is not None else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (special tokens kept)."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def token_texts(self) -> list[str]:
        """Decoded text of every single token id (for newline detection in beam search)."""
        return [self.backend.decode([i], skip_special_tokens=False) for i in range(self.vocab_size)]


def _pre_tokenizer(pre: str):
    from tokenizers import Regex, pre_tokenizers as pt

    if pre in _DIGIT_SPLIT_PRE:
        return pt.Sequence([pt.Digits(individual_digits=True),
                            pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in _GPT2_PRE:
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _LLAMA3_PRE or pre in _QWEN2_PRE:
        regex = _LLAMA3_REGEX if pre in _LLAMA3_PRE else _QWEN2_REGEX
        return pt.Sequence([pt.Split(Regex(regex), behavior="isolated", invert=False),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise ValueError(f"unsupported GGUF pre-tokenizer {pre!r} (supported: {', '.join(SUPPORTED_GGUF_PRE)})")


def sentencepiece_merges(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece-style BPE over ``tokens`` in vocabulary order.

    SentencePiece's BPE (llama.cpp's ``llama`` tokenizer) repeatedly joins the adjacent pair
    whose concatenation is the best token, best meaning highest score; a SentencePiece BPE
    vocabulary lists its pieces in that order (Gemma 3's normal tokens have strictly falling
    scores), while its user-defined pieces carry placeholder scores but come first, as
    llama.cpp matches them before BPE. So the rank is the position: every split of every
    token into two tokens, earlier tokens first (within one token, the longer left part).
    """
    index: dict[str, int] = {}
    for i, t in enumerate(tokens):
        index.setdefault(t, i)
    found = []
    for i, t in enumerate(tokens):
        for cut in range(1, len(t)):
            left, right = t[:cut], t[cut:]
            if left in index and right in index:
                found.append((i, -cut, left, right))
    found.sort()
    return [(left, right) for *_, left, right in found]


def _token_types(reader, n: int) -> list[int]:
    """``tokenizer.ggml.token_type``: one of llama.cpp's types (0 undefined, 1 normal, 2 unknown,
    3 control, 4 user-defined, 5 unused, 6 byte) per token (all normal if absent)."""
    from empirical.llm.weights import gguf_field

    types = [int(t) for t in gguf_field(reader, "tokenizer.ggml.token_type", [1] * n)]
    if len(types) != n or not all(0 <= t <= 6 for t in types):
        raise ValueError(f"GGUF tokenizer.ggml.token_type is not one type in 0..6 for each of the {n} tokens")
    return types


def _sentencepiece_from_gguf(reader) -> Tokenizer:
    """The ``llama`` (SentencePiece BPE with scores and byte fallback) tokeniser of a GGUF file.

    Spaces become ``▁`` before BPE (a prefix ``▁`` only when
    ``tokenizer.ggml.add_space_prefix`` says so); characters with no token fall back to the
    ``<0xXX>`` byte tokens. CONTROL and USER_DEFINED tokens are matched whole in the text. A
    token made of spaces only is stored with real spaces in Gemma's files while BPE sees
    ``▁``s, so it is respelled (and joins BPE, which then gives what llama.cpp's whole
    match of the raw spaces gives). Merge ranks: :func:`sentencepiece_merges`.
    """
    from tokenizers import AddedToken, Tokenizer as TK, decoders, models, normalizers

    from empirical.llm.weights import gguf_field

    tokens = [("▁" * len(t) if t and not t.strip(" ") else t)
              for t in gguf_field(reader, "tokenizer.ggml.tokens")]
    types = _token_types(reader, len(tokens))
    unk = gguf_field(reader, "tokenizer.ggml.unknown_token_id")
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    tk = TK(models.BPE(vocab=vocab, merges=sentencepiece_merges(tokens), fuse_unk=True,
                       byte_fallback=True, unk_token=None if unk is None else tokens[int(unk)]))
    steps = [normalizers.Replace(" ", "▁")]
    if gguf_field(reader, "tokenizer.ggml.add_space_prefix", True):
        steps.insert(0, normalizers.Prepend("▁"))
    tk.normalizer = normalizers.Sequence(steps)
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = [AddedToken(t, special=(ty == 3), normalized=False)
                for t, ty in zip(tokens, types) if ty in (3, 4) and "▁" not in t]
    if specials:
        tk.add_tokens(specials)
    return _with_special_ids(tk, reader, default_bos=True)


def _with_special_ids(tk, reader, *, default_bos: bool) -> Tokenizer:
    from empirical.llm.weights import gguf_field

    bos = gguf_field(reader, "tokenizer.ggml.bos_token_id")
    eos = gguf_field(reader, "tokenizer.ggml.eos_token_id")
    add_bos = bool(gguf_field(reader, "tokenizer.ggml.add_bos_token", default_bos))
    return Tokenizer(backend=tk, bos_id=None if bos is None else int(bos),
                     eos_id=None if eos is None else int(eos), add_bos=add_bos)


def tokenizer_from_gguf(reader) -> Tokenizer:
    """Build the tokeniser stored in a GGUF file's metadata: byte-level BPE (``gpt2``) or
    SentencePiece-style BPE with scores (``llama``, e.g. Gemma 3)."""
    from tokenizers import AddedToken, Tokenizer as TK, decoders, models

    from empirical.llm.weights import gguf_field

    kind = gguf_field(reader, "tokenizer.ggml.model")
    if kind == "llama":
        return _sentencepiece_from_gguf(reader)
    if kind != "gpt2":
        raise ValueError(f"unsupported GGUF tokenizer model {kind!r}: only byte-level BPE ('gpt2') and "
                         "SentencePiece BPE ('llama') are built from GGUF metadata; load a Hugging Face "
                         "folder with tokenizer.json instead")
    tokens, merges = gguf_field(reader, "tokenizer.ggml.tokens"), gguf_field(reader, "tokenizer.ggml.merges")
    if not isinstance(tokens, list) or not isinstance(merges, list):
        raise ValueError("the GGUF byte-level BPE tokenizer needs tokenizer.ggml.tokens and tokenizer.ggml.merges "
                         "(lists of strings)")
    merges = [tuple(m.split(" ", 1)) for m in merges]
    types = _token_types(reader, len(tokens))
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("the GGUF tokenizer's tokens repeat")
    try:
        tk = TK(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    except Exception as err:  # noqa: BLE001 (the tokenizers library raises a bare Exception)
        raise ValueError(f"the GGUF tokenizer cannot be built: {err}") from None
    tk.pre_tokenizer = _pre_tokenizer(gguf_field(reader, "tokenizer.ggml.pre", "gpt2"))
    tk.decoder = decoders.ByteLevel()
    # CONTROL (3) and USER_DEFINED (4) tokens are matched whole, never split.
    specials = [AddedToken(t, special=(ty == 3), normalized=False)
                for t, ty in zip(tokens, types) if ty in (3, 4)]
    if specials:
        tk.add_tokens(specials)
    return _with_special_ids(tk, reader, default_bos=False)


def tokenizer_from_folder(folder: str | Path) -> Tokenizer:
    """Build the tokeniser of a Hugging Face folder (tokenizer.json, tokenizer_config.json)."""
    from tokenizers import Tokenizer as TK

    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no tokenizer.json")
    tk = TK.from_file(str(path))
    conf = {}
    if (folder / "tokenizer_config.json").is_file():
        conf = json.loads((folder / "tokenizer_config.json").read_text())
    model_conf = {}
    if (folder / "config.json").is_file():
        model_conf = json.loads((folder / "config.json").read_text())

    def token_id(value) -> int | None:
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return tk.token_to_id(value)
        return value if isinstance(value, int) else None

    bos = token_id(conf.get("bos_token")) if conf.get("bos_token") is not None else None
    if bos is None and isinstance(model_conf.get("bos_token_id"), int):
        bos = model_conf["bos_token_id"]
    eos_raw = conf.get("eos_token") if conf.get("eos_token") is not None else model_conf.get("eos_token_id")
    eos = token_id(eos_raw[0] if isinstance(eos_raw, list) else eos_raw)
    if "add_bos_token" in conf:
        add_bos = bool(conf["add_bos_token"])
    else:  # the post-processor decides (e.g. Llama 3's template prepends <|begin_of_text|>)
        with_special = tk.encode("a", add_special_tokens=True).ids
        without = tk.encode("a", add_special_tokens=False).ids
        add_bos = bos is not None and len(with_special) > len(without) and with_special[0] == bos
    return Tokenizer(backend=tk, bos_id=bos, eos_id=eos, add_bos=add_bos and bos is not None)
