"""The pieces every model of the package is made of, shared by the constructed and trained
transformer (:mod:`construction.transformer`) and the real LLMs (:mod:`empirical.llm.model`):
rotary positions, RMS normalisation, and the intermediates contract.

The intermediates contract: every model names its activations alike, ``embed``,
``blocks.{l}.attn.pattern`` ([batch, heads, query, key]), ``blocks.{l}.attn.out``,
``blocks.{l}.resid_mid``, ``blocks.{l}.mlp.hidden``, ``blocks.{l}.mlp.out``,
``blocks.{l}.resid_post``, ``final`` (after the last norm) and ``logits``; ``capture`` (a
collection of names or a predicate on them) selects what is returned, ``edits`` (name ->
function of the activation) changes an activation where it is computed, so that everything
downstream sees the edit (patching). Nothing is captured or edited by default.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Capture = Callable[[str], bool] | Collection[str] | None
Edits = Mapping[str, Callable[[Array], Array]] | None

#: The per-block activation names (``blocks.{l}.{kind}``), in the order a block computes them.
BLOCK_KINDS = ("attn.pattern", "attn.out", "resid_mid", "mlp.hidden", "mlp.out", "resid_post")


def activation_names(n_layers: int) -> list[str]:
    """Every canonical activation name of a model with ``n_layers`` blocks."""
    return ["embed"] + [f"blocks.{l}.{k}" for l in range(n_layers) for k in BLOCK_KINDS] + ["final", "logits"]


def wanted(capture: Capture) -> Callable[[str], bool]:
    """A capture filter (None, a predicate or a collection of names) as a predicate."""
    if capture is None:
        return lambda name: False
    if callable(capture):
        return capture
    return frozenset(capture).__contains__


@dataclass
class Tap:
    """Where intermediates are captured and edited: one object threaded through a call."""

    capture: Capture = None
    edits: Edits = None
    cache: dict[str, Array] = field(default_factory=dict)

    def __post_init__(self):
        self._wants = wanted(self.capture)

    def __call__(self, name: str, value: Array) -> Array:
        if self.edits and name in self.edits:
            value = self.edits[name](value)
        if self._wants(name):
            self.cache[name] = value
        return value


def rope_tables(positions: Array, dim: int, theta: float, freq_factors=None) -> tuple[Array, Array]:
    """cos and sin tables ``[..., dim]`` of integer ``positions`` for rotary embeddings in the
    half-split ("rotate half") layout; ``freq_factors`` divide the frequencies (Llama 3)."""
    half = dim // 2
    inv = 1.0 / (theta ** (np.arange(half, dtype=np.float64) * 2 / dim))
    if freq_factors is not None:
        inv = inv / np.asarray(freq_factors, dtype=np.float64)
    ang = positions[..., None].astype(jnp.float32) * jnp.asarray(inv, jnp.float32)
    ang = jnp.concatenate([ang, ang], axis=-1)
    return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """Rotate the last axis of ``x`` by tables that broadcast against it (``rope_tables``)."""
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos.astype(x.dtype) + rot * sin.astype(x.dtype)


def rms_normalize(x: Array, eps: float, *, center: bool = False) -> Array:
    """``x / rms(x)`` over the last axis in at least float32 (``center``: subtract the mean
    first, as layer norm does); the caller applies its scale and casts back."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if center:
        x32 = x32 - x32.mean(-1, keepdims=True)
    return x32 * jax.lax.rsqrt((x32 * x32).mean(-1, keepdims=True) + eps)
