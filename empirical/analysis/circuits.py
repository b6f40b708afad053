"""Attention heads read from their weights and patterns.

- :func:`feature_basis` and :func:`head_circuits`: every head's QK circuit and OV Gram matrix in
  one basis (the token one-hots and the structured position features), so that heads of
  different models compare; :func:`match_heads`: a Hungarian assignment of one model's heads
  to another's on that similarity;
- :func:`attention_patterns`, :func:`averaging_heads` and :func:`attention_roles`: every head's
  attention pattern, and heads ranked by what those patterns do on the construction's token layout;
- :func:`ablated_probs`: next-token distributions with heads silenced at the query.

A model here is anything with ``name``, ``config`` (a :class:`construction.transformer.TransformerConfig`),
``params`` and ``num_layers``: an :class:`empirical.models.FlaxModel`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from construction.layout import Layout
from construction.tasks import TaskSet
from construction.transformer import TransformerConfig, run


def feature_basis(model, task_set: TaskSet, bits: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """[F, D]: the residual vector of each basis feature -- token one-hots, then the structured
    position features (one, example-code bits, offset one-hots, is_label, is_query_last) --
    as the model's embedding writes it. A feature the model has no embedding for is 0."""
    c, p = model.config, model.params
    V, n = task_set.vocab_size, task_set.example_len
    names = tuple(f"token[{v}]" for v in range(V)) + ("one",) + tuple(f"code[{b}]" for b in range(bits)) + tuple(
        f"offset[{o}]" for o in range(n)) + ("is_label", "is_query_last")
    rows = [np.asarray(p["token_embed"], np.float64)]
    if c.positions == "structured":
        if c.code_bits != bits:
            raise ValueError(f"{model.name} numbers examples with {c.code_bits} bits, the comparison with {bits}")
        rows.append(np.asarray(p["position_embed"], np.float64))
    else:
        pos = np.zeros((1 + bits + n + 2, c.d_model))
        if c.code_bits:
            pos[1 : 1 + bits][: c.code_bits] = np.asarray(p["code_embed"], np.float64)[:bits]
        if c.offset_period == n:
            pos[1 + bits : 1 + bits + n] = np.asarray(p["offset_embed"], np.float64)
        rows.append(pos)
    basis = np.concatenate(rows)
    assert basis.shape[0] == len(names)
    return basis, names


def head_circuits(model, basis: np.ndarray) -> list[dict]:
    """Every head's QK circuit B Wq Wk^T B^T and the Gram matrix of its OV circuit,
    (B Wv Wo)(B Wv Wo)^T, both [F, F] in the feature basis B (the OV Gram does not depend on
    the basis of the residual stream it writes into, so it compares across models). Pre-norm
    models read through their norm's gain; RoPE's rotation is left out (its zero-offset term)."""
    out = []
    for l in range(model.num_layers):
        blk = model.params[f"block_{l}"]
        a = blk["attn"]
        gain = np.asarray(blk["norm_attn"]["scale"], np.float64) if "norm_attn" in blk else 1.0
        b = basis * gain
        wq, wk = np.asarray(a["query"], np.float64), np.asarray(a["key"], np.float64)
        wv, wo = np.asarray(a["value"], np.float64), np.asarray(a["out"], np.float64)
        for h in range(wq.shape[1]):
            qk = (b @ wq[:, h]) @ (b @ wk[:, h]).T
            ov = b @ wv[:, h] @ wo[h]
            out.append({"layer": l, "head": h, "depth": l / max(1, model.num_layers - 1), "qk": qk,
                        "ov": ov @ ov.T})
    return out


def _cos(a: np.ndarray, b: np.ndarray, eps: float = 1e-9) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < eps and nb < eps:
        return 1.0  # both circuits absent: equal
    if na < eps or nb < eps:
        return 0.0
    return float((a * b).sum() / (na * nb))


def _active(circ: dict, eps: float = 1e-9) -> bool:
    return np.linalg.norm(circ["qk"]) > eps or np.linalg.norm(circ["ov"]) > eps


def head_similarity(a: list[dict], b: list[dict]) -> np.ndarray:
    """[len(a), len(b)]: the mean of the QK and the OV-Gram cosine similarities."""
    return np.array([[0.5 * (_cos(x["qk"], y["qk"]) + _cos(x["ov"], y["ov"])) for y in b] for x in a])


def match_heads(a: list[dict], b: list[dict]) -> dict:
    """Hungarian assignment of model a's active heads to model b's, maximising the summed
    similarity. Heads whose circuits are identical tie; ties go to the head at the same
    relative depth and index (a tie-break far below any similarity that differs)."""
    from scipy.optimize import linear_sum_assignment

    a_act = [x for x in a if _active(x)]
    b_act = [y for y in b if _active(y)]
    sim = head_similarity(a_act, b_act)
    tie = np.array([[-abs(x["depth"] - y["depth"]) - 1e-3 * abs(x["head"] - y["head"]) for y in b_act] for x in a_act])
    ra, rb = linear_sum_assignment(-(np.round(sim, 6) + 1e-9 * tie))
    pairs = [{"a": [a_act[i]["layer"] + 1, a_act[i]["head"]], "b": [b_act[j]["layer"] + 1, b_act[j]["head"]],
              "similarity": float(sim[i, j])} for i, j in zip(ra, rb)]
    return {
        "heads_a": [[x["layer"] + 1, x["head"]] for x in a_act],
        "heads_b": [[y["layer"] + 1, y["head"]] for y in b_act],
        "inactive_a": len(a) - len(a_act),
        "inactive_b": len(b) - len(b_act),
        "similarity": sim.tolist(),
        "pairs": pairs,
        "mean_matched": float(np.mean([p["similarity"] for p in pairs])) if pairs else float("nan"),
    }


def averaging_heads(patterns: dict[str, np.ndarray], layout: Layout) -> list[dict]:
    """Every head's averaging number, best first: at the query's last token, the attention
    mass on the label positions times its uniformity over them (exp(entropy) / m), with both
    factors (means over prompts). ``patterns``: ``blocks.{l}.attn.pattern`` [P, H, L, L]."""
    m, labels = layout.n_examples, layout.label_positions
    heads = []
    for name in patterns:
        layer = int(name.split(".")[1])
        on_labels = patterns[name][:, :, -1, labels].astype(np.float64)  # [P, H, m]
        mass = on_labels.sum(-1)  # [P, H]
        share = on_labels / np.maximum(mass[..., None], 1e-12)
        uniformity = np.exp(-(share * np.log(np.maximum(share, 1e-300))).sum(-1)) / m
        for h in range(on_labels.shape[1]):
            heads.append({"score": float((mass[:, h] * uniformity[:, h]).mean()), "layer": layer + 1, "head": h,
                          "label_mass": float(mass[:, h].mean()), "uniformity": float(uniformity[:, h].mean())})
    return sorted(heads, key=lambda e: (-e["score"], -e["layer"], -e["head"]))  # ties: the later head


def attention_roles(patterns: dict[str, np.ndarray], layout: Layout, task_set: TaskSet) -> dict:
    """The attention roles' numbers from every head's pattern [P, H, L, L]:

    * ``task heads``/``query heads`` per task k: the best head's mean attention from the
      label positions (from the query's last token) to input p_k of the same example;
    * ``averaging``: the best head of :func:`averaging_heads`.
    """
    n, m = layout.example_len, layout.n_examples
    labels = layout.label_positions
    own = {}
    query = {}
    for name in sorted(patterns, key=lambda s: int(s.split(".")[1])):
        layer = int(name.split(".")[1])
        pat = patterns[name].astype(np.float64)  # [P, H, L, L]
        for k, task in enumerate(task_set.tasks):
            to_pk = pat[:, :, labels, np.arange(m) * n + task.position].mean(axis=(0, 2))  # [H]
            q = pat[:, :, -1, m * n + task.position].mean(0)  # [H]
            for h in range(pat.shape[1]):
                own.setdefault(k, []).append((float(to_pk[h]), layer, h))
                query.setdefault(k, []).append((float(q[h]), layer, h))

    def best(entries):
        score, layer, head = max(entries)[:3]
        return {"score": score, "layer": layer + 1, "head": head}

    return {
        "task heads": {task_set.names[k]: best(v) for k, v in own.items()},
        "query heads": {task_set.names[k]: best(v) for k, v in query.items()},
        "averaging": averaging_heads(patterns, layout)[0],
    }


@partial(jax.jit, static_argnames=("config", "heads"))
def _ablated(config: TransformerConfig, params, tokens, heads: tuple[tuple[int, int], ...]):
    """Next-token distributions with every (layer index, head) of ``heads`` silenced at the
    last position: its attention row there set to zero, so it adds nothing to that residual."""
    edits = {}
    for layer in sorted({l for l, _ in heads}):
        hs = jnp.asarray([h for l, h in heads if l == layer])
        edits[f"blocks.{layer}.attn.pattern"] = lambda x, hs=hs: x.at[:, hs, -1].set(0)
    logits, _ = run(config, params, tokens, edits=edits)
    return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1)


def ablated_probs(model, heads, batch: int = 50):
    """``probs(tokens [P, L]) -> [P, V]`` of ``model`` with ``heads`` ((layer, head) pairs,
    layers numbered from 1 as in :func:`averaging_heads`) silenced at the query's last token."""
    key = tuple(sorted((int(l) - 1, int(h)) for l, h in heads))
    bad = [(l + 1, h) for l, h in key if not (0 <= l < model.num_layers and 0 <= h < model.config.num_heads)]
    if bad:
        raise ValueError(f"no such heads in {model.name}: {bad} (layers 1..{model.num_layers}, "
                         f"heads 0..{model.config.num_heads - 1})")

    def probs(tokens: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(tokens), batch):
            chunk = tokens[i : i + batch]
            real = len(chunk)
            if real < batch:  # one compiled shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
            out.append(np.asarray(_ablated(model.config, model.params, chunk, key))[:real])
        return np.concatenate(out).astype(np.float64)

    return probs



def attention_patterns(model, tokens: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """Every layer's attention pattern ``blocks.{l}.attn.pattern`` [P, H, L, L] of ``model``
    (an :class:`empirical.models.FlaxModel`) on ``tokens`` [P, L], in batches of ``batch``."""
    from empirical.models import pattern_names

    names = pattern_names(model.num_layers)
    chunks = [model.logits(tokens[i : i + batch], capture=names)[1] for i in range(0, len(tokens), batch)]
    return {k: np.concatenate([np.asarray(c[k]) for c in chunks]) for k in names}
