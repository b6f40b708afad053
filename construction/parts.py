"""The Flax parts of a decoder block, shared by the constructed and trained transformer
(:mod:`construction.transformer`) and the real LLMs (:mod:`empirical.llm.model`).

* :class:`Norm`: none, RMS or layer norm (statistics in at least float32);
* :class:`MLP`: ReLU (the construction; any per-layer width), SwiGLU (trained models, Llama,
  Qwen) or GELU-tanh gated (Gemma), parameters ``w_in`` [d, F], ``w_gate`` [d, F] (gated
  kinds), ``w_out`` [F, d], optional biases ``b_in``, ``b_out``;
* :func:`rope` / :func:`rotate`: rotary position embeddings (half-split layout);
* attention math: :func:`scores` (query-key products), :func:`attention_probs` (scale, mask
  and softmax in at least float32), :func:`mix` (the weighted sum of values), all on
  grouped heads laid out ``[batch, kv_heads, group * queries, dim]`` (query head ``h`` reads
  key/value head ``h // group``, Hugging Face's ``repeat_kv`` order); and :class:`Attention`,
  causal self-attention over a whole sequence with grouped key/value heads, parameters
  ``query`` [d, heads, k], ``key`` [d, kv_heads, k], ``value`` [d, kv_heads, v], ``out``
  [heads, v, d] (the construction's case is ``kv_heads = heads``).

The real LLMs' attention (:mod:`empirical.llm.model`) keeps its own module around the same
math: it attends over a KV cache whose prefix one batch may share, with per-layer masks and
RoPE tables chosen inside a scan over layers, and Hugging Face's fused Q/K/V projection layout.

A ``tap(kind, value) -> value`` callable names an activation by its kind (``"attn.pattern"``,
``"mlp.hidden"``): the caller captures or edits it there (the intermediates contract of
:mod:`construction.primitives`).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from construction.primitives import Array, apply_rope, rms_normalize, rope_tables

Tap = Callable[[str, Array], Array]

#: The MLP kinds: activation of the hidden layer (gated kinds multiply it by ``x @ w_in``).
MLP_KINDS = ("relu", "swiglu", "gelu_tanh")


def _untapped(kind: str, value: Array) -> Array:
    return value


def _param(module: nn.Module, name: str, init, shape, dtype) -> Array:
    """A parameter in ``dtype`` (None: Flax's default float type, float64 under x64)."""
    if dtype is None:
        return module.param(name, init, shape)
    return module.param(name, init, shape, dtype)


# ----------------------------------------------------------------------------- rotary positions

def rope(x: Array, positions: Array, theta: float, freq_factors=None) -> Array:
    """Rotary position embedding on the last axis of x [..., length, dim] (half-split), with
    ``positions`` [length]. The construction calls it heads-major ([batch, heads, length,
    dim]): on the CPU, XLA fuses it into the score matmul badly in the [batch, length, heads,
    dim] layout (3x slower forward)."""
    cos, sin = rope_tables(positions, x.shape[-1], theta, freq_factors)
    return apply_rope(x, cos, sin)


def rotate(x: Array, cos: Array, sin: Array) -> Array:
    """Rotate ``x`` [batch, length, heads, dim] by tables [batch, length, dim] (``rope_tables``
    of each row's positions)."""
    return apply_rope(x, cos[:, :, None, :], sin[:, :, None, :])


# ----------------------------------------------------------------------------- norms and MLPs

class Norm(nn.Module):
    """``kind`` "none", "rms" or "layer" (centred RMS norm plus a bias) over the last axis.

    The statistics are computed in at least float32 and the scale applied there before the
    cast to ``dtype``; ``round_first`` casts the normalised values to ``dtype`` first and
    scales in ``dtype`` (Hugging Face's Llama order, which the real LLMs follow).
    ``param_dtype`` None is Flax's default float type."""

    kind: str = "rms"
    dtype: Any = jnp.float32
    eps: float = 1e-6
    round_first: bool = False
    param_dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.kind == "none":
            return x
        d = x.shape[-1]
        y = rms_normalize(x, self.eps, center=self.kind == "layer")
        scale = _param(self, "scale", nn.initializers.ones, (d,), self.param_dtype)
        if self.round_first:
            y = scale.astype(self.dtype) * y.astype(self.dtype)
        else:
            y = y * scale
        if self.kind == "layer":
            y = y + _param(self, "bias", nn.initializers.zeros, (d,), self.param_dtype)
        return y.astype(self.dtype)


class MLP(nn.Module):
    """``w_out . act(x w_in (+ b_in))`` (``relu``) or ``w_out . (act(x w_gate) * (x w_in + b_in))``
    (``swiglu``: SiLU, ``gelu_tanh``: GELU's tanh approximation), ``+ b_out`` with ``bias``.
    The hidden activation is tapped as ``mlp.hidden``."""

    width: int
    kind: str = "swiglu"
    dtype: Any = jnp.float32
    bias: bool = False
    param_dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, tap: Tap = _untapped) -> Array:
        if self.kind not in MLP_KINDS:
            raise ValueError(f"MLP kind must be one of {MLP_KINDS}, got {self.kind!r}")
        dt, pdt, d = self.dtype, self.param_dtype, x.shape[-1]
        init = nn.initializers.normal(0.02)
        w_in = _param(self, "w_in", init, (d, self.width), pdt).astype(dt)
        w_out = _param(self, "w_out", init, (self.width, d), pdt).astype(dt)
        h = x @ w_in
        if self.bias:
            h = h + _param(self, "b_in", nn.initializers.zeros, (self.width,), pdt).astype(dt)
        if self.kind == "relu":
            h = jax.nn.relu(h)
        else:
            gate = x @ _param(self, "w_gate", init, (d, self.width), pdt).astype(dt)
            act = jax.nn.silu if self.kind == "swiglu" else (lambda z: jax.nn.gelu(z, approximate=True))
            h = act(gate) * h
        out = tap("mlp.hidden", h) @ w_out
        if self.bias:
            out = out + _param(self, "b_out", nn.initializers.zeros, (d,), pdt).astype(dt)
        return out


# ----------------------------------------------------------------------------- attention

def scores(q: Array, k: Array, acc=None) -> Array:
    """Query-key products ``q`` [b, kv, n, d] . ``k`` [b, kv, s, d] -> [b, kv, n, s], in
    ``acc`` (e.g. float32 for bfloat16 inputs) or else in the inputs' type."""
    if acc is None:
        return jnp.einsum("bhqk,bhsk->bhqs", q, k)
    return jnp.einsum("bhqk,bhsk->bhqs", q, k, preferred_element_type=acc)


def attention_probs(s: Array, mask: Array, scale: float, acc=jnp.float32) -> Array:
    """Softmax over the last axis of ``s * scale`` where ``mask`` holds (computed in ``acc``)."""
    s = s.astype(acc) * jnp.asarray(scale, acc)
    return jax.nn.softmax(jnp.where(mask, s, jnp.finfo(acc).min), axis=-1)


def mix(probs: Array, v: Array) -> Array:
    """The attention-weighted values: ``probs`` [b, kv, n, s] . ``v`` [b, kv, s, d] -> [b, kv, n, d]."""
    return jnp.einsum("bhqs,bhsk->bhqk", probs, v)


class Attention(nn.Module):
    """Causal self-attention over a whole sequence, heads-major, with ``num_kv_heads`` key/value
    heads (a divisor of ``num_heads``). ``rope_theta`` None: no rotary positions. Scores and
    softmax run in at least float32. ``last_only``: queries at the last position only."""

    num_heads: int
    num_kv_heads: int
    qk_dim: int
    v_dim: int
    scale: float
    dtype: Any = jnp.float32
    rope_theta: float | None = None
    param_dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, tap: Tap = _untapped, last_only: bool = False) -> Array:
        dt, pdt = self.dtype, self.param_dtype
        h, kv, d = self.num_heads, self.num_kv_heads, x.shape[-1]
        init = nn.initializers.normal(0.02)
        wq = _param(self, "query", init, (d, h, self.qk_dim), pdt).astype(dt)
        wk = _param(self, "key", init, (d, kv, self.qk_dim), pdt).astype(dt)
        wv = _param(self, "value", init, (d, kv, self.v_dim), pdt).astype(dt)
        wo = _param(self, "out", init, (h, self.v_dim, d), pdt).astype(dt)
        b, length = x.shape[0], x.shape[1]
        key_pos = jnp.arange(length)
        query_pos = key_pos[-1:] if last_only else key_pos
        nq = query_pos.shape[0]
        q = jnp.einsum("bld,dhk->bhlk", x[:, -1:] if last_only else x, wq)
        k = jnp.einsum("bld,dhk->bhlk", x, wk)
        v = jnp.einsum("bld,dhk->bhlk", x, wv)
        if self.rope_theta is not None:
            q, k = rope(q, query_pos, self.rope_theta), rope(k, key_pos, self.rope_theta)
        acc = jnp.promote_types(dt, jnp.float32)  # scores and softmax in at least float32
        g = h // kv
        s = scores(q.reshape(b, kv, g * nq, self.qk_dim), k, None if acc == dt else acc)
        causal = key_pos[None, :] <= query_pos[:, None]
        pattern = tap("attn.pattern", attention_probs(s.reshape(b, h, nq, length), causal, self.scale, acc).astype(dt))
        z = mix(pattern.reshape(b, kv, g * nq, length), v).reshape(b, h, nq, self.v_dim)
        return jnp.einsum("bhqk,hkd->bqd", z, wo)
