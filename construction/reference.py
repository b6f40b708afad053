"""The executable reference: task weights, the superposition target, and what every layer
of the construction must hold, computed in float64 numpy from the proof's semantics (hard
attention, exact arithmetic), never from the weights.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from construction import piecewise
from construction.layout import Layout
from construction.spec import NUM_LAYERS, ConstructionSpec
from construction.tasks import Task, regime_of

#: Relative tolerance under which a continuous label counts as an exact task output.
EXACT_MATCH_RTOL = 1e-9


def _layout(tokens: np.ndarray, example_len: int, vector: bool) -> Layout:
    return Layout.from_length(tokens.shape[-2] if vector else tokens.shape[-1], example_len)


def consistency(tokens, tasks: Sequence[Task], example_len: int, *, margin: float | None = None) -> np.ndarray:
    """[batch, m, K] bool: which tasks each example fits (g_k(x_i) == y_i).

    Continuous prompts: a task fits when it reproduces the label up to EXACT_MATCH_RTOL; with
    ``margin``, a miss closer than the margin raises (the prompt violates the assumption).
    """
    regime = regime_of(tasks)
    vector = regime == "continuous"
    tokens = np.asarray(tokens)
    inputs, labels, _ = _layout(tokens, example_len, vector).split(tokens, vector=vector)
    if not vector:
        return np.stack([t.apply(inputs) == labels for t in tasks], axis=-1)
    gaps = np.stack([np.abs(t.apply(inputs) - labels).sum(-1) for t in tasks], axis=-1)
    scale = 1.0 + np.abs(labels).sum(-1, keepdims=True)
    fits = gaps <= EXACT_MATCH_RTOL * scale
    if margin is not None and np.any(~fits & (gaps < margin)):
        worst = gaps[~fits].min()
        raise ValueError(f"a prompt violates the margin: a task misses a label by {worst:.3g} < delta={margin}")
    return fits


def task_weights(tokens, tasks: Sequence[Task], example_len: int, *, margin: float | None = None) -> np.ndarray:
    """alpha [batch, K]: the fraction of examples each task fits (docs/theory.md section 2)."""
    fits = consistency(tokens, tasks, example_len, margin=margin)
    if fits.shape[-2] == 0:
        raise ValueError("a prompt needs at least one example to define task weights")
    return fits.mean(axis=-2)


def task_outputs(tokens, tasks: Sequence[Task], example_len: int) -> np.ndarray:
    """g_k(x_q) for every task: [batch, K] symbols, or [batch, K, d] vectors."""
    vector = regime_of(tasks) == "continuous"
    tokens = np.asarray(tokens)
    _, _, query = _layout(tokens, example_len, vector).split(tokens, vector=vector)
    return np.stack([t.apply(query) for t in tasks], axis=1)


def superposition_target(
    tokens, tasks: Sequence[Task], example_len: int, *, margin: float | None = None
) -> np.ndarray:
    """y_hat = sum_k alpha_k g_k(x_q): [batch, V] (discrete, one-hot outputs) or [batch, d]."""
    alpha = task_weights(tokens, tasks, example_len, margin=margin)
    outs = task_outputs(tokens, tasks, example_len)
    if regime_of(tasks) == "continuous":
        return np.einsum("bk,bkd->bd", alpha, outs)
    onehot = np.eye(tasks[0].vocab_size)[outs]  # [b, K, V]
    return np.einsum("bk,bkv->bv", alpha, onehot)


# ----- what each layer must hold ------------------------------------------------------------
def task_head_targets(layout: Layout, position: int) -> np.ndarray:
    """[L, L] row-stochastic hard attention of a task head reading input ``position``.

    Position t attends to input ``position`` of its own example when it is visible (s <= t);
    before that input, to all visible positions of its own example (they tie for the maximum).
    """
    t, s = np.arange(layout.length)[:, None], np.arange(layout.length)[None, :]
    same = (layout.example_index[:, None] == layout.example_index[None, :]) & (s <= t)
    target = same & (layout.offset[None, :] == position)
    chosen = np.where(target.any(axis=1, keepdims=True), target, same)
    return chosen / chosen.sum(axis=1, keepdims=True)


def averaging_targets(layout: Layout) -> np.ndarray:
    """[L, L] hard attention of the averaging heads: uniform over visible labels, or over all
    visible positions while no label is visible."""
    t, s = np.arange(layout.length)[:, None], np.arange(layout.length)[None, :]
    visible = s <= t
    labels = visible & layout.is_label[None, :]
    chosen = np.where(labels.any(axis=1, keepdims=True), labels, visible)
    return chosen / chosen.sum(axis=1, keepdims=True)


def reference_trace(spec: ConstructionSpec, tokens) -> list[np.ndarray]:
    """The residual stream [batch, L, D] after the embedding and after each of the 7 layers,
    as the proof promises it, in float64.

    Layer 6 holds the exact products sum_k S_k Q_k at the query (the theorem's target, also
    in the continuous regime, whose product spline error is part of the bound); layer 7 holds
    the documented log spline of OUT (its distance to the true log is lemma 6's).
    """
    vector = not spec.discrete
    tokens = np.asarray(tokens, dtype=np.float64 if vector else np.int64)
    layout = _layout(tokens, spec.example_len, vector)
    res = spec.residual
    r = res.zeros(*tokens.shape[:2])
    x = tokens if vector else np.eye(spec.vocab_size)[tokens]  # [b, L, V or d]
    r[..., res["token"]] = x
    feats = layout.features(spec.code_bits)
    for name, _ in spec.features:
        r[..., res[name]] = feats[:, spec.features[name]]
    trace = [r.copy()]

    def heads(prefix: str):
        for k, task in enumerate(spec.tasks):
            values = x @ task.matrix.T  # T_k applied at every position
            r[..., res[f"{prefix}_{k}"]] = np.einsum("ts,bsv->btv", task_head_targets(layout, task.position), values)

    heads("G")  # 1: task heads
    trace.append(r.copy())
    for k in range(spec.num_tasks):  # 2: error against the token here
        g = r[..., res[f"G_{k}"]]
        err = 1.0 - (x * g).sum(-1) if spec.discrete else np.abs(x - g).sum(-1)
        r[..., res[f"E_{k}"]] = err[..., None]
    trace.append(r.copy())
    for k in range(spec.num_tasks):  # 3: indicator at labels
        c = np.clip(1.0 - r[..., res[f"E_{k}"]] / spec.delta, 0.0, 1.0)
        r[..., res[f"C_{k}"]] = c * layout.is_label[:, None]
    trace.append(r.copy())
    avg = averaging_targets(layout)
    for k in range(spec.num_tasks):  # 4: averaging
        r[..., res[f"S_{k}"]] = np.einsum("ts,bsv->btv", avg, r[..., res[f"C_{k}"]])
    trace.append(r.copy())
    heads("Q")  # 5: query heads
    trace.append(r.copy())
    out = sum(r[..., res[f"S_{k}"]] * r[..., res[f"Q_{k}"]] for k in range(spec.num_tasks))
    r[..., res["OUT"]] = out * layout.is_query_last[:, None]  # 6: weighting
    trace.append(r.copy())
    if spec.discrete:  # 7: readout
        log = piecewise.log_spline(spec.log_floor, spec.log_ceiling, spec.log_pieces)
        r[..., res["LOGITS"]] = log(r[..., res["OUT"]])
    trace.append(r.copy())
    assert len(trace) == NUM_LAYERS + 1
    return trace
