"""``construct``: Theorem 1's seven-layer transformer with hand-set weights, ready to run."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Sequence

import jax
import numpy as np

from construction import bounds as _bounds
from construction.layout import Layout
from construction.spec import DEFAULT_BETA, NUM_LAYERS, ROLES, ConstructionSpec
from construction.tasks import Task
from construction.transformer import TransformerConfig, run
from construction.weights import assemble, layer_weights


@partial(jax.jit, static_argnames=("config", "block"))
def _query_block(config: TransformerConfig, params, tokens, block: tuple[int, int]):
    _, cache = run(config, params, tokens, capture=("final",), last_only=True)
    return cache["final"][:, -1, block[0] : block[1]]


@partial(jax.jit, static_argnames=("config",))
def _query_probabilities(config: TransformerConfig, params, tokens):
    logits, _ = run(config, params, tokens, last_only=True)
    return jax.nn.softmax(logits[:, -1], axis=-1)


def _trace_names(name: str) -> bool:
    return name == "embed" or name.endswith(".resid_post") or name.endswith(".attn.pattern")


@partial(jax.jit, static_argnames=("config",))
def _trace(config: TransformerConfig, params, tokens):
    return run(config, params, tokens, capture=_trace_names)[1]


@partial(jax.jit, static_argnames=("config", "block"))
def _query_block_many(config: TransformerConfig, params, tokens, block: tuple[int, int]):
    return jax.vmap(lambda p, t: _query_block(config, p, t, block))(params, tokens)


@partial(jax.jit, static_argnames=("config",))
def _probabilities_many(config: TransformerConfig, params, tokens):
    return jax.vmap(lambda p, t: _query_probabilities(config, p, t))(params, tokens)


@partial(jax.jit, static_argnames=("config",))
def _trace_many(config: TransformerConfig, params, tokens):
    return jax.vmap(lambda p, t: run(config, p, t, capture=_trace_names)[1])(params, tokens)


@dataclass(frozen=True)
class Trace:
    """Every layer's residual stream and attention pattern, under canonical names.

    ``residuals["embed"]`` and ``residuals["blocks.{l}.resid_post"]`` are [batch, L, D] with
    one label per dimension in ``residual_labels``; ``patterns["blocks.{l}.attn.pattern"]``
    are [batch, heads, L, L]; ``roles[l]`` names layer l's role.
    """

    residuals: dict[str, np.ndarray]
    patterns: dict[str, np.ndarray]
    residual_labels: tuple[str, ...]
    roles: tuple[str, ...] = ROLES

    def layers(self) -> list[np.ndarray]:
        """[embed, after layer 1, ..., after layer 7]."""
        return [self.residuals["embed"]] + [self.residuals[f"blocks.{l}.resid_post"] for l in range(NUM_LAYERS)]


@dataclass(frozen=True, eq=False)
class ConstructedModel:
    """Theorem 1's transformer: the spec it was built from, its Flax config and weights."""

    spec: ConstructionSpec
    config: TransformerConfig
    params: dict

    @property
    def residual_labels(self) -> tuple[str, ...]:
        return self.spec.residual.labels()

    @property
    def width(self) -> int:
        return self.config.d_model

    def _precision(self):
        return jax.enable_x64(True) if self.spec.dtype == "float64" else nullcontext()

    def _inputs(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        if self.spec.discrete:
            if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
                raise ValueError(f"tokens must be an int array [batch, length], got {tokens.dtype} {tokens.shape}")
            if tokens.size and (tokens.min() < 0 or tokens.max() >= self.spec.vocab_size):
                raise ValueError(f"tokens must lie in 0..{self.spec.vocab_size - 1}")
        elif tokens.ndim != 3 or tokens.shape[-1] != self.spec.vocab_size:
            raise ValueError(f"continuous prompts must be [batch, length, {self.spec.vocab_size}], got {tokens.shape}")
        layout = Layout.from_length(tokens.shape[1], self.spec.example_len)
        if not 1 <= layout.n_examples <= self.spec.max_examples:
            raise ValueError(f"prompts hold {layout.n_examples} examples; this model takes 1..{self.spec.max_examples}")
        return tokens.astype(np.int32) if self.spec.discrete else tokens.astype(self.spec.dtype)

    def predict(self, tokens) -> np.ndarray:
        """The output subspace at the query: [batch, V or d], the superposition sum_k alpha_k g_k(x_q)."""
        tokens = self._inputs(tokens)
        with self._precision():
            block = self.spec.residual["OUT"]
            out = _query_block(self.config, self.params, tokens, (block.start, block.stop))
            return np.asarray(out)

    def probabilities(self, tokens) -> np.ndarray:
        """The readout's next-token distribution at the query: [batch, V] (discrete regime)."""
        if not self.spec.discrete:
            raise ValueError("probabilities need the discrete regime's readout; use predict() for vectors")
        tokens = self._inputs(tokens)
        with self._precision():
            return np.asarray(_query_probabilities(self.config, self.params, tokens))

    def trace(self, tokens) -> Trace:
        """Run every layer and keep its residual stream and attention patterns (numpy)."""
        tokens = self._inputs(tokens)
        with self._precision():
            cache = jax.device_get(_trace(self.config, self.params, tokens))
        residuals = {k: np.asarray(v) for k, v in cache.items() if not k.endswith(".pattern")}
        patterns = {k: np.asarray(v) for k, v in cache.items() if k.endswith(".pattern")}
        return Trace(residuals, patterns, self.residual_labels)

    def bounds(self, n_examples: int, dtype: str | None = None) -> _bounds.Bounds:
        """Composed per-block bounds for prompts of ``n_examples`` examples; ``dtype`` adds the
        rounding allowance of that precision (None: exact arithmetic)."""
        if not 1 <= n_examples <= self.spec.max_examples:
            raise ValueError(f"n_examples must lie in 1..{self.spec.max_examples}, got {n_examples}")
        rounding = None
        if dtype is not None:
            u = float(np.finfo(np.dtype(dtype)).eps)
            layout = Layout(self.spec.example_len, n_examples)
            rounding = _bounds.rounding_allowance(self.spec, layout, u, self._numpy_layers)
        return _bounds.compose(self.spec, n_examples, rounding)

    def error_bound(self, n_examples: int, dtype: str | None = None) -> float:
        """Bound on max |predict - y_hat| for prompts of ``n_examples`` examples (exact
        arithmetic; pass ``dtype="float32"`` to add float32's rounding allowance)."""
        return self.bounds(n_examples, dtype).output

    def kl_bound(self, n_examples: int, dtype: str | None = None) -> float:
        """Bound on KL(y_hat / |y_hat|_1 || probabilities) when every example fits some task."""
        return _bounds.kl_bound(self.spec, self.bounds(n_examples, dtype))

    @cached_property
    def _numpy_layers(self):
        return layer_weights(self.spec)


def construct(
    tasks: Sequence[Task],
    *,
    vocab_size: int | None = None,
    example_len: int,
    max_examples: int,
    beta: float = DEFAULT_BETA,
    regime: str = "discrete",
    delta: float = 1.0,
    token_bound: float = 1.0,
    product_pieces: int = 64,
    log_floor: float = 1e-4,
    log_pieces: int = 64,
    dtype: str = "float32",
) -> ConstructedModel:
    """Build Theorem 1's seven-layer transformer for ``tasks``.

    Args:
      tasks: lookup tasks (discrete regime) or linear tasks (continuous regime).
      vocab_size: symbols (discrete) or the token dimension d (continuous; inferred if None).
      example_len: n, tokens per example (n-1 inputs, then the label).
      max_examples: M, the most examples a prompt may hold (sets the example code's bits).
      beta: attention sharpness; leakage decays like e^{-beta}.
      regime: "discrete" (exact ReLU steps) or "continuous" (margin ``delta``, tokens in
        [-token_bound, token_bound]^d, products by a ReLU spline of ``product_pieces`` pieces).
      log_floor, log_pieces: the readout's piecewise-linear log on [log_floor, K].
      dtype: "float32" or "float64" (computation precision).
    """
    tasks = tuple(tasks)
    if vocab_size is None:
        if not tasks:
            raise ValueError("need at least one task")
        vocab_size = tasks[0].vocab_size
    spec = ConstructionSpec(
        tasks=tasks,
        vocab_size=vocab_size,
        example_len=example_len,
        max_examples=max_examples,
        beta=beta,
        regime=regime,
        delta=delta,
        token_bound=token_bound,
        product_pieces=product_pieces,
        log_floor=log_floor,
        log_pieces=log_pieces,
        dtype=dtype,
    )
    with jax.enable_x64(True) if dtype == "float64" else nullcontext():
        config, params = assemble(spec)
    return ConstructedModel(spec, config, params)


def _stacked(models: Sequence[ConstructedModel], tokens) -> tuple[ConstructedModel, dict, np.ndarray]:
    """The first model, the models' parameters stacked on a leading axis, and the checked
    tokens [models, batch, L]; every model must have the same architecture (one shape)."""
    if not models:
        raise ValueError("need at least one model")
    first = models[0]
    for i, m in enumerate(models):
        if m.config != first.config or m.spec.dtype != first.spec.dtype:
            raise ValueError(f"model {i} has another architecture than model 0: batch models of one shape only")
    tokens = np.asarray(tokens)
    if tokens.shape[:1] != (len(models),):
        raise ValueError(f"tokens must have one leading entry per model ({len(models)}), got shape {tokens.shape}")
    per_model = [m._inputs(t) for m, t in zip(models, tokens)]
    params = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *[m.params for m in models])
    return first, params, np.stack(per_model)


def predict_many(models: Sequence[ConstructedModel], tokens) -> np.ndarray:
    """:meth:`ConstructedModel.predict` of many constructions of one shape in one call:
    tokens [models, batch, L] -> [models, batch, V or d]. One compilation per shape, so a
    property run checks its task sets batched rather than compiling a model per case."""
    first, params, tokens = _stacked(models, tokens)
    with first._precision():
        block = first.spec.residual["OUT"]
        return np.asarray(_query_block_many(first.config, params, tokens, (block.start, block.stop)))


def probabilities_many(models: Sequence[ConstructedModel], tokens) -> np.ndarray:
    """:meth:`ConstructedModel.probabilities` of many constructions of one shape in one call:
    tokens [models, batch, L] -> [models, batch, V]."""
    first, params, tokens = _stacked(models, tokens)
    if not first.spec.discrete:
        raise ValueError("probabilities need the discrete regime's readout; use predict_many() for vectors")
    with first._precision():
        return np.asarray(_probabilities_many(first.config, params, tokens))


def trace_many(models: Sequence[ConstructedModel], tokens) -> list[Trace]:
    """:meth:`ConstructedModel.trace` of many constructions of one shape in one call."""
    first, params, tokens = _stacked(models, tokens)
    with first._precision():
        cache = jax.device_get(_trace_many(first.config, params, tokens))
    traces = []
    for i, m in enumerate(models):
        residuals = {k: np.asarray(v[i]) for k, v in cache.items() if not k.endswith(".pattern")}
        patterns = {k: np.asarray(v[i]) for k, v in cache.items() if k.endswith(".pattern")}
        traces.append(Trace(residuals, patterns, m.residual_labels))
    return traces
