"""Scale-out with JAX's own SPMD: weights sharded over a ``model`` mesh axis (Megatron-style:
column-parallel Q/K/V/gate/up and vocabulary, row-parallel O/down), batches over ``data``.

XLA inserts the collectives; results equal the single-device ones. A dimension that the mesh
axis does not divide stays replicated, so any model runs on any mesh.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# Which axis of each (layer-stacked) parameter is split over "model".
_MODEL_AXIS = {
    ("embed", "embedding"): 0,       # [V, D]: vocabulary
    ("lm_head", "kernel"): 1,        # [D, V]
    ("q", "kernel"): 2, ("k", "kernel"): 2, ("v", "kernel"): 2,   # [L, D, out]
    ("q", "bias"): 1, ("k", "bias"): 1, ("v", "bias"): 1,         # [L, out]
    ("mlp", "w_gate"): 2, ("mlp", "w_in"): 2,                     # [L, D, F]
    ("o", "kernel"): 1, ("mlp", "w_out"): 1,                      # [L, in, D]
}


def make_mesh(data: int | None = None, model: int | None = None, devices=None) -> Mesh:
    """A 2-D mesh ``(data, model)`` over ``devices`` (default: all); by default all devices
    go to ``model``."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    if data is None and model is None:
        data, model = 1, n
    elif data is None:
        data = n // model
    elif model is None:
        model = n // data
    if data * model != n:
        raise ValueError(f"mesh {data}x{model} does not use the {n} devices")
    return Mesh(np.array(devices).reshape(data, model), ("data", "model"))


def param_spec(path: tuple[str, ...], shape: tuple[int, ...], mesh: Mesh) -> P:
    """The PartitionSpec of one parameter (replicated where the axis does not divide)."""
    key = tuple(path[-2:])
    axis = _MODEL_AXIS.get(key)
    size = mesh.shape["model"]
    if axis is None or size == 1 or shape[axis] % size:
        return P()
    spec = [None] * len(shape)
    spec[axis] = "model"
    return P(*spec)


def shard_params(params: Any, mesh: Mesh, dtype=jnp.float32) -> Any:
    """Place a parameter tree on ``mesh`` with :func:`param_spec`'s layout."""
    def put(path, a):
        names = tuple(getattr(k, "key", str(k)) for k in path)
        a = jnp.asarray(a, dtype)
        return jax.device_put(a, NamedSharding(mesh, param_spec(names, a.shape, mesh)))

    return jax.tree_util.tree_map_with_path(put, params)


def shard_batch(x: jax.Array, mesh: Mesh) -> jax.Array:
    """Split an array's leading (batch) axis over ``data`` when it divides, else replicate."""
    size = mesh.shape["data"]
    spec = P("data") if x.ndim and size > 1 and x.shape[0] % size == 0 else P()
    return jax.device_put(x, NamedSharding(mesh, spec))
