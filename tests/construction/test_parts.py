"""The shared decoder parts (:mod:`construction.parts`) on their own: grouped key/value heads
(which the construction, with one key/value head per query head, never exercises) and the
MLP kinds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from construction import parts


def test_grouped_attention_equals_repeated_key_value_heads():
    """kv_heads = 1 serving 2 query heads = 2 heads whose keys and values are copies."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 12))
    grouped = parts.Attention(4, 2, 6, 5, 0.4, rope_theta=100.0)
    p = grouped.init(jax.random.key(1), x)["params"]
    full = {**p, "key": jnp.repeat(p["key"], 2, axis=1), "value": jnp.repeat(p["value"], 2, axis=1)}
    seen = {}

    def tap(kind, value):
        seen[kind] = value
        return value

    with jax.default_matmul_precision("highest"):
        a = grouped.apply({"params": p}, x, tap)
        b = parts.Attention(4, 4, 6, 5, 0.4, rope_theta=100.0).apply({"params": full}, x)
        last = grouped.apply({"params": p}, x, last_only=True)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(last[:, 0], a[:, -1], atol=1e-5)
    assert seen["attn.pattern"].shape == (2, 4, 7, 7)
    np.testing.assert_allclose(np.triu(np.asarray(seen["attn.pattern"][0, 0]), 1), 0.0)


@pytest.mark.parametrize("kind, act", [("relu", jax.nn.relu), ("swiglu", None),
                                       ("gelu_tanh", lambda z: jax.nn.gelu(z, approximate=True))])
def test_mlp_kinds(kind, act):
    x = jax.random.normal(jax.random.key(0), (3, 8))
    mlp = parts.MLP(16, kind, bias=True)
    p = mlp.init(jax.random.key(1), x)["params"]
    assert ("w_gate" in p) == (kind != "relu")
    h = x @ p["w_in"] + p["b_in"]
    if kind == "relu":
        h = act(h)
    else:
        h = (jax.nn.silu if kind == "swiglu" else act)(x @ p["w_gate"]) * h
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(mlp.apply({"params": p}, x), h @ p["w_out"] + p["b_out"], atol=1e-5)
