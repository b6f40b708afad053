"""The decoder of every registered LLM architecture (:mod:`empirical.llm.architectures`:
Llama incl. SmolLM2, Qwen2, Qwen3, Gemma 3) in Flax (linen), with a KV cache and the
intermediates API. Its norms, MLP, rotary embeddings and attention math are the shared parts
of :mod:`construction.parts`, which the constructed and trained transformer runs on too.

Parameters are stacked over layers (``nn.scan``), so a 30-layer model compiles as fast as a
one-layer one. Projections follow Hugging Face's layout, transposed to ``[in, out]`` kernels;
the MLP is the shared one (gate, up and down projections as ``w_gate``, ``w_in``, ``w_out``)::

    embed/embedding                  [vocab, d]
    layers/attn_norm/scale           [L, d]
    layers/{q,k,v}/kernel (+ bias)   [L, d, heads * head_dim]
    layers/o/kernel                  [L, heads * head_dim, d]
    layers/mlp_norm/scale            [L, d]
    layers/mlp/{w_gate,w_in}         [L, d, d_ff]
    layers/mlp/w_out                 [L, d_ff, d]
    final_norm/scale                 [d]
    lm_head/kernel                   [d, vocab]       (absent when embeddings are tied)

What an architecture switches on: Q/K/V biases (Qwen2); ``layers/{q,k}_norm/scale``
[L, head_dim], per-head RMS norms of queries and keys before RoPE (Qwen3, Gemma 3); and
Gemma 3's ``layers/post_attn_norm/scale``, ``layers/post_mlp_norm/scale`` [L, d] (norms of
the attention and MLP outputs before they join the residual stream; ``attn_norm`` and
``mlp_norm`` are its input and pre-feed-forward norms), GELU-tanh MLP, scaled embedding and
local layers. Every norm scale is the factor it multiplies by (Gemma's ``1 + weight``).
``attn.out`` and ``mlp.out`` are what joins the residual stream, i.e. after the post-norms;
``embed`` is the scaled embedding.

Intermediates: the package's one contract (:mod:`construction.primitives`), the same names as
the constructed and trained models (``embed``, ``blocks.{l}.attn.pattern`` / ``attn.out`` /
``resid_mid`` / ``mlp.hidden`` / ``mlp.out`` / ``resid_post``, ``final``, ``logits``),
``capture`` to return them and ``edits`` (name -> function) to change them where they are
computed, also inside the scanned layers. Nothing is captured (or computed) by default.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from construction import parts
from construction.primitives import BLOCK_KINDS, Capture, Edits, activation_names, rope_tables as _rope_tables
from empirical.llm.config import DecoderConfig


def capture_names(capture: Capture, n_layers: int) -> frozenset[str]:
    """Resolve a capture filter (callable or collection of names) to the set of names kept."""
    if capture is None:
        return frozenset()
    names = activation_names(n_layers)
    if callable(capture):
        return frozenset(n for n in names if capture(n))
    wanted = frozenset(capture)
    unknown = wanted - set(names)
    if unknown:
        raise ValueError(f"unknown activation names: {sorted(unknown)[:5]}")
    return wanted


class KVCache(NamedTuple):
    """Keys and values of a prefix, stacked over layers: ``[L, batch, length, kv_heads, head_dim]``.

    ``length`` ([batch] int) says how many leading positions of each row are valid. A cache of
    batch 1 may serve a call of any batch size: every row continues the same prefix.
    """

    k: jax.Array
    v: jax.Array
    length: jax.Array


def rope_tables(cfg: DecoderConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos and sin tables ``[..., head_dim]`` for integer ``positions`` (HF's rotate-half layout)."""
    return _rope_tables(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_freq_factors)


def _folded(a: jax.Array, b: jax.Array, op) -> jax.Array:
    """``op`` ([b, kv, n, x] . [1, kv, s, y]) with the batch folded into the rows: one
    prefix cache serves every row, as a plain [kv, b*n, x] x [kv, s, y] product."""
    nb, kv, n, x = a.shape
    out = op(a.transpose(1, 0, 2, 3).reshape(1, kv, nb * n, x), b)
    return out.reshape(kv, nb, n, -1).transpose(1, 0, 2, 3)


def _scores(qh: jax.Array, keys: jax.Array, shared: bool) -> jax.Array:
    """``qh`` [b, kv, q, d] . ``keys`` [b or 1, s, kv, d] -> [b, kv, q, s]."""
    keys = keys.transpose(0, 2, 1, 3)
    return _folded(qh, keys, parts.scores) if shared else parts.scores(qh, keys)


def _mix(probs: jax.Array, values: jax.Array, shared: bool) -> jax.Array:
    """``probs`` [b, kv, q, s] . ``values`` [b or 1, s, kv, d] -> [b, kv, q, d]."""
    values = values.transpose(0, 2, 1, 3)
    return _folded(probs, values, parts.mix) if shared else parts.mix(probs, values)


def _norm(eps: float, dtype: Any, name: str) -> parts.Norm:
    """The shared RMS norm as Hugging Face's Llama computes it (statistics in float32, the
    normalised values rounded to ``dtype`` before the scale), float32 scale."""
    return parts.Norm("rms", dtype, eps, round_first=True, param_dtype=jnp.float32, name=name)


def _dense(features: int, name: str, dtype: Any, bias: bool = False) -> nn.Dense:
    return nn.Dense(features, use_bias=bias, dtype=dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=nn.initializers.normal(0.02))


class Block(nn.Module):
    """One pre-norm decoder block: GQA attention with RoPE over a KV cache, then the gated MLP,
    with the parts its architecture switches on (biases, q/k norms, post-norms, local layers)."""

    cfg: DecoderConfig
    kinds: frozenset[str]  # which of BLOCK_KINDS to emit (for every layer; filtered after scan)
    edits: tuple = ()  # (layer, kind, function) triples: edits of this block's activations

    @nn.compact
    def __call__(self, x, layer_cache, index, rope, mask, patch=None, patch_pos=None):
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        arch = cfg.arch
        out: dict[str, jax.Array] = {}

        def tap(kind: str, value: jax.Array) -> jax.Array:
            for layer, k, fn in self.edits:  # the scanned layer index picks the edited layer
                if k == kind:
                    value = jnp.where(index == layer, fn(value), value)
            if kind in self.kinds:
                out[kind] = value
            return value

        b, t, _ = x.shape
        h, kv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        g = h // kv
        cos, sin = rope[0], rope[1]
        mask, mask_local = mask[0], mask[-1]
        if len(rope) == 4:  # local (sliding-window) layers: this layer's RoPE base and window
            is_local = jnp.asarray(cfg.local_layers)[index]
            cos, sin = jnp.where(is_local, rope[2], cos), jnp.where(is_local, rope[3], sin)
            mask = jnp.where(is_local, mask_local, mask)
        pk, pv = layer_cache
        a = _norm(cfg.rms_eps, dt, name="attn_norm")(x)
        q = _dense(h * hd, "q", dt, cfg.qkv_bias)(a).reshape(b, t, h, hd)
        k = _dense(kv * hd, "k", dt, cfg.qkv_bias)(a).reshape(b, t, kv, hd)
        v = _dense(kv * hd, "v", dt, cfg.qkv_bias)(a).reshape(b, t, kv, hd)
        if arch.qk_norm:  # per-head RMS norms of queries and keys, before RoPE
            q = _norm(cfg.rms_eps, dt, name="q_norm")(q)
            k = _norm(cfg.rms_eps, dt, name="k_norm")(k)
        q, k = parts.rotate(q, cos, sin), parts.rotate(k, cos, sin)
        scale = np.float32(cfg.attn_scale)
        # Head h uses KV head h // g (Hugging Face's repeat_kv order). Queries are laid out as
        # [b, kv, g*t, d] so every score/value product is a plain batched matmul (XLA:CPU runs
        # 5-D einsums with two batch axes several times slower).
        qh = q.reshape(b, t, kv, g, hd).transpose(0, 2, 3, 1, 4).reshape(b, kv, g * t, hd)
        shared = pk.shape[0] == 1 and b != 1  # one prefix cache serves every row
        s_pre = _scores(qh, pk.astype(dt), shared)
        s_new = _scores(qh, k.astype(dt), False)
        scores = jnp.concatenate([s_pre, s_new], axis=-1).reshape(b, kv, g, t, -1)
        probs = parts.attention_probs(scores, mask[:, None, None], scale, jnp.float32)
        probs = tap("attn.pattern", probs.reshape(b, h, t, -1)).reshape(b, kv, g, t, -1)
        plen = pk.shape[1]
        pr = probs.astype(dt).reshape(b, kv, g * t, -1)
        att = _mix(pr[..., :plen], pv.astype(dt), shared) + _mix(pr[..., plen:], v, False)
        att = att.reshape(b, kv, g, t, hd).transpose(0, 3, 1, 2, 4).reshape(b, t, h * hd)
        att = _dense(cfg.d_model, "o", dt)(att)
        if arch.sandwich_norms:
            att = _norm(cfg.rms_eps, dt, name="post_attn_norm")(att)
        x = tap("resid_mid", x + tap("attn.out", att))
        out.update(k=k, v=v)
        m = _norm(cfg.rms_eps, dt, name="mlp_norm")(x)
        mo = parts.MLP(cfg.d_ff, arch.mlp, dt, param_dtype=jnp.float32, name="mlp")(m, tap)
        if arch.sandwich_norms:
            mo = _norm(cfg.rms_eps, dt, name="post_mlp_norm")(mo)
        x = x + tap("mlp.out", mo)
        if patch is not None:  # replace this layer's output at patch_pos [b] where the flag is set
            x = _patched(x, patch, patch_pos)
        return tap("resid_post", x), out


def _patched(x: jax.Array, patch: tuple[jax.Array, jax.Array], pos: jax.Array) -> jax.Array:
    """``x`` [b, t, d] with row i's position ``pos[i]`` set to ``vectors[i]`` if ``on`` (a
    scalar flag); ``patch`` is ``(vectors [b, d], on)``."""
    vectors, on = patch
    rows = jnp.arange(x.shape[0])
    new = jnp.where(on > 0, vectors.astype(x.dtype), x[rows, pos])
    return x.at[rows, pos].set(new)


class Decoder(nn.Module):
    """The LLM decoder (any registered architecture). ``__call__`` returns ``(logits, new_kv, captured)``.

    ``new_kv`` holds the keys and values of ``tokens`` only (not of the prefix in ``cache``),
    with ``length`` set to the number of tokens; callers that right-pad set it themselves.

    Args to ``__call__``:
      tokens: int [batch, length].
      positions: int [batch, length] absolute positions (default ``cache.length + arange``).
      cache: a :class:`KVCache` of a prefix these tokens continue, or None.
      logit_index: int [batch, n] positions (into ``tokens``) whose logits to compute, or
        None for all positions; the vocabulary projection is the costliest matmul of a small
        model, so a prefix pass asks only for its last position.
      capture: a frozenset of canonical activation names (see :func:`capture_names`).
      edits: name -> function of the activation (the package's contract): ``embed``,
        ``blocks.{l}.{kind}``, ``final`` and ``logits`` (of the positions in ``logit_index``).
      patch: ``(layer, vectors [batch, d], position [batch])``: replace the residual stream
        after ``layer`` (0: the embedding, l: block l-1's ``resid_post``) at each row's
        ``position`` by its vector (task-vector patching; the same meaning as an edit of
        ``embed`` / ``blocks.{l-1}.resid_post`` in :func:`construction.transformer.run`).
    """

    cfg: DecoderConfig

    @nn.compact
    def __call__(self, tokens, positions=None, cache: KVCache | None = None, logit_index=None,
                 capture: frozenset[str] = frozenset(), patch=None, edits: Edits = None):
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        b, t = tokens.shape
        if cache is None:
            shape = (cfg.n_layers, b, 0, cfg.n_kv_heads, cfg.head_dim)
            cache = KVCache(jnp.zeros(shape, dt), jnp.zeros(shape, dt), jnp.zeros((b,), jnp.int32))
        plen = cache.k.shape[2]
        if positions is None:
            positions = jnp.broadcast_to(cache.length, (b,))[:, None] + jnp.arange(t)[None, :]
        # mask[b, q, s]: prefix keys valid up to cache.length; new keys causal.
        prefix_ok = jnp.arange(plen)[None, None, :] < jnp.broadcast_to(cache.length, (b,))[:, None, None]
        prefix_ok = jnp.broadcast_to(prefix_ok, (b, t, plen))
        causal = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool))[None], (b, t, t))
        mask = jnp.concatenate([prefix_ok, causal], axis=-1)
        rope = rope_tables(cfg, positions)
        masks = (mask,)
        if any(cfg.local_layers):
            # local layers see keys less than sliding_window positions back; prefix keys sit
            # at absolute positions 0..plen-1, new keys at ``positions``
            kpos = jnp.concatenate([jnp.broadcast_to(jnp.arange(plen), (b, plen)), positions], axis=1)
            near = positions[:, :, None] - kpos[:, None, :] < cfg.sliding_window
            masks = (mask, mask & near)
            rope = (*rope, *_rope_tables(positions, cfg.head_dim, cfg.rope_local_theta, None))
        embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=dt, param_dtype=jnp.float32,
                         name="embed", embedding_init=nn.initializers.normal(0.02))
        edits = dict(edits or {})
        unknown = set(edits) - set(activation_names(cfg.n_layers))
        if unknown:
            raise ValueError(f"unknown activation names to edit: {sorted(unknown)[:5]}")
        x = embed(tokens).astype(dt)
        if cfg.arch.embed_scale:  # Gemma scales the embedding by sqrt(d_model), rounded to float32 first
            x = x * jnp.asarray(np.float32(np.sqrt(cfg.d_model)), dt)
        if "embed" in edits:
            x = edits["embed"](x)
        scan_patch = ()
        if patch is not None:
            layer, vectors, pos = patch
            layer = jnp.asarray(layer)
            x = _patched(x, (vectors, (layer == 0).astype(jnp.float32)), pos)
            on = (jnp.arange(1, cfg.n_layers + 1) == layer).astype(jnp.float32)  # [L]
            scan_patch = ((jnp.broadcast_to(vectors, (cfg.n_layers, *vectors.shape)), on), pos)
        captured: dict[str, jax.Array] = {}
        if "embed" in capture:
            captured["embed"] = x
        kinds = frozenset(k for k in BLOCK_KINDS
                          if any(f"blocks.{l}.{k}" in capture for l in range(cfg.n_layers)))
        block_edits = tuple((int(name.split(".")[1]), name.split(".", 2)[2], fn) for name, fn in edits.items()
                            if name.startswith("blocks."))
        extra_axes = (0, nn.broadcast) if scan_patch else ()
        stack = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                        in_axes=(0, 0, nn.broadcast, nn.broadcast, *extra_axes), length=cfg.n_layers)
        x, outs = stack(cfg, kinds, block_edits, name="layers")(x, (cache.k, cache.v), jnp.arange(cfg.n_layers),
                                                               rope, masks, *scan_patch)
        for kind in kinds:
            for l in range(cfg.n_layers):
                if f"blocks.{l}.{kind}" in capture:
                    captured[f"blocks.{l}.{kind}"] = outs[kind][l]
        x = _norm(cfg.rms_eps, dt, name="final_norm")(x)
        if "final" in edits:
            x = edits["final"](x)
        if "final" in capture:
            captured["final"] = x
        if logit_index is not None:
            x = jnp.take_along_axis(x, logit_index[..., None], axis=1)
        if cfg.tie_embeddings:
            logits = embed.attend(x)
        else:
            logits = _dense(cfg.vocab_size, "lm_head", dt)(x)
        logits = logits.astype(jnp.float32)
        if cfg.final_softcap:
            logits = cfg.final_softcap * jnp.tanh(logits / cfg.final_softcap)
        if "logits" in edits:
            logits = edits["logits"](logits)
        if "logits" in capture:
            captured["logits"] = logits
        new_kv = KVCache(outs["k"], outs["v"], jnp.full((b,), t, jnp.int32))
        return logits, new_kv, captured



def init_params(cfg: DecoderConfig, key: jax.Array) -> dict:
    """Random parameters (normal(0.02) kernels, unit norms) for ``cfg``."""
    tokens = jnp.zeros((1, 2), jnp.int32)
    return Decoder(cfg).init(key, tokens)["params"]
