"""The decoder architectures the real-LLM side knows, one file each, in one registry.

Each variant file builds one :class:`Architecture`: what its decoder switches on (Q/K/V
biases, per-head query/key norms, sandwich norms, the MLP's gate activation, a scaled
embedding), its checks of a configuration, how a Hugging Face ``config.json`` and a GGUF
file's metadata become configuration fields, and its tensor names in both formats. The
configuration (:mod:`empirical.llm.config`), the decoder (:mod:`empirical.llm.model`) and the
weight readers and writers (:mod:`empirical.llm.weights`, :mod:`empirical.llm.gguf_io`) look
everything up here; adding an architecture is one new file and one line below.
"""

from __future__ import annotations

from empirical.llm.architectures.base import Architecture
from empirical.llm.architectures import gemma3, llama, qwen2, qwen3

#: family name (``DecoderConfig.family``) -> its architecture, in registration order.
REGISTRY: dict[str, Architecture] = {a.name: a for a in (llama.ARCH, qwen2.ARCH, gemma3.ARCH, qwen3.ARCH)}


def get(family: str) -> Architecture:
    """The architecture of a configuration's ``family``."""
    try:
        return REGISTRY[family]
    except KeyError:
        raise ValueError(f"family must be one of {tuple(REGISTRY)}, got {family!r}") from None


def for_hf_model_type(model_type: str) -> Architecture:
    """The architecture that reads a Hugging Face ``config.json`` of ``model_type``."""
    for arch in REGISTRY.values():
        if model_type in arch.hf_model_types:
            return arch
    known = ", ".join(t for a in REGISTRY.values() for t in a.hf_model_types)
    raise ValueError(f"unsupported model_type {model_type!r} (supported: {known})")


def for_gguf_arch(name: str) -> Architecture:
    """The architecture of a GGUF file's ``general.architecture``."""
    for arch in REGISTRY.values():
        if name in arch.gguf_archs:
            return arch
    known = sorted(g for a in REGISTRY.values() for g in a.gguf_archs)
    raise ValueError(f"unsupported GGUF architecture {name!r} (supported: {known})")


__all__ = ["Architecture", "REGISTRY", "for_gguf_arch", "for_hf_model_type", "get"]
