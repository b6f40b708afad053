"""Theorem 1, by property: the constructed model equals the numpy reference layer by layer,
and its output equals y_hat, within the explicit bounds (float64: no allowance; float32:
the documented rounding allowance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, reject
from hypothesis import strategies as st

from construction import (
    construct,
    predict_many,
    probabilities_many,
    continuous_task,
    lookup_task,
    reference_trace,
    retrieval_task,
    sample_prompts,
    shift_task,
    superposition_target,
    task_outputs,
    task_weights,
    trace_many,
    width_formula,
)
from construction.bounds import WRITES

from .strategies import Case, case_groups, cases, checked

BATCH = 3


def build(case: Case, dtype: str, **kw):
    return construct(case.tasks, vocab_size=case.vocab, example_len=case.example_len,
                     max_examples=case.max_examples, beta=case.beta, dtype=dtype, **kw)


def prompts(case: Case, batch=BATCH, interleave="iid"):
    return sample_prompts(case.seed, case.tasks, case.proportions, n_examples=case.n_examples, batch=batch,
                          example_len=case.example_len, interleave=interleave)


def build_group(group, dtype: str, batch=BATCH, **kw):
    """One model and one prompt batch per case; every case of a group has one shape, so the
    models run through one compilation (``predict_many``, ``trace_many``)."""
    models = [build(case, dtype, **kw) for case in group]
    batches = [prompts(case, batch=batch).tokens for case in group]
    return models, np.stack(batches)


def kl(p_target: np.ndarray, q: np.ndarray) -> np.ndarray:
    p = p_target / p_target.sum(-1, keepdims=True)
    return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0.0), axis=-1)


@given(case_groups(max_vocab=24, max_tasks=4, max_example_len=6, max_examples=48))
@example((Case((retrieval_task(0, 4), shift_task(0, 1, 4)), 4, 2, 1, 1, 12.0, (0.5, 0.5), 0),))
def test_every_layer_matches_the_reference_within_its_bound_float64(group):
    models, tokens = build_group(group, "float64", log_pieces=8)
    for case, model, toks, trace in zip(group, models, tokens, trace_many(models, tokens)):
        got = trace.layers()
        want = reference_trace(model.spec, toks)
        bounds = model.bounds(case.n_examples)
        res = model.spec.residual
        assert np.array_equal(got[0], want[0])  # the embedding is exact
        for layer in range(1, 8):
            for block in WRITES[layer]:
                names = [n for n in res.names if n == block or n.startswith(block + "_")]
                for name in names:
                    err = np.abs(got[layer][..., res[name]] - want[layer][..., res[name]]).max()
                    assert err <= bounds.blocks[block], (case, layer, name, err, bounds.blocks[block])
            assert np.abs(got[layer] - want[layer]).max() <= bounds.after_layer(layer), (case, layer)
        checked()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@given(group=case_groups())
@example(group=(Case((retrieval_task(0, 2),), 2, 7, 1, 1, 12.0, (1.0,), 0),))  # small beta: leakage dominates
def test_output_equals_superposition_within_error_bound(dtype, group):
    """float64: the exact-arithmetic bound, no allowance; float32: plus its rounding allowance."""
    models, tokens = build_group(group, dtype, batch=4, log_pieces=16)
    for case, model, toks, out in zip(group, models, tokens, predict_many(models, tokens)):
        y_hat = superposition_target(toks, case.tasks, case.example_len)
        err = np.abs(out - y_hat).max()
        bound = model.error_bound(case.n_examples, None if dtype == "float64" else dtype)
        assert err <= bound, (case, err, bound)
        tight = model.error_bound(case.n_examples) + (1e-5 if dtype == "float32" else 0.0)
        if dtype == "float32":  # the allowance is a guarantee, not a licence: rounding stays small
            assert err <= tight, case
        # the check resolves one example: a miscount moves y_hat by 1/m, beyond the bound
        assert tight < 1 / (2 * case.n_examples), (case, tight)
        checked()


@given(group=case_groups(max_vocab=24, max_examples=48, max_beta=80.0))
def test_float64_with_its_rounding_allowance_at_any_beta(group):
    """Past beta ~33 float64 rounding, not leakage, is the error: the allowance covers it."""
    models, tokens = build_group(group, "float64", log_pieces=8)
    for case, model, toks, out in zip(group, models, tokens, predict_many(models, tokens)):
        y_hat = superposition_target(toks, case.tasks, case.example_len)
        bound = model.error_bound(case.n_examples, "float64")
        assert np.abs(out - y_hat).max() <= bound, case
        assert bound < 1 / (2 * case.n_examples), (case, bound)  # resolves a miscount of one example
        checked()


def test_default_bound_is_not_vacuous():
    tasks = [retrieval_task(0, 10), retrieval_task(2, 10), shift_task(1, 3, 10)]
    model = construct(tasks, vocab_size=10, example_len=5, max_examples=64)
    assert model.error_bound(64) < 1e-6
    assert model.error_bound(64) > 0


@given(case_groups(max_vocab=24, max_tasks=4, max_examples=48), st.integers(0, 5))
def test_single_task_prompt_puts_its_answer_on_top(group, which):
    task = which % len(group[0].tasks)
    one = tuple(1.0 if k == task else 0.0 for k in range(len(group[0].tasks)))
    group = [Case(c.tasks, c.vocab, c.example_len, c.n_examples, c.max_examples, c.beta, one, c.seed) for c in group]
    models, tokens = build_group(group, "float64", batch=4, log_pieces=64)
    outs, probs_all = predict_many(models, tokens), probabilities_many(models, tokens)
    for case, model, toks, out, probs in zip(group, models, tokens, outs, probs_all):
        alpha = task_weights(toks, case.tasks, case.example_len)
        answers = task_outputs(toks, case.tasks, case.example_len)[:, task]
        assert np.all(alpha[:, task] == 1.0)
        assert np.all(out[np.arange(4), answers] >= 1 - model.error_bound(case.n_examples)), case
        # where no other task fits any example, the readout's distribution is on the answer
        alone = (alpha.sum(1) == 1.0)
        kl_bound = model.kl_bound(case.n_examples)
        assert np.all(probs[alone, answers[alone]] >= 1 - kl_bound), case
        assert np.all(kl(superposition_target(toks, case.tasks, case.example_len), probs) <= kl_bound), case
        checked()


def test_ambiguous_examples_add_weights_beyond_one():
    """Two tasks that agree on every example both get weight 1: y_hat sums to 2 (docs/theory.md section 2)."""
    V, n = 7, 3
    tasks = [retrieval_task(0, V, name="copy0"), retrieval_task(1, V, name="copy1"), shift_task(0, 2, V)]
    rng = np.random.default_rng(3)
    m = 9
    x = rng.integers(0, V, size=(m + 1,))
    examples = [[v, v, v] for v in x[:-1]]  # x0 == x1 == label: copy0 and copy1 both fit
    examples[0] = [x[0], (x[0] + 1) % V, (x[0] + 2) % V]  # this one fits the shift only
    tokens = np.array([sum(examples, []) + [x[-1], (x[-1] + 3) % V]])
    alpha = task_weights(tokens, tasks, n)
    np.testing.assert_allclose(alpha, [[8 / 9, 8 / 9, 1 / 9]])
    model = construct(tasks, vocab_size=V, example_len=n, max_examples=16, dtype="float64")
    y_hat = superposition_target(tokens, tasks, n)
    assert y_hat.sum() == pytest.approx(17 / 9)  # sum of alpha: more than one
    out = model.predict(tokens)
    np.testing.assert_allclose(out, y_hat, atol=model.error_bound(m))
    # the readout normalises: probabilities follow y_hat / |y_hat|_1
    assert kl(y_hat, model.probabilities(tokens))[0] <= model.kl_bound(m)


@given(cases(max_vocab=16, max_tasks=6, max_examples=200))
def test_width_equals_the_formula(case):
    model = build(case, "float32", log_pieces=2)
    K, V, n = len(case.tasks), case.vocab, case.example_len
    b = math.ceil(math.log2(case.max_examples + 1))
    assert model.width == (2 * K + 3) * V + 3 * K + b + n + 3
    assert model.width == width_formula(K, V, case.max_examples, n, "discrete")
    assert model.config.num_layers == 7 and model.config.num_heads == K
    checked()


@given(d=st.integers(1, 4), k=st.integers(1, 3), n=st.integers(2, 5), m=st.integers(1, 24),
       bound=st.floats(0.5, 2.0), pieces=st.integers(16, 128), seed=st.integers(0, 2**31 - 1))
def test_continuous_regime_output_and_layers_within_bounds(d, k, n, m, bound, pieces, seed):
    rng = np.random.default_rng(seed)
    tasks = [continuous_task(int(rng.integers(0, n - 1)), rng.normal(size=(d, d)), name=f"A{i}") for i in range(k)]
    delta = 0.05
    model = construct(tasks, example_len=n, max_examples=32, regime="continuous", delta=delta,
                      token_bound=bound, product_pieces=pieces, dtype="float64")
    props = rng.dirichlet(np.ones(k))
    try:
        p = sample_prompts(rng, tasks, props, n_examples=m, batch=3, example_len=n, token_bound=bound, margin=delta)
    except ValueError as e:  # tasks too close for the margin: the theorem's assumption fails
        assert "too close for that margin" in str(e)
        reject()
    y_hat = superposition_target(p.tokens, tasks, n, margin=delta)
    assert np.abs(model.predict(p.tokens) - y_hat).max() <= model.error_bound(m)
    bounds = model.bounds(m)
    for layer, (got, want) in enumerate(zip(model.trace(p.tokens).layers(), reference_trace(model.spec, p.tokens))):
        assert np.abs(got - want).max() <= bounds.after_layer(layer), layer
    checked()


def test_an_unseen_task_set_matches_an_independent_y_hat():
    """A task set no other test uses, with y_hat computed by plain loops from the definition."""
    V, n, m = 12, 6, 30
    upper = [(v + 6) % 12 if v < 6 else v for v in range(V)]  # "upper-case" the first half
    parity = [v % 2 for v in range(V)]
    tasks = [lookup_task(4, upper, name="upper x4"), lookup_task(1, parity, name="parity x1"),
             lookup_task(3, list(reversed(range(V))), name="mirror x3")]
    model = construct(tasks, vocab_size=V, example_len=n, max_examples=32)
    p = sample_prompts(11, tasks, [0.2, 0.5, 0.3], n_examples=m, batch=8, example_len=n)
    for row, out in zip(p.tokens, model.predict(p.tokens)):
        examples = [row[i * n:(i + 1) * n] for i in range(m)]
        query = row[m * n:]
        expected = np.zeros(V)
        for t in tasks:
            fits = sum(t.table[e[t.position]] == e[-1] for e in examples) / m
            expected[t.table[query[t.position]]] += fits
        assert np.abs(out - expected).max() <= model.error_bound(m, "float32")
