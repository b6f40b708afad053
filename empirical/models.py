"""One notion of "a model" for every analysis: constructed, trained and real LLMs alike.

An analysis (sweep, within-prompt, compare, task vectors, scaling, calibration, probe) takes a
:class:`Model` and asks it only what the protocol below offers:

- ``logits(tokens, capture=, edits=, last_only=)``: the forward pass with the package's one
  intermediates vocabulary (``embed``, ``blocks.{l}.resid_post``, ``blocks.{l}.attn.pattern``,
  ...; see :mod:`construction.primitives`) and its one patching mechanism (``edits``: name ->
  function of the activation there);
- ``last_probs(prompts)``: next-token distributions ``[P, V]`` (float64) at each prompt's
  last token, batched so that one compilation serves a whole study; prompts may differ in
  length;
- ``last_residuals(prompts)``: ``[layers + 1, P, d]``, the residual stream after the embedding
  and after every layer at each prompt's last token;
- ``patch_probs(prompts, layer, vectors, mask=None)``: ``(clean, patched)`` next-token
  distributions ``[P, V]`` (float64) at each prompt's last token, the patched pass with the
  residual after ``layer`` (0: the embedding) there replaced by ``vectors`` (``[d]`` or
  ``[P, d]``; only where ``mask`` ``[d]`` is set, if given);
- ``name``, ``num_layers``, ``d_model``, ``vocab_size``.

:class:`FlaxModel` is the construction's transformer with any weights (the hand-set weights of
Theorem 1 or learned ones: one model class for both); :class:`empirical.llm.loading.LLM` is a
real decoder loaded from GGUF or Hugging Face files. Both satisfy :class:`Model`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from construction.primitives import Capture, Edits
from construction.transformer import TransformerConfig, run

Prompts = "np.ndarray | Sequence[Sequence[int]]"


@runtime_checkable
class Model(Protocol):
    """What every analysis may ask of a model (see the module docstring)."""

    name: str

    @property
    def num_layers(self) -> int: ...

    @property
    def d_model(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def logits(self, tokens, capture: Capture = None, edits: Edits = None, last_only: bool = False): ...

    def last_probs(self, prompts) -> np.ndarray: ...

    def last_residuals(self, prompts) -> np.ndarray: ...

    def patch_probs(self, prompts, layer: int, vectors, mask=None) -> tuple[np.ndarray, np.ndarray]: ...


def residual_names(num_layers: int) -> tuple[str, ...]:
    """The residual stream's capture names in order: after the embedding, after every layer."""
    return ("embed",) + tuple(f"blocks.{l}.resid_post" for l in range(num_layers))


def pattern_names(num_layers: int) -> tuple[str, ...]:
    """Every layer's attention-pattern capture name."""
    return tuple(f"blocks.{l}.attn.pattern" for l in range(num_layers))


def layer_name(layer: int) -> str:
    """The residual stream's capture name after ``layer`` (0: the embedding)."""
    return "embed" if layer == 0 else f"blocks.{layer - 1}.resid_post"


def as_batch(prompts) -> np.ndarray:
    """Equal-length prompts as one ``[P, L]`` int32 array (one clear error otherwise)."""
    if isinstance(prompts, np.ndarray):
        arr = prompts
    else:
        lengths = {len(p) for p in prompts}
        if len(lengths) > 1:
            raise ValueError(f"this model needs prompts of one length, got lengths {sorted(lengths)}")
        arr = np.asarray(prompts)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"prompts must be a [P, L] integer array, got shape {arr.shape} of {arr.dtype}")
    return arr.astype(np.int32, copy=False)


def patch_vectors(vectors, n: int, d: int, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` ([d] or [n, d]) as [n, d] float32 and ``mask`` as [d] (ones if None)."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape not in ((d,), (n, d)):
        raise ValueError(f"vectors must be [{d}] or [{n}, {d}], got {list(vectors.shape)}")
    mask = np.ones(d, np.float32) if mask is None else np.asarray(mask, np.float32)
    if mask.shape != (d,):
        raise ValueError(f"mask must be [{d}], got {list(mask.shape)}")
    return np.ascontiguousarray(np.broadcast_to(vectors, (n, d))), mask


@lru_cache(maxsize=16)
def _last_probs_fn(config: TransformerConfig):
    @jax.jit
    def probs(params, tokens):
        logits, _ = run(config, params, tokens, last_only=True)
        return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1)

    return probs


@lru_cache(maxsize=16)
def _forward_fn(config: TransformerConfig, names: tuple[str, ...], last_only: bool):
    @jax.jit
    def forward(params, tokens):
        return run(config, params, tokens, capture=names, last_only=last_only)

    return forward


@partial(jax.jit, static_argnames=("config", "name"))
def _clean_and_patched(config: TransformerConfig, params, tokens, name: str, vectors, mask):
    """Next-token distributions [2, P, V] at the last position: clean, then with the last
    position's activation ``name`` replaced by ``vectors`` [P, D] where ``mask`` [D] is 1."""
    def replace(x):
        last = x[:, -1]
        return x.at[:, -1].set(jnp.where(mask > 0, vectors.astype(x.dtype), last))

    clean, _ = run(config, params, tokens)  # the same full pass as the patched one
    patched, _ = run(config, params, tokens, edits={name: replace})
    return jnp.stack([jax.nn.softmax(clean[:, -1].astype(jnp.float32), -1),
                      jax.nn.softmax(patched[:, -1].astype(jnp.float32), -1)])


def _batched(fn, tokens: np.ndarray, batch: int | None) -> np.ndarray:
    """``fn`` over fixed-size row blocks, every one (the last padded by repetition) of
    ``batch`` rows: one compilation; ``batch=None``: one call on every row."""
    if batch is None or len(tokens) == 0:
        return np.asarray(fn(tokens))
    out = []
    for start in range(0, len(tokens), batch):
        chunk = tokens[start : start + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
        out.append(np.asarray(fn(chunk))[:real])
    return np.concatenate(out)


@dataclass(frozen=True, eq=False)
class FlaxModel:
    """The construction's transformer (:mod:`construction.transformer`) with given weights.

    ``kind`` is ``"constructed"`` (Theorem 1's hand-set weights; ``spec`` then names the
    residual blocks that hold its quantities) or ``"learned"`` (trained from scratch).
    ``batch``: rows per jitted call (every call padded to it: one compilation per prompt
    length); None runs all prompts in one call.
    """

    name: str
    config: TransformerConfig
    params: Mapping[str, Any]
    kind: str = "learned"
    spec: Any = None
    batch: int | None = 50

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def d_model(self) -> int:
        return self.config.d_model

    @property
    def vocab_size(self) -> int:
        return self.config.output_dim

    def logits(self, tokens, capture: Capture = None, edits: Edits = None, last_only: bool = False):
        """``(logits [P, L or 1, V], captured)`` for ``tokens`` [P, L] (jitted per capture set;
        with ``edits``, traced anew on each call)."""
        tokens = as_batch(tokens)
        if edits:
            return jax.jit(lambda p, t: run(self.config, p, t, capture=capture, edits=edits,
                                             last_only=last_only))(self.params, tokens)
        names = capture if capture is None or callable(capture) else tuple(capture)
        if callable(names):
            return jax.jit(lambda p, t: run(self.config, p, t, capture=names, last_only=last_only))(
                self.params, tokens)
        return _forward_fn(self.config, names or (), last_only)(self.params, tokens)

    def last_probs(self, prompts) -> np.ndarray:
        """Next-token distributions at the last position ``[P, V]`` (float64)."""
        fn = _last_probs_fn(self.config)
        return _batched(lambda t: fn(self.params, t), as_batch(prompts), self.batch).astype(np.float64)

    def last_residuals(self, prompts) -> np.ndarray:
        """``[layers + 1, P, d]`` residuals at each prompt's last token (float64)."""
        names = residual_names(self.num_layers)
        fn = _forward_fn(self.config, names, False)

        def one(t):
            _, cap = fn(self.params, t)
            return np.stack([np.asarray(cap[n])[:, -1] for n in names], axis=1)

        return np.moveaxis(_batched(one, as_batch(prompts), self.batch), 1, 0).astype(np.float64)

    def patch_probs(self, prompts, layer: int, vectors, mask=None) -> tuple[np.ndarray, np.ndarray]:
        """(clean, patched) next-token distributions [P, V] (float64), in one jitted call (see
        :class:`Model`)."""
        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer must lie in 0..{self.num_layers}, got {layer}")
        tokens = as_batch(prompts)
        vectors, mask = patch_vectors(vectors, len(tokens), self.d_model, mask)
        out = np.asarray(_clean_and_patched(self.config, self.params, jnp.asarray(tokens), layer_name(layer),
                                            jnp.asarray(vectors), jnp.asarray(mask)))
        return out[0].astype(np.float64), out[1].astype(np.float64)

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def constructed(cls, task_set, *, bits: int = 5, beta: float = 30.0, name: str = "constructed",
                    max_examples: int | None = None, batch: int | None = None) -> "FlaxModel":
        """Theorem 1's model of ``task_set`` numbering up to ``max_examples`` (default
        ``2**bits - 1``) examples (float32); ``batch=None``: all prompts in one call."""
        from construction import construct

        model = construct(task_set.tasks, vocab_size=task_set.vocab_size, example_len=task_set.example_len,
                          max_examples=2**bits - 1 if max_examples is None else max_examples, beta=beta)
        return cls.of(model, name, batch=batch)

    @classmethod
    def of(cls, constructed_model, name: str = "constructed", *, batch: int | None = None) -> "FlaxModel":
        """A :class:`construction.ConstructedModel` as a :class:`Model` (``batch=None``: its
        ``last_probs`` are its ``probabilities``, all prompts in one call)."""
        return cls(name, constructed_model.config, constructed_model.params, "constructed", constructed_model.spec,
                   batch)

    @classmethod
    def trained(cls, run: str | os.PathLike, *, batch: int | None = 50) -> tuple["FlaxModel", Any]:
        """(model, training config) of a shipped model's name or a run directory."""
        from empirical import runs

        cfg, params, _ = runs.load(run)
        return cls(str(run), cfg.model, params, "learned", batch=batch), cfg


def lookup_model(run: str | os.PathLike, tasks_file: str | os.PathLike | None = None):
    """A trained lookup-family model (the construction's token layout): ``(model, training config,
    task set, the most examples its prompts hold)``; one ValueError when ``run`` is of another
    family or ``tasks_file`` names other tasks than it was trained on."""
    from empirical.results import read_task_set

    model, cfg = FlaxModel.trained(run)
    if cfg.family != "lookup":
        raise ValueError(f"{run} was trained on the {cfg.family!r} family; this needs a model of the lookup "
                         "family (the construction's token layout)")
    tasks, max_examples = cfg.fam.task_set, cfg.n_examples - 1
    given = read_task_set(tasks_file)
    if given is not None and given != tasks:
        raise ValueError(f"{run} was trained on the tasks {list(tasks.names)}, not on those of {tasks_file}")
    return model, cfg, tasks, max_examples
