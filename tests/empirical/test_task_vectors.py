"""Task vectors: extraction, patching and convex combinations do what they say, on the
constructed model (the ground truth: its task identity is the S block after layer 4) and on a
shipped trained model, through the one Model interface (empirical.models); the same report runs
on a tiny random LLM."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from construction import default_task_set, run
from empirical.analysis.prompts import dirichlet_prompts
from empirical import task_vectors as TV
from empirical.models import FlaxModel

TS = default_task_set()


@pytest.fixture(scope="module")
def subjects():
    return {"constructed": FlaxModel.constructed(TS, bits=5), "lookup": FlaxModel.trained("lookup")[0]}


@pytest.mark.parametrize("name", ["constructed", "lookup"])
def test_patching_a_prompts_own_residual_reproduces_the_clean_run(subjects, name):
    s = subjects[name]
    tokens = dirichlet_prompts(TS, np.random.default_rng(0), 16, 6)
    res = s.last_residuals(tokens)
    for layer in (0, 2, s.num_layers):
        clean, patched = TV.patch(s, tokens, layer, res[layer])
        np.testing.assert_allclose(patched, clean, atol=1e-6)


def independent_patch(s, tokens: np.ndarray, layer: int, vector: np.ndarray, mask=None) -> np.ndarray:
    """The patched next-token distribution [P, V] straight from ``run(..., edits=...)``: the
    residual after ``layer`` at the last position becomes x (1 - mask) + vector mask."""
    d = s.config.d_model
    keep = jnp.asarray(np.ones(d) if mask is None else mask, jnp.float32)
    v = jnp.asarray(np.broadcast_to(vector, (len(tokens), d)), jnp.float32)
    name = "embed" if layer == 0 else f"blocks.{layer - 1}.resid_post"  # the residual after `layer`
    edits = {name: lambda x: x.at[:, -1].set(x[:, -1] * (1 - keep) + v * keep)}
    logits, _ = run(s.config, s.params, jnp.asarray(tokens), edits=edits)
    return np.asarray(jax.nn.softmax(logits[:, -1].astype(jnp.float32), -1), np.float64)


def check_patch_matches_an_independent_edit(s, mask=None, layers=(3, None)) -> None:
    """Task 1's vector and a junk vector patched into prompts of task 0 at ``layers`` (None:
    after the last): ``TV.patch`` gives what an edit through ``run`` gives, and at the last of
    ``layers`` both change the output."""
    rng = np.random.default_rng(7)
    tokens = TV.single_task_prompts(TS, 0, rng, 12, 6)
    other = TV.extract(s, TV.single_task_prompts(TS, 1, rng, 12, 6))
    layers = [s.num_layers if layer is None else layer for layer in layers]
    for layer in layers:
        junk = rng.normal(size=s.config.d_model) * 5 * np.linalg.norm(other[layer]) / np.sqrt(s.config.d_model)
        for vector in (other[layer], junk):
            clean, patched = TV.patch(s, tokens, layer, vector, mask)
            np.testing.assert_allclose(patched, independent_patch(s, tokens, layer, vector, mask), atol=2e-6)
            assert layer != layers[-1] or np.abs(patched - clean).max() > 1e-3, (layer, "the patch changed nothing")


@pytest.mark.parametrize("name", ["constructed", "lookup"])
def test_patching_another_tasks_vector_or_junk_matches_an_independent_edit(subjects, name):
    check_patch_matches_an_independent_edit(subjects[name])


def test_a_subspace_patch_matches_an_independent_edit(subjects):
    """The S blocks only: layer 4 (averaging) writes them, layer 6 (weighting) reads them."""
    s = subjects["constructed"]
    check_patch_matches_an_independent_edit(s, TV.s_block_mask(s), layers=(5, 4))


def check_the_constructed_models_patched_readout_is_the_predicted_mixture(s) -> None:
    """The S block of (1 - lambda) v_A + lambda v_B patched after layer 4 of zero-shot queries:
    the readout is y_hat / |y_hat|_1 with y_hat = sum_k S_k onehot(g_k(x_q)), within the
    construction's KL bound (|y_hat|_1 >= 1: a single-task vector's own S is 1). The bound is
    exact arithmetic's (0.0074): float32's allowance makes the readout's vacuous (the log
    spline's slope 1/eta multiplies OUT's rounding allowance), and the float32 model stays
    well inside the exact one (KL ~7e-4; the unpatched queries' ~2)."""
    from construction import construct

    bound = construct(TS.tasks, example_len=TS.example_len, max_examples=31).kl_bound(1)
    rng = np.random.default_rng(8)
    vecs = {k: TV.extract(s, TV.single_task_prompts(TS, k, rng, 40, 12))[4] for k in range(3)}
    queries = TV.zero_shot_queries(TS, rng, 32)
    mask, blocks = TV.s_block_mask(s), [s.spec.residual[f"S_{k}"] for k in range(3)]
    for a, b in ((0, 1), (1, 2)):
        for lam in (0.0, 0.5, 1.0):
            v = (1 - lam) * vecs[a] + lam * vecs[b]
            y_hat = TV.predicted_mixture(s, queries, np.array([v[blk][0] for blk in blocks]))
            target = y_hat / y_hat.sum(1, keepdims=True)
            probs = TV.patch(s, queries, 4, v, mask)[1]
            with np.errstate(divide="ignore", invalid="ignore"):
                kl = np.where(target > 0, target * np.log(target / probs), 0.0).sum(1)
            assert kl.max() <= bound, (a, b, lam, kl.max(), bound)


def test_the_constructed_models_patched_readout_is_the_predicted_mixture(subjects):
    check_the_constructed_models_patched_readout_is_the_predicted_mixture(subjects["constructed"])


@pytest.mark.parametrize("name", ["constructed", "lookup"])
def test_patching_at_a_layer_leaves_earlier_layers_untouched(subjects, name):
    s = subjects[name]
    tokens = jnp.asarray(dirichlet_prompts(TS, np.random.default_rng(1), 8, 5))
    layer = 2
    names = [TV.layer_name(l) for l in range(s.num_layers + 1)]
    _, clean = run(s.config, s.params, tokens, capture=names)
    junk = jnp.full((s.config.d_model,), 3.0)
    edits = {TV.layer_name(layer): lambda x: x.at[:, -1].set(junk)}
    _, patched = run(s.config, s.params, tokens, capture=names, edits=edits)
    for l in range(layer):
        np.testing.assert_array_equal(np.asarray(patched[names[l]]), np.asarray(clean[names[l]]))
    np.testing.assert_array_equal(np.asarray(patched[names[layer]])[:, -1], np.broadcast_to(3.0, (8, s.config.d_model)))
    assert not np.allclose(np.asarray(patched[names[layer + 1]])[:, -1], np.asarray(clean[names[layer + 1]])[:, -1])


def test_extraction_averages_the_last_positions_residual(subjects):
    s = subjects["lookup"]
    tokens = TV.single_task_prompts(TS, 1, np.random.default_rng(2), 6, 7)
    vec = TV.extract(s, tokens)
    for layer in (0, 3):
        direct = np.mean([np.asarray(run(s.config, s.params, jnp.asarray(tokens[i : i + 1]),
                                         capture=(TV.layer_name(layer),))[1][TV.layer_name(layer)])[0, -1]
                          for i in range(len(tokens))], axis=0)
        np.testing.assert_allclose(vec[layer], direct, atol=1e-5)


@pytest.mark.parametrize("name", ["constructed", "lookup"])
def test_interpolation_ends_equal_the_single_task_patches(subjects, name):
    s = subjects[name]
    rng = np.random.default_rng(3)
    vecs = {k: TV.extract(s, TV.single_task_prompts(TS, k, rng, 8, 6)) for k in (0, 1)}
    queries = TV.zero_shot_queries(TS, rng, 12)
    layer = 2
    answers = TV.LayoutPrompts(TS, 6).answers(queries)
    res = TV.convex(s, vecs, layer, queries, answers, TS.names, np.array([[1.0, 0.0], [0.0, 1.0]]))
    for point, k in zip(res.points, (0, 1)):
        probs = TV.patch(s, queries, layer, vecs[k][layer])[1]
        for j, task in enumerate(TS.tasks):
            assert point.p[TS.names[j]] == pytest.approx(TV.answer_probability(probs, task.apply(queries)).mean(),
                                                           abs=1e-6)


def test_the_constructed_models_convex_patch_is_the_predicted_mixture(subjects):
    """Patching (1 - lambda) v_A + lambda v_B into the S block after layer 4 of zero-shot
    queries gives OUT = sum_k S_k onehot(g_k(x_q)) within the construction's error bound."""
    s = subjects["constructed"]
    model_bound = __import__("construction").construct(TS.tasks, example_len=TS.example_len, max_examples=31)
    bound = model_bound.error_bound(1, dtype="float32")
    rng = np.random.default_rng(4)
    vecs = {k: TV.extract(s, TV.single_task_prompts(TS, k, rng, 40, 12)) for k in range(3)}
    queries = TV.zero_shot_queries(TS, rng, 32)
    mask = TV.s_block_mask(s)
    blocks = [s.spec.residual[f"S_{k}"] for k in range(3)]
    for lam in (0.0, 0.3, 0.5, 1.0):
        v = (1 - lam) * vecs[0][4] + lam * vecs[1][4]
        weights = np.array([v[b][0] for b in blocks])
        out = TV.out_block(s, queries, 4, v, mask)
        np.testing.assert_allclose(out, TV.predicted_mixture(s, queries, weights), atol=bound)
    # the S of a single-task vector is its task's weight 1, the others' chance fits (~0.1)
    assert vecs[2][4][blocks[2]][0] == pytest.approx(1.0, abs=1e-5) and vecs[2][4][blocks[0]][0] < 0.3


def test_bad_patch_input_is_one_clear_error(subjects):
    s = subjects["lookup"]
    queries = TV.zero_shot_queries(TS, np.random.default_rng(5), 4)
    with pytest.raises(ValueError, match="layer must lie"):
        TV.patch(s, queries, 9, np.zeros(s.config.d_model))
    with pytest.raises(ValueError, match="vectors must be"):
        TV.patch(s, queries, 1, np.zeros(3))


def test_mixture_fit_recovers_planted_coefficients():
    rng = np.random.default_rng(6)
    singles = rng.normal(size=(3, 20))
    fit = TV.mixture_fit(0.2 * singles[0] + 0.5 * singles[1] + 0.3 * singles[2], singles)
    np.testing.assert_allclose(fit.coefficients, [0.2, 0.5, 0.3], atol=1e-9)
    assert fit.relative_residual < 1e-9
    assert TV.mixture_fit(rng.normal(size=20) * 5, singles).relative_residual > 0.5


def test_task_vectors_cli(tmp_path, capsys):
    from empirical.cli import main

    assert main(["task-vectors", "--run", "add", "--quiet"]) == 2
    assert "lookup family" in capsys.readouterr().err
    assert main(["task-vectors", "--run", "lookup", "--examples", "25", "--quiet"]) == 2
    assert "at most 19" in capsys.readouterr().err
    out = tmp_path / "tv.json"
    assert main(["task-vectors", "--run", "lookup", "--prompts", "12", "--examples", "6", "--json", str(out),
                 "--out", str(tmp_path), "--quiet"]) == 0
    result = TV.TaskVectorsResult.from_json(out)
    assert result.command == "task-vectors" and result.device and result.run == "lookup"
    assert result.to_text() == out.read_text()
    assert set(result.contexts) == {"zero-shot", "random-label context"}
    assert len(result.geometry.mixture_fit["50/50"]) == 4  # embedding + 3 layers
    # numbers a broken computation changes: the convex line's ends are the single-task patches
    # scored on the same queries, and on real prompts of one task the shipped model answers it
    for c in result.contexts.values():
        (a, b), ends = c.convex_two.tasks, c.convex_two.points
        assert ends[0].p[a] == pytest.approx(c.held_out[a], abs=1e-9)
        assert ends[-1].p[b] == pytest.approx(c.held_out[b], abs=1e-9)
    real = result.real_mixed
    assert real[0].lam == 0.0 and real[0].p[a] > 0.9 and real[0].p[b] < 0.3
    assert real[-1].lam == 1.0 and real[-1].p[b] > 0.9 and real[-1].p[a] < 0.3
    assert result.plot == str(tmp_path / "task_vectors_lookup.png") and Path(result.plot).is_file()
    assert "mixture fit" in capsys.readouterr().out


# --------------------------------------------------------------------------- real LLMs (a tiny random Llama)


@pytest.fixture(scope="module")
def tiny_llm():
    from empirical.llm import model_from_params
    from tests.tiny_llm import random_params, tiny_config

    cfg = tiny_config(n_layers=3)
    return model_from_params(cfg, random_params(cfg, std=0.2))


def test_llm_patch_with_its_own_residual_reproduces_the_clean_run(tiny_llm):
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(0, tiny_llm.config.vocab_size, size=n)) for n in (5, 9, 7)]
    res = tiny_llm.last_residuals(prompts)
    assert res.shape == (tiny_llm.config.n_layers + 1, 3, tiny_llm.config.d_model)
    for layer in range(tiny_llm.config.n_layers + 1):
        clean, patched = tiny_llm.patch_last(prompts, layer, res[layer])
        np.testing.assert_allclose(patched, clean, atol=1e-4)
        # the clean pass is the model's own next-token distribution
        full = np.asarray(tiny_llm.logits(np.asarray(prompts[1])))[-1]
        np.testing.assert_allclose(clean[1], full - np.log(np.exp(full - full.max()).sum()) - full.max(), atol=1e-4)


def test_llm_patch_changes_only_what_follows_it(tiny_llm):
    import jax.numpy as jnp

    tokens = jnp.asarray(np.arange(6)[None] % tiny_llm.config.vocab_size, jnp.int32)
    names = frozenset(["embed"] + [f"blocks.{l}.resid_post" for l in range(tiny_llm.config.n_layers)])
    junk = jnp.full((1, tiny_llm.config.d_model), 2.0)
    _, _, clean = tiny_llm.module.apply({"params": tiny_llm.params}, tokens, capture=names)
    _, _, patched = tiny_llm.module.apply({"params": tiny_llm.params}, tokens, capture=names,
                                          patch=(2, junk, jnp.array([5])))
    np.testing.assert_array_equal(np.asarray(patched["embed"]), np.asarray(clean["embed"]))
    np.testing.assert_array_equal(np.asarray(patched["blocks.0.resid_post"]), np.asarray(clean["blocks.0.resid_post"]))
    np.testing.assert_array_equal(np.asarray(patched["blocks.1.resid_post"])[0, 5], np.full(tiny_llm.config.d_model, 2.0))
    np.testing.assert_array_equal(np.asarray(patched["blocks.1.resid_post"])[0, :5],
                                  np.asarray(clean["blocks.1.resid_post"])[0, :5])
    assert not np.allclose(np.asarray(patched["blocks.2.resid_post"])[0, 5], np.asarray(clean["blocks.2.resid_post"])[0, 5])
    with pytest.raises(ValueError, match="layer must lie"):
        tiny_llm.patch_last([[1, 2]], 7, np.zeros(tiny_llm.config.d_model))


def test_llm_report_runs_end_to_end_on_a_tiny_gguf(tmp_path):
    from empirical.llm import load_model
    from tests.tiny_llm import tiny_config, write_tiny_gguf

    model = load_model(write_tiny_gguf(tmp_path / "tiny.gguf", tiny_config(n_layers=2)))
    r = TV.report(model, TV.FamilyPrompts(model.tokenizer, "at", 2), n_prompts=4, n_queries=4, progress=False)
    c = r.contexts["zero-shot"]
    assert len(c.choice.mean) == 3 and 0 <= c.layer <= 2
    assert set(c.held_out) == set(r.tasks) == {"A", "B", "A+B"}
    assert len(c.convex_two.points) == len(TV.LAMBDAS) and c.convex_three is not None
    assert [p.lam for p in r.real_mixed] == list(TV.REAL_LAMBDAS)
    assert all(0 <= v <= 1 for p in r.real_mixed for v in p.p.values())
    assert len(r.geometry.mixture_fit["50/50"]) == 3
    assert r.family == "at" and r.first_token and r.masked is None and r.n_examples is None
    # what the command line writes reads back the same
    assert TV.TaskVectorsResult.from_json(r.to_json()) == r
    assert TV.plot(r, tmp_path, "tiny").is_file()
