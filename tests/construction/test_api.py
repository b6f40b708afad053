"""The construction's building blocks and contracts: layout, codes, tasks, prompts, the
shared transformer's intermediates API, and the errors bad input gets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from construction import (
    predict_many,
    probabilities_many,
    trace_many,
    Layout,
    TransformerConfig,
    construct,
    continuous_task,
    init_params,
    lookup_task,
    retrieval_task,
    run,
    sample_prompts,
    shift_task,
    task_weights,
    tasks_from_json,
)
from construction.layout import binary_code, code_bits
from construction.prompts import exact_counts


def test_binary_codes_score_gap_is_exactly_two():
    bits = code_bits(100)
    codes = binary_code(np.arange(101), bits)
    gram = codes @ codes.T
    assert np.all(np.diag(gram) == bits)
    off = gram[~np.eye(101, dtype=bool)]
    assert off.max() == bits - 2


def test_layout_positions():
    lay = Layout(example_len=3, n_examples=2)
    assert lay.length == 8
    assert lay.example_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert lay.offset.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert lay.label_positions.tolist() == [2, 5]
    assert lay.is_query_last.tolist() == [False] * 7 + [True]
    inputs, labels, query = lay.split(np.arange(8)[None])
    assert inputs.tolist() == [[[0, 1], [3, 4]]] and labels.tolist() == [[2, 5]] and query.tolist() == [[6, 7]]
    with pytest.raises(ValueError, match="not m\\*3 \\+ 2"):
        Layout.from_length(9, 3)


def test_tasks_apply_and_validate():
    assert shift_task(0, 3, 10).apply(np.array([[8, 1]])).tolist() == [1]
    assert retrieval_task(1, 5).apply(np.array([[4, 2]])).tolist() == [2]
    with pytest.raises(ValueError, match="not a map on the vocabulary"):
        lookup_task(0, [0, 5, 1])
    with pytest.raises(ValueError, match="position must be >= 0, got -1"):
        lookup_task(-1, [0, 1])
    with pytest.raises(ValueError, match="outside the example's inputs 0..1"):
        construct([retrieval_task(2, 4)], vocab_size=4, example_len=3, max_examples=4)
    with pytest.raises(ValueError, match="vocab_size=5"):
        construct([retrieval_task(0, 4)], vocab_size=5, example_len=3, max_examples=4)
    with pytest.raises(ValueError, match="mix the discrete"):
        construct([retrieval_task(0, 2), continuous_task(0, np.eye(2))], vocab_size=2, example_len=3, max_examples=4)
    with pytest.raises(ValueError, match="beta"):
        construct([retrieval_task(0, 4)], vocab_size=4, example_len=3, max_examples=4, beta=-1)
    with pytest.raises(ValueError, match="log_floor"):
        construct([retrieval_task(0, 4)], vocab_size=4, example_len=3, max_examples=64, log_floor=0.1)
    with pytest.raises(ValueError, match="square d x d"):
        continuous_task(0, np.ones((2, 3)))


def test_task_file_parsing_errors():
    good = {"vocab_size": 3, "example_len": 2, "tasks": [{"name": "id", "position": 0, "table": [0, 1, 2]}]}
    tasks, vocab, n = tasks_from_json(good)
    assert (vocab, n, tasks[0].name) == (3, 2, "id")
    with pytest.raises(ValueError, match="missing the field 'tasks'"):
        tasks_from_json({"vocab_size": 3, "example_len": 2})
    with pytest.raises(ValueError, match="table has 2 symbols"):
        tasks_from_json({**good, "tasks": [{"position": 0, "table": [0, 1]}]})


def test_model_rejects_bad_prompts():
    model = construct([retrieval_task(0, 4)], vocab_size=4, example_len=3, max_examples=4)
    with pytest.raises(ValueError, match="tokens must lie in 0..3"):
        model.predict(np.full((1, 8), 9))
    with pytest.raises(ValueError, match="not m\\*3 \\+ 2"):
        model.predict(np.zeros((1, 7), int))
    with pytest.raises(ValueError, match="takes 1..4"):
        model.predict(np.zeros((1, 5 * 3 + 2), int))
    with pytest.raises(ValueError, match="int array"):
        model.predict(np.zeros((8,), int))


def test_sampler_counts_interleaving_and_seeds():
    tasks = [retrieval_task(0, 6), shift_task(1, 1, 6), shift_task(0, 2, 6)]
    assert exact_counts(np.array([0.5, 0.3, 0.2]), 10).tolist() == [5, 3, 2]
    assert exact_counts(np.array([1 / 3] * 3), 10).sum() == 10
    a = sample_prompts(5, tasks, [0.5, 0.3, 0.2], n_examples=10, batch=50, example_len=3)
    b = sample_prompts(5, tasks, [0.5, 0.3, 0.2], n_examples=10, batch=50, example_len=3)
    assert np.array_equal(a.tokens, b.tokens)
    assert np.all(np.sort(a.example_tasks, axis=1) == np.repeat([0, 1, 2], [5, 3, 2]))
    assert len({tuple(r) for r in a.example_tasks}) > 10  # orders differ between prompts
    # every example fits the task that generated it
    alpha = task_weights(a.tokens, tasks, 3)
    own = np.stack([np.mean(a.example_tasks == k, axis=1) for k in range(3)], axis=1)
    assert np.all(alpha >= own - 1e-12)
    iid = sample_prompts(1, tasks, [0.5, 0.5, 0.0], n_examples=2000, batch=1, example_len=3, interleave="iid")
    assert abs(np.mean(iid.example_tasks == 0) - 0.5) < 0.05 and not np.any(iid.example_tasks == 2)
    with pytest.raises(ValueError, match="sum to 1"):
        sample_prompts(0, tasks, [0.5, 0.5, 0.5], n_examples=3, batch=1, example_len=3)
    with pytest.raises(ValueError, match="one proportion per task"):
        sample_prompts(0, tasks, [1.0], n_examples=3, batch=1, example_len=3)


def test_continuous_sampler_respects_the_margin():
    rng = np.random.default_rng(0)
    tasks = [continuous_task(0, np.eye(2)), continuous_task(1, -np.eye(2))]
    p = sample_prompts(rng, tasks, [0.5, 0.5], n_examples=6, batch=5, example_len=3, margin=0.3)
    inputs, labels, _ = p.layout.split(p.tokens, vector=True)
    for k, t in enumerate(tasks):
        gaps = np.abs(t.apply(inputs) - labels).sum(-1)
        assert np.all((gaps < 1e-12) | (gaps >= 0.3))


def _training_config(**kw):
    base = dict(num_layers=2, d_model=16, num_heads=2, qk_dim=4, v_dim=4, mlp_dims=32, output_dim=11,
                input_vocab=11)
    return TransformerConfig(**{**base, **kw})


@pytest.mark.parametrize("positions,norm,mlp", [("rope", "rms", "swiglu"), ("learned", "layer", "relu")])
def test_transformer_last_only_capture_and_edits(positions, norm, mlp):
    config = _training_config(positions=positions, norm=norm, mlp=mlp, max_len=12)
    params = init_params(config, jax.random.key(0), 9)
    tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, 11)
    full, cache = run(config, params, tokens, capture=lambda n: n.endswith("resid_post"))
    last, _ = run(config, params, tokens, last_only=True)
    np.testing.assert_allclose(last[:, -1], full[:, -1], rtol=1e-5, atol=1e-5)
    assert sorted(cache) == ["blocks.0.resid_post", "blocks.1.resid_post"]
    # an edit (patch) at a named point changes what follows, and only that
    zeroed, c2 = run(config, params, tokens, capture={"blocks.1.resid_mid"},
                     edits={"blocks.0.resid_post": lambda r: r.at[:, -1].set(0.0)})
    assert not np.allclose(zeroed[:, -1], full[:, -1])
    np.testing.assert_allclose(zeroed[:, :-1], full[:, :-1], rtol=1e-5, atol=1e-5)  # causal


def test_transformer_config_errors_and_json_round_trip():
    with pytest.raises(ValueError, match="mlp_dims has 3 entries for 2 layers"):
        _training_config(mlp_dims=(1, 2, 3))
    with pytest.raises(ValueError, match="norm must be one of"):
        _training_config(norm="batch")
    with pytest.raises(ValueError, match="exactly one of input_vocab"):
        _training_config(input_dim=3)
    import json

    config = _training_config()
    assert TransformerConfig.from_dict(json.loads(config.to_json())) == config


def test_trace_names_and_roles():
    model = construct([retrieval_task(0, 4), shift_task(1, 1, 4)], vocab_size=4, example_len=3, max_examples=4)
    p = sample_prompts(0, model.spec.tasks, [0.5, 0.5], n_examples=3, batch=2, example_len=3)
    tr = model.trace(p.tokens)
    assert set(tr.residuals) == {"embed"} | {f"blocks.{l}.resid_post" for l in range(7)}
    assert tr.patterns["blocks.0.attn.pattern"].shape == (2, 2, 11, 11)
    assert len(tr.residual_labels) == model.width and "G_0[3]" in tr.residual_labels
    assert tr.roles[3] == "averaging"
    # the averaging head attends to label positions only (up to leakage) at the query
    pattern = tr.patterns["blocks.3.attn.pattern"][0, 0, -1]
    assert pattern[[2, 5, 8]].sum() == pytest.approx(1.0, abs=1e-6)
    assert jnp.allclose(model.probabilities(p.tokens).sum(-1), 1.0)


def test_batched_models_equal_one_at_a_time_and_refuse_mixed_shapes():
    """predict_many / probabilities_many / trace_many run constructions of one shape through
    one compilation: each row equals that model's own call; another shape is refused."""
    V, n, m = 6, 3, 5
    groups = [[lookup_task(0, [(v + s) % V for v in range(V)], name=f"shift{s}"), retrieval_task(1, V)]
              for s in (1, 2, 4)]
    models = [construct(tasks, vocab_size=V, example_len=n, max_examples=8, beta=b, dtype="float64")
              for tasks, b in zip(groups, (14.0, 20.0, 30.0))]
    tokens = np.stack([sample_prompts(i, tasks, (0.5, 0.5), n_examples=m, batch=2, example_len=n).tokens
                       for i, tasks in enumerate(groups)])
    outs, probs, traces = predict_many(models, tokens), probabilities_many(models, tokens), trace_many(models, tokens)
    for model, toks, out, prob, trace in zip(models, tokens, outs, probs, traces):
        np.testing.assert_allclose(out, model.predict(toks), rtol=0, atol=1e-12)
        np.testing.assert_allclose(prob, model.probabilities(toks), rtol=0, atol=1e-12)
        for got, want in zip(trace.layers(), model.trace(toks).layers()):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert not np.allclose(outs[0], outs[1])  # the rows are different models, not one repeated
    other = construct(groups[0], vocab_size=V, example_len=n, max_examples=40, dtype="float64")  # more code bits
    with pytest.raises(ValueError, match="another architecture"):
        predict_many([models[0], other], tokens[:2])
    with pytest.raises(ValueError, match="one leading entry per model"):
        predict_many(models, tokens[:2])
