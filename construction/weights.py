"""The seven layers' weights, one small numpy function per role (docs/theory.md section 4).

Each function says what it reads and writes in named subspaces and returns plain float64
arrays; :func:`assemble` is the one place that knows the Flax parameter tree.
"""

from __future__ import annotations

import numpy as np

from construction import piecewise
from construction.spec import NUM_LAYERS, ConstructionSpec
from construction.subspaces import Map, Subspaces, vector
from construction.transformer import TransformerConfig, param_shapes

#: Gate for the continuous product's ReLUs off the query: larger than any knot offset (3).
PRODUCT_GATE = 4.0


# ----- embedding ---------------------------------------------------------------------------
def token_embedding(spec: ConstructionSpec) -> np.ndarray:
    """[V or d, D]: a symbol (one-hot) or a token vector goes to the ``token`` block unchanged."""
    return Map(Subspaces([("token", spec.vocab_size)]), spec.residual).put("token", "token", np.eye(spec.vocab_size)).matrix


def position_embedding(spec: ConstructionSpec) -> np.ndarray:
    """[F, D]: each structured feature block goes to the residual block of the same name."""
    emb = Map(spec.features, spec.residual)
    for name, size in spec.features:
        emb.put(name, name, np.eye(size))
    return emb.matrix


# ----- attention ---------------------------------------------------------------------------
def _heads(spec: ConstructionSpec, head_space: Subspaces) -> dict[str, np.ndarray]:
    D, K, qk, v = spec.width, spec.num_tasks, spec.qk_dim, spec.vocab_size
    assert head_space.dim == qk
    return {
        "query": np.zeros((D, K, qk)),
        "key": np.zeros((D, K, qk)),
        "value": np.zeros((D, K, v)),
        "out": np.zeros((K, v, spec.width)),
    }


def no_attention(spec: ConstructionSpec) -> dict[str, np.ndarray]:
    return _heads(spec, spec.task_head_space)


def task_heads(spec: ConstructionSpec, write: str) -> dict[str, np.ndarray]:
    """Layers 1 and 5: head k attends to input p_k of its own example and writes T_k x there
    into ``{write}_k``.

    Score (before beta) = <code(t), code(s)> + [offset(s) == p_k]: the target scores b + 1,
    the own example's other inputs b, another example's input p_k at most b - 1 (a gap of 1).
    """
    hs, w = spec.task_head_space, _heads(spec, spec.task_head_space)
    for k, task in enumerate(spec.tasks):
        onehot_p = np.eye(spec.example_len)[task.position]
        q = Map(spec.residual, hs).put("code", "code", spec.beta * np.eye(spec.code_bits))
        q.put("one", "offset", spec.beta * onehot_p[None, :])
        key = Map(spec.residual, hs).put("code", "code", np.eye(spec.code_bits))
        key.put("offset", "offset", np.eye(spec.example_len))
        value = Map(spec.residual, spec.value_space).put("token", "value", task.matrix.T)
        out = Map(spec.value_space, spec.residual).put("value", f"{write}_{k}", np.eye(spec.vocab_size))
        w["query"][:, k], w["key"][:, k] = q.matrix, key.matrix
        w["value"][:, k], w["out"][k] = value.matrix, out.matrix
    return w


def averaging_heads(spec: ConstructionSpec) -> dict[str, np.ndarray]:
    """Layer 4: head k attends uniformly to the label positions and writes the mean of C_k to S_k."""
    hs, w = spec.averaging_head_space, _heads(spec, spec.averaging_head_space)
    for k in range(spec.num_tasks):
        w["query"][:, k] = Map(spec.residual, hs).put("one", "label", spec.beta).matrix
        w["key"][:, k] = Map(spec.residual, hs).put("is_label", "label", 1.0).matrix
        value_in = Subspaces([("value", 1), ("unused", spec.vocab_size - 1)])
        w["value"][:, k] = Map(spec.residual, value_in).put(f"C_{k}", "value", 1.0).matrix
        w["out"][k] = Map(value_in, spec.residual).put("value", f"S_{k}", 1.0).matrix
    return w


# ----- MLPs --------------------------------------------------------------------------------
def _mlp(spec: ConstructionSpec, layer: int):
    hidden = spec.hidden_spaces[layer]
    return Map(spec.residual, hidden), hidden.zeros(), Map(hidden, spec.residual), spec.residual.zeros()


def _mlp_params(w_in: Map, b_in, w_out: Map, b_out) -> dict[str, np.ndarray]:
    return {"w_in": w_in.matrix, "b_in": b_in, "w_out": w_out.matrix, "b_out": b_out}


def no_mlp(spec: ConstructionSpec, layer: int) -> dict[str, np.ndarray]:
    return _mlp_params(*_mlp(spec, layer))


def error_mlp(spec: ConstructionSpec) -> dict[str, np.ndarray]:
    """Layer 2: E_k = error of task k's prediction G_k against the token at this position.

    Discrete: E_k = 1 - <x, G_k> = 1 - sum_j ReLU(x_j + G_kj - 1) (exact for one-hot x and
    G_k in the simplex). Continuous: E_k = ||x - G_k||_1 = sum_j ReLU(x_j - G_kj) + ReLU(G_kj - x_j).
    """
    w_in, b_in, w_out, b_out = _mlp(spec, 1)
    hidden, eye = spec.hidden_spaces[1], np.eye(spec.vocab_size)
    for k in range(spec.num_tasks):
        if spec.discrete:
            w_in.put("token", f"match_{k}", eye).put(f"G_{k}", f"match_{k}", eye)
            b_in[hidden[f"match_{k}"]] = -1.0
            w_out.put(f"match_{k}", f"E_{k}", -1.0)
            b_out += vector(spec.residual, **{f"E_{k}": 1.0})
        else:
            w_in.put("token", f"above_{k}", eye).put(f"G_{k}", f"above_{k}", -eye)
            w_in.put("token", f"below_{k}", -eye).put(f"G_{k}", f"below_{k}", eye)
            w_out.put(f"above_{k}", f"E_{k}", 1.0).put(f"below_{k}", f"E_{k}", 1.0)
    return _mlp_params(w_in, b_in, w_out, b_out)


def indicator_mlp(spec: ConstructionSpec) -> dict[str, np.ndarray]:
    """Layer 3: C_k = clip(is_label - E_k / delta, 0, 1) = ReLU(.) - ReLU(. - 1).

    At a label this is clip(1 - E_k/delta): 1 when the example fits task k, 0 when it misses by
    at least the margin; elsewhere it is 0 (E_k >= 0).
    """
    w_in, b_in, w_out, b_out = _mlp(spec, 2)
    hidden = spec.hidden_spaces[2]
    for k in range(spec.num_tasks):
        for edge, shift, sign in (("low", 0.0, 1.0), ("high", -1.0, -1.0)):
            unit = f"clip_{edge}_{k}"
            w_in.put("is_label", unit, 1.0).put(f"E_{k}", unit, -1.0 / spec.delta)
            b_in[hidden[unit]] = shift
            w_out.put(unit, f"C_{k}", sign)
    return _mlp_params(w_in, b_in, w_out, b_out)


def weighting_mlp(spec: ConstructionSpec) -> dict[str, np.ndarray]:
    """Layer 6: OUT = sum_k S_k * Q_k at the query's last token, 0 elsewhere.

    Discrete: s q = ReLU(s + q + is_query_last - 2) for s in [0, 1], q in {0, 1}.
    Continuous: s q = (R/4)((s + q/R)^2 - (s - q/R)^2), each square a ReLU spline, gated off
    the query by subtracting PRODUCT_GATE * (1 - is_query_last) inside every ReLU.
    """
    w_in, b_in, w_out, b_out = _mlp(spec, 5)
    hidden, V = spec.hidden_spaces[5], spec.vocab_size
    if spec.discrete:
        for k in range(spec.num_tasks):
            unit = f"product_{k}"
            w_in.put(f"S_{k}", unit, 1.0).put(f"Q_{k}", unit, np.eye(V)).put("is_query_last", unit, 1.0)
            b_in[hidden[unit]] = -2.0
            w_out.put(unit, "OUT", np.eye(V))
        return _mlp_params(w_in, b_in, w_out, b_out)
    square = piecewise.square_spline(spec.product_pieces)
    for k, bound in enumerate(spec.value_bounds):
        for j in range(V):
            reads_j, writes_j = np.eye(V)[:, j : j + 1], np.eye(V)[j]
            for sign, s in (("+", 1.0), ("-", -1.0)):
                unit = f"square{sign}_{k}_{j}"
                w_in.put(f"S_{k}", unit, 1.0).put(f"Q_{k}", unit, s / bound * reads_j)
                w_in.put("is_query_last", unit, PRODUCT_GATE)
                b_in[hidden[unit]] = -square.knots - PRODUCT_GATE
                w_out.put(unit, "OUT", s * bound / 4.0 * np.outer(square.coefs, writes_j))
    return _mlp_params(w_in, b_in, w_out, b_out)


def readout_mlp(spec: ConstructionSpec) -> dict[str, np.ndarray]:
    """Layer 7 (discrete): LOGITS_j = log_spline(OUT_j), a piecewise-linear log on
    [log_floor, K] that is log(log_floor) below the floor. Continuous: no MLP (OUT is the output)."""
    w_in, b_in, w_out, b_out = _mlp(spec, 6)
    if not spec.discrete:
        return _mlp_params(w_in, b_in, w_out, b_out)
    hidden, V = spec.hidden_spaces[6], spec.vocab_size
    log = piecewise.log_spline(spec.log_floor, spec.log_ceiling, spec.log_pieces)
    for j in range(V):
        unit = f"log_{j}"
        w_in.put("OUT", unit, np.eye(V)[:, j : j + 1])
        b_in[hidden[unit]] = -log.knots
        w_out.put(unit, "LOGITS", np.outer(log.coefs, np.eye(V)[j]))
    b_out += vector(spec.residual, LOGITS=log.const)
    return _mlp_params(w_in, b_in, w_out, b_out)


def unembedding(spec: ConstructionSpec) -> np.ndarray:
    """[D, V]: logits are the LOGITS block (discrete) or the OUT block (continuous)."""
    source = "LOGITS" if spec.discrete else "OUT"
    target = Subspaces([("vocab", spec.vocab_size)])
    return Map(spec.residual, target).put(source, "vocab", np.eye(spec.vocab_size)).matrix


def layer_weights(spec: ConstructionSpec) -> list[tuple[dict, dict]]:
    """(attention, MLP) numpy weights of the seven layers, in order of ROLES."""
    layers = [
        (task_heads(spec, "G"), no_mlp(spec, 0)),
        (no_attention(spec), error_mlp(spec)),
        (no_attention(spec), indicator_mlp(spec)),
        (averaging_heads(spec), no_mlp(spec, 3)),
        (task_heads(spec, "Q"), no_mlp(spec, 4)),
        (no_attention(spec), weighting_mlp(spec)),
        (no_attention(spec), readout_mlp(spec)),
    ]
    assert len(layers) == NUM_LAYERS
    return layers


# ----- the one place that knows the Flax parameter tree -------------------------------------
def transformer_config(spec: ConstructionSpec) -> TransformerConfig:
    return TransformerConfig(
        num_layers=NUM_LAYERS,
        d_model=spec.width,
        num_heads=spec.num_tasks,
        qk_dim=spec.qk_dim,
        v_dim=spec.vocab_size,
        mlp_dims=tuple(h.dim for h in spec.hidden_spaces),
        output_dim=spec.vocab_size,
        input_vocab=spec.vocab_size if spec.discrete else None,
        input_dim=None if spec.discrete else spec.vocab_size,
        positions="structured",
        example_len=spec.example_len,
        code_bits=spec.code_bits,
        norm="none",
        mlp="relu",
        mlp_bias=True,
        attn_scale=1.0,
        dtype=spec.dtype,
    )


def assemble(spec: ConstructionSpec) -> tuple[TransformerConfig, dict]:
    """The Flax config and parameter tree (numpy, in the spec's dtype) of the construction.

    The tree is checked against the shapes the Flax model itself declares, so a mismatch
    between the blocks and the architecture fails here, loudly.
    """
    config = transformer_config(spec)
    params = {
        ("token_embed" if spec.discrete else "vector_embed"): token_embedding(spec),
        "position_embed": position_embedding(spec),
        "unembed": unembedding(spec),
    }
    for i, (attn, mlp) in enumerate(layer_weights(spec)):
        params[f"block_{i}"] = {"attn": attn, "mlp": mlp} if spec.hidden_spaces[i].dim else {"attn": attn}
    expected = param_shapes(config, length=2 * spec.example_len - 1)
    _check_shapes(params, expected)
    dtype = np.dtype(spec.dtype)
    cast = lambda tree: {k: cast(v) if isinstance(v, dict) else np.asarray(v, dtype) for k, v in tree.items()}  # noqa: E731
    return config, cast(params)


def _check_shapes(params: dict, expected: dict, path: str = "") -> None:
    if set(params) != set(expected):
        raise AssertionError(f"parameter names at {path or 'root'}: built {sorted(params)}, model has {sorted(expected)}")
    for name, value in params.items():
        if isinstance(value, dict):
            _check_shapes(value, expected[name], f"{path}{name}.")
        elif tuple(np.shape(value)) != tuple(expected[name].shape):
            raise AssertionError(f"{path}{name}: built {np.shape(value)}, model has {expected[name].shape}")
