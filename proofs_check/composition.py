"""Lemma 7 of docs/theory.md section 5, checked against real ``construct`` models.

The bound is the construction's own composition (:meth:`ConstructedModel.bounds`, with the
rounding allowance of the model's dtype); the measurement is independent of it: the model is
run in its dtype, its output is compared with ``superposition_target`` (the task weights
counted from the prompt) and every layer of its trace with ``reference_trace`` (the proof's
semantics in float64 numpy, never the weights). A checker must be able to fail, so the
bound is the one the spec claims, never recomputed from the (possibly broken) parameters.
"""

from __future__ import annotations

import numpy as np

from construction import bounds as cb
from construction import reference_trace, retrieval_task, sample_prompts, shift_task, superposition_target
from construction.layout import Layout
from construction.reference import averaging_targets, task_head_targets
from construction.spec import width_formula
from proofs_check.results import LemmaResult, within

def check_tasks(vocab_size: int = 5):
    """The three-task discrete set the checks use at defaults: add 1 at 0, copy at 1, add 2 at 2."""
    V = vocab_size
    return (shift_task(0, 1, V), retrieval_task(1, V), shift_task(2, 2, V))


#: Prompt proportions the end-to-end checks always include (besides random ones).
N_RANDOM_PROPORTIONS = 3


def _config(model, n_examples: int, **extra) -> dict:
    s = model.spec
    return {
        "regime": s.regime,
        "dtype": s.dtype,
        "tasks": [t.name for t in s.tasks],
        "vocab_size": s.vocab_size,
        "example_len": s.example_len,
        "max_examples": s.max_examples,
        "n_examples": int(n_examples),
        "beta": float(s.beta),
        **extra,
    }


def adversarial_prompts(spec, n_examples: int, *, batch: int = 16, seed=0) -> np.ndarray:
    """Prompts for ``spec``: every single-task prompt (alpha one-hot), the uniform mixture,
    random mixtures, and (discrete) ambiguous prompts where each example repeats one symbol so
    that tasks with equal tables at different positions all fit (sum alpha > 1), and constant
    prompts. Continuous prompts respect the margin delta."""
    rng = np.random.default_rng(seed)
    K = spec.num_tasks
    proportions = [np.eye(K)[k] for k in range(K)] + [np.full(K, 1.0 / K)]
    proportions += list(rng.dirichlet(np.ones(K), size=N_RANDOM_PROPORTIONS))
    margin = None if spec.discrete else spec.delta
    kw = dict(n_examples=n_examples, batch=batch, vocab_size=spec.vocab_size, example_len=spec.example_len)
    if not spec.discrete:
        kw.update(token_bound=spec.token_bound, margin=margin)
    parts = []
    for i, p in enumerate(proportions):
        interleave = "iid" if i % 2 else "exact"
        parts.append(sample_prompts(rng, spec.tasks, p, interleave=interleave, **kw).tokens)
    if spec.discrete:
        n, V = spec.example_len, spec.vocab_size
        layout = Layout(n, n_examples)
        # one symbol per example (inputs and query); the label is some task's output on it
        sym = rng.integers(0, V, size=(batch, n_examples + 1))
        choice = rng.integers(0, K, size=(batch, n_examples))
        tables = np.array([t.table for t in spec.tasks])  # [K, V]
        tok = np.repeat(sym, n, axis=1)[:, : layout.length]
        tok[:, layout.label_positions] = tables[choice, sym[:, :n_examples]]
        parts.append(tok)
        const = np.repeat(np.arange(min(V, batch)), 1)[:, None]
        const_tok = np.broadcast_to(const, (len(const), layout.length)).copy()
        labels_fit = tables[:, const[:, 0]]  # [K, b] outputs on the constant symbol
        const_tok[:, layout.label_positions] = labels_fit[0][:, None]
        parts.append(const_tok)
    return np.concatenate(parts).astype(np.int32 if spec.discrete else np.float64)


def end_to_end(model, n_examples: int, *, batch: int = 16, seed=0, tokens=None, trace=None) -> LemmaResult:
    """Lemma 7: max |predict - y_hat| at the query <= the composed bound ``model.bounds``
    (with the model dtype's rounding allowance), and layer by layer
    max |trace - reference_trace| <= ``bounds.after_layer(l)`` over the whole stream.

    ``details`` lists every layer as ``(f"layer {l} {role}", measured, bound, holds)``.
    """
    spec = model.spec
    tokens = adversarial_prompts(spec, n_examples, batch=batch, seed=seed) if tokens is None else tokens
    margin = None if spec.discrete else spec.delta
    target = superposition_target(tokens, spec.tasks, spec.example_len, margin=margin)
    bounds = model.bounds(n_examples, spec.dtype)
    out = np.asarray(model.predict(tokens), np.float64)
    measured = float(np.abs(out - target).max()) if np.all(np.isfinite(out)) else float("inf")
    details = [("output |predict - y_hat|", measured, bounds.output, within(measured, bounds.output))]
    trace = (trace if trace is not None else model.trace(tokens)).layers()
    ref = reference_trace(spec, tokens)
    for l, (got, want) in enumerate(zip(trace, ref)):
        err = np.abs(np.asarray(got, np.float64) - want).max()
        err = float(err) if np.isfinite(err) else float("inf")
        bound = bounds.after_layer(l)
        name = "embed" if l == 0 else f"layer {l} {spec_role(l)}"
        details.append((name, err, bound, within(err, bound)))
    holds = all(d[3] for d in details)
    config = _config(model, n_examples, prompts=int(len(tokens)))
    return LemmaResult("7 end-to-end composition", config, bounds.output, measured, holds, "<=", tuple(details))


def spec_role(layer: int) -> str:
    from construction.spec import ROLES

    return ROLES[layer - 1]


def attention_leak(model, n_examples: int, *, batch: int = 16, seed=0, tokens=None, trace=None) -> LemmaResult:
    """Lemma 1 inside the model: in the trace, each attention layer's mass off its hard target
    (``task_head_targets`` / ``averaging_targets``) <= the construction's ``head_leaks``.

    This catches a wrong sharpness (weights with a smaller beta than the spec claims) directly.
    """
    spec = model.spec
    tokens = adversarial_prompts(spec, n_examples, batch=batch, seed=seed) if tokens is None else tokens
    layout = Layout(spec.example_len, n_examples)
    task_leak, avg_leak = cb.head_leaks(spec, layout)
    patterns = (trace if trace is not None else model.trace(tokens)).patterns
    details = []
    for layer, claimed in ((0, task_leak), (3, avg_leak), (4, task_leak)):
        pat = np.asarray(patterns[f"blocks.{layer}.attn.pattern"], np.float64)  # [b, H, L, L]
        worst = 0.0
        for k in range(spec.num_tasks):
            if layer == 3:
                tgt = averaging_targets(layout) > 0  # before any label: every visible position
            else:
                tgt = task_head_targets(layout, spec.tasks[k].position) > 0
            off = np.where(tgt[None], 0.0, pat[:, k]).sum(-1)
            worst = max(worst, float(off.max()))
        details.append((f"layer {layer + 1} {spec_role(layer + 1)}", worst, claimed, within(worst, claimed, atol=_atol(spec))))
    measured = max(d[1] for d in details)
    bound = max(task_leak, avg_leak)
    holds = all(d[3] for d in details)
    return LemmaResult("1 softmax leak in the built heads", _config(model, n_examples), bound, measured, holds, "<=", tuple(details))


def _atol(spec) -> float:
    """Rounding of a softmax row in the model's dtype (the pattern is measured, not exact)."""
    return 0.0 if spec.dtype == "float64" else 0.0 + 64 * float(np.finfo(np.float32).eps)


def score_gap(model, n_examples: int, *, batch: int = 16, seed=0, tokens=None, trace=None) -> LemmaResult:
    """Lemma 2 inside the model: with the built query/key weights, every head's target scores at
    least beta * SCORE_GAP above every other visible position (the gap lemma 1 assumes).
    Measured as min (target score - best other score) / beta over heads, rows and prompts."""
    spec = model.spec
    tokens = adversarial_prompts(spec, n_examples, batch=batch, seed=seed) if tokens is None else tokens
    layout = Layout(spec.example_len, n_examples)
    inputs = (trace if trace is not None else model.trace(tokens)).layers()  # layer l reads inputs[l]
    L = layout.length
    visible = np.tril(np.ones((L, L), bool))
    worst = np.inf
    for layer in (0, 3, 4):
        attn = model.params[f"block_{layer}"]["attn"]
        x = np.asarray(inputs[layer], np.float64)
        q = np.einsum("bld,dhk->bhlk", x, np.asarray(attn["query"], np.float64))
        k_ = np.einsum("bld,dhk->bhlk", x, np.asarray(attn["key"], np.float64))
        scores = np.einsum("bhtk,bhsk->bhts", q, k_)
        for h in range(spec.num_tasks):
            if layer == 3:
                tgt = averaging_targets(layout) > 0
            else:
                tgt = task_head_targets(layout, spec.tasks[h].position) > 0
            rows = (visible & ~tgt).any(1)  # rows where something competes with the target
            if not rows.any():
                continue
            top_other = np.where(visible & ~tgt, scores[:, h], -np.inf).max(-1)
            low_target = np.where(tgt, scores[:, h], np.inf).min(-1)
            worst = min(worst, float(((low_target - top_other) / spec.beta)[:, rows].min()))
    measured = float(worst)
    holds = bool(measured >= cb.SCORE_GAP - 1e-9)
    return LemmaResult("2 score gap of the built heads", _config(model, n_examples), cb.SCORE_GAP, measured, holds, ">=")


def readout_kl(model, n_examples: int, *, batch: int = 16, seed=0, tokens=None) -> LemmaResult:
    """The readout (discrete): KL(y_hat / |y_hat|_1 || probabilities) <= ``model.kl_bound``."""
    spec = model.spec
    tokens = adversarial_prompts(spec, n_examples, batch=batch, seed=seed) if tokens is None else tokens
    y = superposition_target(tokens, spec.tasks, spec.example_len)
    d = y / y.sum(-1, keepdims=True)
    p = np.asarray(model.probabilities(tokens), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(d > 0, d * (np.log(d) - np.log(p)), 0.0)
    kl = terms.sum(-1)
    measured = float(kl.max()) if np.all(np.isfinite(kl)) else float("inf")
    bound = float(model.kl_bound(n_examples, spec.dtype))
    return LemmaResult("7 readout KL", _config(model, n_examples), bound, measured, within(measured, bound, atol=1e-12))


def width(model) -> LemmaResult:
    """Lemma 7 (size): the built residual width equals D(K, V or d, M, n) of the width formula,
    in the spec, the Flax config, the embedding matrices and the residual labels."""
    s = model.spec
    formula = width_formula(s.num_tasks, s.vocab_size, s.max_examples, s.example_len, s.regime)
    embed = model.params["token_embed" if s.discrete else "vector_embed"]
    built = {
        "spec.width": s.width,
        "config.d_model": model.config.d_model,
        "embedding columns": int(np.shape(embed)[1]),
        "position_embed columns": int(np.shape(model.params["position_embed"])[1]),
        "residual labels": len(model.residual_labels),
        "residual blocks": s.residual.dim,
    }
    details = tuple((name, float(v), float(formula), v == formula) for name, v in built.items())
    holds = all(d[3] for d in details)
    config = {"regime": s.regime, "num_tasks": s.num_tasks, "vocab_size": s.vocab_size,
              "max_examples": s.max_examples, "example_len": s.example_len}
    return LemmaResult("7 width formula", config, float(formula), float(model.config.d_model), holds, "==", details)
