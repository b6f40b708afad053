"""The one Flax transformer that constructed and trained models both run on.

A decoder-only causal transformer whose options cover both uses (one model class for constructed and trained weights):

* the construction of Theorem 1: no normalisation, ReLU MLPs, structured positions (the
  layout features of :mod:`construction.layout` projected into the residual stream), the
  attention sharpness baked into the weights (``attn_scale=1``);
* models trained from scratch: RMS or layer norm, SwiGLU MLPs, RoPE or learned positions.

Every call can capture intermediates under canonical names and apply edits (patches) at the
same points, so every model in the package shares one intermediates API:

``embed``, ``blocks.{l}.attn.pattern`` [batch, heads, query, key], ``blocks.{l}.attn.out``,
``blocks.{l}.resid_mid``, ``blocks.{l}.mlp.hidden``, ``blocks.{l}.mlp.out``,
``blocks.{l}.resid_post``, ``final`` (after the final norm), ``logits``.
"""

from __future__ import annotations

import functools

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from construction.layout import binary_code, structured_features
from construction.parts import MLP, Attention, Norm
from construction.primitives import Array, Capture, Edits, Tap


#: The allowed values of the configuration's string options.
CHOICES = {
    "positions": ("structured", "learned", "rope", "none"),
    "norm": ("none", "rms", "layer"),
    "mlp": ("relu", "swiglu"),
    "dtype": ("float32", "float64", "bfloat16"),
}


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Architecture of a decoder-only transformer (saved as JSON beside weights and results).

    ``mlp_dims`` holds one hidden width per layer (an int in the constructor means the same
    width everywhere; 0 means the layer has no MLP and no parameters for one). ``input_vocab`` set means integer token inputs; otherwise inputs are
    vectors of ``input_dim`` (the continuous regime). ``attn_scale`` None means 1/sqrt(qk_dim).
    ``offset_period`` > 0 adds a learned embedding of ``position mod offset_period`` (the
    offset inside fixed-length examples, as the structured positions carry it) to any other
    position scheme, and with ``code_bits`` > 0 a learned projection of the +-1 binary code
    of ``position // offset_period`` (the example index): trained models then see where they
    are inside an example and which example they are in, as the constructed model does.
    """

    num_layers: int
    d_model: int
    num_heads: int
    qk_dim: int
    v_dim: int
    mlp_dims: tuple[int, ...] | int
    output_dim: int
    input_vocab: int | None = None
    input_dim: int | None = None
    positions: Literal["structured", "learned", "rope", "none"] = "rope"
    max_len: int = 0
    example_len: int = 0
    code_bits: int = 0
    offset_period: int = 0
    norm: Literal["none", "rms", "layer"] = "rms"
    mlp: Literal["relu", "swiglu"] = "swiglu"
    mlp_bias: bool = False
    attn_scale: float | None = None
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"

    def __post_init__(self):
        if isinstance(self.mlp_dims, int):
            object.__setattr__(self, "mlp_dims", (self.mlp_dims,) * self.num_layers)
        object.__setattr__(self, "mlp_dims", tuple(int(w) for w in self.mlp_dims))
        problems = []
        if len(self.mlp_dims) != self.num_layers:
            problems.append(f"mlp_dims has {len(self.mlp_dims)} entries for {self.num_layers} layers")
        if (self.input_vocab is None) == (self.input_dim is None):
            problems.append("exactly one of input_vocab (token inputs) and input_dim (vector inputs) must be set")
        if self.positions == "learned" and self.max_len < 1:
            problems.append("learned positions need max_len >= 1")
        if self.positions == "structured" and (self.example_len < 2 or self.code_bits < 1):
            problems.append("structured positions need example_len >= 2 and code_bits >= 1")
        if self.offset_period < 0 or (self.offset_period and self.positions == "structured"):
            problems.append(f"offset_period must be >= 0 and unset with structured positions, got {self.offset_period}")
        if self.positions == "rope" and self.qk_dim % 2:
            problems.append(f"RoPE needs an even qk_dim, got {self.qk_dim}")
        if self.tie_embeddings and (self.input_vocab != self.output_dim):
            problems.append("tied embeddings need input_vocab == output_dim")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if problems:
            raise ValueError("invalid TransformerConfig: " + "; ".join(problems))

    @property
    def jnp_dtype(self):
        return jnp.dtype(self.dtype)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping) -> "TransformerConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def replace(self, **changes) -> "TransformerConfig":
        return replace(self, **changes)


def _attention(c: TransformerConfig) -> Attention:
    """The block's attention (every head its own keys and values)."""
    return Attention(c.num_heads, c.num_heads, c.qk_dim, c.v_dim,
                     c.attn_scale if c.attn_scale is not None else c.qk_dim**-0.5, c.jnp_dtype,
                     c.rope_theta if c.positions == "rope" else None, name="attn")


class Block(nn.Module):
    config: TransformerConfig
    index: int

    @nn.compact
    def __call__(self, x, tap: Tap, last_only: bool = False):
        """One pre-norm block. ``last_only``: compute the output at the last position only."""
        c, prefix = self.config, f"blocks.{self.index}"
        kind_tap = lambda kind, value: tap(f"{prefix}.{kind}", value)  # noqa: E731
        attn = _attention(c)(Norm(c.norm, c.jnp_dtype, name="norm_attn")(x), kind_tap, last_only)
        x = x[:, -1:] if last_only else x
        x = tap(f"{prefix}.resid_mid", x + tap(f"{prefix}.attn.out", attn))
        if not c.mlp_dims[self.index]:  # a layer without an MLP (the construction's attention-only roles)
            return tap(f"{prefix}.resid_post", x + tap(f"{prefix}.mlp.out", jnp.zeros_like(x)))
        mlp = MLP(c.mlp_dims[self.index], c.mlp, c.jnp_dtype, c.mlp_bias, name="mlp")(
            Norm(c.norm, c.jnp_dtype, name="norm_mlp")(x), kind_tap)
        return tap(f"{prefix}.resid_post", x + tap(f"{prefix}.mlp.out", mlp))


class Transformer(nn.Module):
    """Decoder-only causal transformer: ``__call__(inputs, tap, last_only)`` returns logits
    [batch, L, out], or [batch, 1, out] for the last position only when ``last_only`` is set
    (the final block then runs at that position alone: same numbers, less work)."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, inputs, tap: Tap | None = None, last_only: bool = False):
        c, dt = self.config, self.config.jnp_dtype
        tap = tap if tap is not None else Tap()
        init = nn.initializers.normal(0.02)
        if c.input_vocab is not None:
            table = self.param("token_embed", init, (c.input_vocab, c.d_model)).astype(dt)
            x = jnp.take(table, inputs, axis=0)
        else:
            x = inputs.astype(dt) @ self.param("vector_embed", init, (c.input_dim, c.d_model)).astype(dt)
        length = x.shape[1]
        if c.positions == "learned":
            if length > c.max_len:
                raise ValueError(f"sequence of {length} tokens exceeds max_len={c.max_len}")
            x = x + self.param("position_embed", init, (c.max_len, c.d_model)).astype(dt)[:length]
        elif c.positions == "structured":
            feats = jnp.asarray(structured_features(length, c.example_len, c.code_bits), dt)
            w = self.param("position_embed", init, (feats.shape[1], c.d_model)).astype(dt)
            x = x + (feats @ w)[None]
        if c.offset_period:
            offsets = self.param("offset_embed", init, (c.offset_period, c.d_model)).astype(dt)
            x = x + jnp.take(offsets, jnp.arange(length) % c.offset_period, axis=0)[None]
            if c.code_bits:
                if (length - 1) // c.offset_period >= 2**c.code_bits:
                    raise ValueError(f"a sequence of {length} tokens spans {(length - 1) // c.offset_period + 1} "
                                     f"examples; this model's {c.code_bits}-bit example code numbers at most "
                                     f"{2**c.code_bits}")
                code = jnp.asarray(binary_code(np.arange(length) // c.offset_period, c.code_bits), dt)
                x = x + (code @ self.param("code_embed", init, (c.code_bits, c.d_model)).astype(dt))[None]
        x = tap("embed", x)
        for i in range(c.num_layers):
            x = Block(c, i, name=f"block_{i}")(x, tap, last_only and i == c.num_layers - 1)
        x = tap("final", Norm(c.norm, dt, name="norm_final")(x))
        if c.tie_embeddings:
            unembed = table.T
        else:
            unembed = self.param("unembed", init, (c.d_model, c.output_dim)).astype(dt)
        return tap("logits", x @ unembed)


def dummy_inputs(config: TransformerConfig, length: int) -> Array:
    """A batch of one all-zero prompt of ``length`` tokens, for shape inference and init."""
    if config.input_vocab is not None:
        return jnp.zeros((1, length), jnp.int32)
    return jnp.zeros((1, length, config.input_dim), jnp.float32)


def init_params(config: TransformerConfig, key: Array, length: int) -> dict:
    """Randomly initialised parameters (for training)."""
    return Transformer(config).init(key, dummy_inputs(config, length))["params"]


@functools.lru_cache(maxsize=512)
def param_shapes(config: TransformerConfig, length: int) -> dict:
    """The parameter tree's shapes for ``config``, without allocating it (cached per config:
    tracing Flax's init costs ~0.1 s, far more than assembling a construction's weights)."""
    return jax.eval_shape(lambda: init_params(config, jax.random.key(0), length))


def run(
    config: TransformerConfig,
    params,
    inputs,
    *,
    capture: Capture = None,
    edits: Edits = None,
    last_only: bool = False,
):
    """Run the model: returns (logits [batch, L or 1, out], captured intermediates).

    ``capture`` names (or a predicate on names) select intermediates; ``edits`` maps names to
    functions applied to the activation there (patching). Call it inside ``jax.jit``.
    """
    tap = Tap(capture, edits)
    logits = Transformer(config).apply({"params": params}, inputs, tap, last_only)
    return logits, tap.cache
