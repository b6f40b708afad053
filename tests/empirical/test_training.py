"""Training from scratch (empirical/training/), sweeps (empirical/sweep.py) and their CLI.

The default tests use a micro configuration (one layer, width 32, 4 examples per sequence)
so that they run in seconds; the ``slow`` test trains the tiny preset and checks that its
lambda sweep shows task superposition (the paper's Figure 3).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from empirical import sweep as sweep_lib
from empirical import cli, synthetic, training
from empirical.models import FlaxModel
from empirical.results import write_json
from construction.transformer import param_shapes


def micro(**changes) -> training.TrainConfig:
    model = training._model(synthetic.FAMILIES["add"], num_layers=1, d_model=32, num_heads=2, qk_dim=8, v_dim=8,
                            mlp_dims=32)
    cfg = training.TrainConfig(
        model=model, family="add", n_examples=4, batch_size=8, steps=6, lr=1e-2,
        log_every=1, eval_every=3, eval_batch=4, ckpt_every=100,
    )
    return cfg.replace(**changes) if changes else cfg


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


# --------------------------------------------------------------------------- configs


def test_config_json_round_trip_and_presets():
    for make in training.PRESETS.values():
        for fam in synthetic.FAMILIES:
            cfg = make(family=fam)
            assert training.TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    paper = training.paper()
    n = training.param_count(param_shapes(paper.model, 8))
    assert 13.5e6 < n < 14.5e6, n  # "~14M parameters" (docs/theory.md section 6)
    m = paper.model
    assert (m.num_layers, m.d_model, m.num_heads, m.mlp_dims[0]) == (6, 384, 6, 1536)
    assert (m.norm, m.mlp, m.positions) == ("rms", "swiglu", "rope")
    assert (paper.lr, paper.b2, paper.weight_decay, paper.clip, paper.warmup_frac, paper.steps) == (
        5e-4, 0.98, 0.01, 1.0, 0.1, 5000)
    assert paper.seq_len == 1100 and training.paper(family="add").seq_len == 400
    with pytest.raises(ValueError, match="microbatch"):
        micro(microbatch=3)
    with pytest.raises(ValueError, match="family"):
        micro(family="mul")


def test_warmup_stable_decay_schedule():
    cfg = micro(steps=100, lr=1.0, warmup_frac=0.1, decay_frac=0.2)
    lr = training.schedule(cfg)
    assert float(lr(0)) == 0.0
    assert float(lr(5)) == pytest.approx(0.5)
    assert float(lr(10)) == pytest.approx(1.0) and float(lr(79)) == pytest.approx(1.0)
    assert float(lr(90)) == pytest.approx(0.5)
    assert float(lr(100)) == pytest.approx(0.0)


def test_flops_per_token_matches_parameter_count():
    cfg = training.paper()
    n_matmul = training.param_count(param_shapes(cfg.model, 8)) - cfg.model.input_vocab * cfg.model.d_model
    norms = (2 * cfg.model.num_layers + 1) * cfg.model.d_model
    dense = training.flops_per_token(cfg.model, 0) / 6
    assert dense == n_matmul - norms


# --------------------------------------------------------------------------- steps


def test_training_steps_lower_the_loss():
    cfg = micro()
    state = training.init_state(cfg)
    step = training.make_train_step(cfg)
    batch = training.make_batch(cfg, 1)
    losses = []
    for _ in range(8):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert int(state["step"]) == 8
    assert losses[-1] < losses[0] - 0.3, losses
    assert all(np.isfinite(losses))


def test_microbatches_accumulate_the_full_batch_gradient():
    full, split = micro(batch_size=8), micro(batch_size=8, microbatch=2)
    batch = training.make_batch(full, 1)
    s_full, m_full = training.make_train_step(full)(training.init_state(full), batch)
    s_split, m_split = training.make_train_step(split)(training.init_state(split), batch)
    assert float(m_full["loss"]) == pytest.approx(float(m_split["loss"]), rel=1e-5)
    assert float(m_full["grad_norm"]) == pytest.approx(float(m_split["grad_norm"]), rel=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(s_full["params"]), jax.tree_util.tree_leaves(s_split["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_eval_reports_per_example_accuracy():
    cfg = micro()
    res = training.evaluate(cfg, training.init_state(cfg)["params"])
    assert len(res["example_acc"]) == cfg.n_examples
    assert 0.0 <= res["answer_acc"] <= 1.0 and res["loss"] > 0
    assert res["answer_acc"] == pytest.approx(np.mean(res["example_acc"]), abs=1e-6)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_save_restore_and_resume_are_exact(tmp_path):
    cfg = micro()
    straight = training.train(cfg, tmp_path / "straight", progress=False)
    # An interrupted run: stops after step 3 (with a checkpoint), then resumes to the end.
    training.train(cfg, tmp_path / "split", progress=False, stop_at=3)
    cfg3, params3, step3 = training.load_run(tmp_path / "split")
    assert step3 == 3 and cfg3 == cfg
    # Restoring gives the weights that continuing in memory would have had: replay 3 steps.
    state = training.init_state(cfg)
    step_fn = training.make_train_step(cfg)
    for s in range(1, 4):
        state, _ = step_fn(state, training.make_batch(cfg, s))
    assert _leaves_equal(state["params"], params3)
    resumed = training.train(cfg, tmp_path / "split", progress=False, resume=True)
    assert resumed["resumed_from"] == 3 and resumed["step"] == straight["step"] == cfg.steps
    a = training.read_metrics(tmp_path / "straight", kind=None)
    b = training.read_metrics(tmp_path / "split", kind=None)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)  # the same losses, step for step, and the same evals
    _, p_a, _ = training.load_run(tmp_path / "straight")
    _, p_b, _ = training.load_run(tmp_path / "split")
    assert _leaves_equal(p_a, p_b)
    # The config JSON sits beside the checkpoints; the result carries provenance.
    saved = json.loads((tmp_path / "split" / "config.json").read_text())
    assert training.TrainConfig.from_dict(saved) == cfg
    result = json.loads((tmp_path / "split" / "result.json").read_text())
    assert {"config", "package_version", "device", "date"} <= set(result)


def test_existing_run_needs_resume_and_same_config(tmp_path):
    cfg = micro(steps=2)
    training.train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        training.train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        training.train(cfg.replace(lr=0.5), tmp_path / "r", progress=False, resume=True)
    # Only --steps may change: extending a finished run continues it.
    more = training.train(cfg.replace(steps=4), tmp_path / "r", progress=False, resume=True)
    assert more["resumed_from"] == 2 and more["step"] == 4


# --------------------------------------------------------------------------- sweeps


def test_sweep_statistics_and_plot(tmp_path):
    cfg = micro()
    params = training.init_state(cfg)["params"]
    res = sweep_lib.sweep(FlaxModel("model", cfg.model, params, batch=4), "add", [1, 3], n_prompts=7, n_examples=4,
                          lambdas=(0.0, 0.5, 1.0), progress=False)
    assert res.tasks == ("add:1", "add:3") and res.lambdas == (0.0, 0.5, 1.0)
    for pt in res.points:
        total = pt.p_a.mean + pt.p_b.mean + pt.p_other.mean
        assert total == pytest.approx(1.0, abs=1e-5)
        for stat in (pt.p_a, pt.p_b, pt.p_other, pt.acc_a, pt.acc_b):
            assert 0.0 <= stat.mean <= 1.0 and stat.ci95 >= 0
            assert stat.lo <= stat.mean <= stat.hi
    # The same seed gives the same numbers; batching does not change them.
    again = sweep_lib.sweep(FlaxModel("model", cfg.model, params, batch=3), "add", [1, 3], n_prompts=7,
                            n_examples=4, lambdas=(0.0, 0.5, 1.0), progress=False)
    np.testing.assert_allclose(sweep_lib.series(res, "p_a"), sweep_lib.series(again, "p_a"), rtol=1e-5)
    path = sweep_lib.plot(res, tmp_path / "fig3.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))


def test_sweep_probabilities_match_a_direct_forward_pass():
    from construction.transformer import run

    cfg = micro()
    params = training.init_state(cfg)["params"]
    res = sweep_lib.sweep(FlaxModel("model", cfg.model, params, batch=3), "add", [2, 5], n_prompts=3, n_examples=4,
                          lambdas=(0.3,), progress=False)
    prompts = synthetic.mixed_prompts(synthetic.FAMILIES["add"], np.random.default_rng([0, 0]), 3, 4, [2, 5],
                                      [0.3, 0.7])
    logits, _ = run(cfg.model, params, jnp.asarray(prompts["tokens"]))
    p = np.asarray(jax.nn.softmax(logits[:, -1], axis=-1))
    want = np.take_along_axis(p, prompts["answers"], axis=1)[:, 0].mean()
    assert res.points[0].p_a.mean == pytest.approx(float(want), rel=1e-5)


# --------------------------------------------------------------------------- CLI


def _cli(argv):
    return cli.main(argv)


def test_cli_train_and_sweep_write_results(tmp_path, capsys, monkeypatch):
    # The tiny preset, two steps: exercises the CLI end to end (files, provenance, plot).
    run_dir = tmp_path / "run"
    assert _cli(["train", "--preset", "tiny", "--family", "add", "--steps", "2", "--seed", "1",
                 "--out", str(run_dir), "--json", str(tmp_path / "train.json"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "train.json").read_text())
    assert summary["config"]["preset"] == "tiny" and summary["config"]["seed"] == 1 and summary["step"] == 2
    assert {"package_version", "device", "date"} <= set(summary)
    assert (run_dir / "config.json").is_file() and (run_dir / "metrics.jsonl").is_file()
    assert _cli(["sweep", "--run", str(run_dir), "--tasks", "add:1,add:3", "--prompts", "4", "--examples", "3",
                 "--batch", "4", "--json", str(tmp_path / "s.json"), "--out", str(tmp_path / "plots"),
                 "--quiet"]) == 0
    res = sweep_lib.Sweep.from_json(tmp_path / "s.json")
    assert res.tasks == ("add:1", "add:3") and len(res.points) == 11
    assert None not in (res.config, res.package_version, res.device, res.date, res.checkpoint_step)
    assert res.command == "sweep" and res.plot.endswith("sweep_add1_add3.png")
    assert (tmp_path / "plots" / "sweep_add1_add3.png").is_file()
    out = capsys.readouterr().out
    assert "lambda=0.5" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--preset", "huge", "--out", "{tmp}/x"], "unknown preset"),
        (["train", "--family", "mul", "--out", "{tmp}/x"], "unknown family"),
        (["train", "--preset", "tiny"], "--out"),
        (["sweep", "--run", "{tmp}/missing", "--tasks", "copy:2,copy:6"], "neither a run directory nor a shipped"),
        (["eval", "--run", "{tmp}/missing"], "neither a run directory nor a shipped"),
        (["train", "--family", "copy", "--tasks-file", "{tmp}/t.json", "--out", "{tmp}/x"], "does not exist"),
        (["sweep", "--run", "{tmp}/missing", "--tasks", "copy:2"], "at least two tasks"),
        (["sweep", "--run", "{tmp}/missing", "--tasks", "copy:2,add:1"], "share one family"),
    ],
)
def test_cli_bad_input_is_one_line_and_nonzero(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--json", str(tmp_path / "r.json")]
    assert _cli(argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r.json").exists()


def test_cli_refuses_to_overwrite_a_run(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    write_json(tmp_path / "r" / "config.json", training.tiny().to_dict())
    assert _cli(["train", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_sweep_keeps_per_prompt_values_and_their_statistics():
    cfg = micro()
    params = training.init_state(cfg)["params"]
    res = sweep_lib.sweep(FlaxModel("model", cfg.model, params, batch=8), "add", [1, 3], n_prompts=9, n_examples=4,
                          lambdas=(0.2,), progress=False)
    pt = res.points[0]
    pa, pb = np.array(pt.per_prompt.p_a), np.array(pt.per_prompt.p_b)
    assert len(pa) == len(pb) == len(pt.per_prompt.share_a) == 9
    assert pt.p_a.mean == pytest.approx(pa.mean(), abs=1e-4)
    assert pt.second.mean == pytest.approx(np.minimum(pa, pb).mean(), abs=1e-4)
    assert pt.several.mean == pytest.approx((np.minimum(pa, pb) >= 0.1).mean(), abs=1e-9)
    assert pt.reference.proportional.second == pytest.approx(0.2)
    with pytest.raises(ValueError, match="lambda must lie in"):
        sweep_lib.sweep(FlaxModel("model", cfg.model, params, batch=8), "add", [1, 3], n_prompts=2, n_examples=2,
                        lambdas=(1.5,), progress=False)


def test_constructed_model_sweeps_the_same_prompts_within_its_bound():
    """The constructed model swept on lookup prompts: its probability of each answer is its
    readout of y_hat / |y_hat|_1 there (alpha of every task whose answer it is), within the
    readout's KL bound (Pinsker: every probability within sqrt(KL / 2))."""
    from construction import construct, default_task_set, task_outputs, task_weights

    ts = default_task_set()
    fam = synthetic.lookup_family(ts)
    model = construct(ts.tasks, vocab_size=ts.vocab_size, example_len=ts.example_len, max_examples=16,
                      dtype="float64")
    lambdas = (0.0, 0.5, 1.0)
    res = sweep_lib.sweep(model.probabilities, fam, [0, 1], n_prompts=40, n_examples=12, lambdas=lambdas,
                          progress=False)
    tol = np.sqrt(model.kl_bound(12) / 2)
    for i, lam in enumerate(lambdas):
        prompts = synthetic.mixed_prompts(fam, np.random.default_rng([0, i]), 40, 12, [0, 1], [lam, 1 - lam])
        alpha = task_weights(prompts["tokens"], ts.tasks, ts.example_len)  # [P, 3]
        outs = task_outputs(prompts["tokens"], ts.tasks, ts.example_len)  # [P, 3]
        share = alpha / alpha.sum(1, keepdims=True)
        want = np.stack([(share * (outs == prompts["answers"][:, [k]])).sum(1) for k in range(2)], axis=1)
        pp = res.points[i].per_prompt
        got = np.stack([pp.p_a, pp.p_b], axis=1)
        assert np.abs(got - want).max() <= tol + 1e-5  # + the JSON's rounding to 5 decimals


# --------------------------------------------------------------------------- curriculum and eval


def test_curriculum_draws_its_stages_tasks_then_all():
    cfg = micro(steps=10, batch_size=64, curriculum=((3, (1, 4)), (6, (1, 4, 7))))
    seen = {s: set(training.make_batch(cfg, s)["task"].tolist()) for s in range(1, 11)}
    assert all(seen[s] == {1, 4} for s in (1, 2, 3))
    assert all(seen[s] == {1, 4, 7} for s in (4, 5, 6))
    assert all(len(seen[s]) > 3 for s in (7, 8, 9, 10))
    assert training.TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="increasing steps"):
        micro(curriculum=((5, (1,)), (5, (2,))))
    with pytest.raises(ValueError, match="subset"):
        micro(curriculum=((5, (11,)),))


def test_evaluate_tasks_counts_what_it_says():
    cfg = micro()
    params = training.init_state(cfg)["params"]
    res = training.evaluate_tasks(cfg, params, sequences=7, batch=4, seed=3)
    assert set(res["tasks"]) == {f"add:{h}" for h in range(10)}
    # Against a direct count on the same sequences (7 of each task, drawn in batches of 4).
    from construction.transformer import run

    fam = cfg.fam
    for h in (0, 6):
        rng = np.random.default_rng([3, 2, h])
        b = np.concatenate([synthetic.training_batch(fam.restrict([h]), rng, 4, cfg.n_examples)["tokens"]
                            for _ in range(2)])[:7]
        logits, _ = run(cfg.model, params, jnp.asarray(b[:, :-1]))
        where = synthetic.answer_positions(fam, cfg.n_examples)
        hits = (np.asarray(jnp.argmax(logits, -1))[:, where] == b[:, 1:][:, where]).mean(0)
        np.testing.assert_allclose(res["tasks"][f"add:{h}"]["example_acc"], hits, atol=1e-6)
    assert res["answer_acc"] == pytest.approx(np.mean([t["answer_acc"] for t in res["tasks"].values()]))


def test_cli_eval_writes_accuracies(tmp_path, capsys):
    run_dir = tmp_path / "run"
    training.train(micro(steps=2), run_dir, progress=False)
    assert _cli(["eval", "--run", str(run_dir), "--sequences", "3", "--json", str(tmp_path / "e.json"),
                 "--out", str(tmp_path), "--quiet"]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["sequences_per_task"] == 3 and len(res["example_acc"]) == 4 and res["checkpoint_step"] == 2
    assert {"config", "package_version", "device", "date"} <= set(res)
    assert (tmp_path / "eval_run.png").is_file()
    assert "second half" in capsys.readouterr().out


# --------------------------------------------------------------------------- shipped runs


def test_export_and_load_by_directory(tmp_path):
    from empirical import runs

    cfg = micro(steps=3)
    training.train(cfg, tmp_path / "r", progress=False)
    cfg_a, params_a, step_a = runs.load(tmp_path / "r")
    dest = runs.export(tmp_path / "r", tmp_path / "shipped")
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "metrics.jsonl", "params.npz", "summary.json"]
    cfg_b, params_b, step_b = runs.load(dest)
    assert cfg_b == cfg_a and step_b == step_a == 3 and _leaves_equal(params_a, params_b)


def test_corrupted_or_mismatched_runs_give_one_clear_error(tmp_path):
    from empirical import runs

    cfg = micro(steps=2)
    training.train(cfg, tmp_path / "r", progress=False)
    shipped = runs.export(tmp_path / "r", tmp_path / "s")
    # 1. truncated weights
    data = (shipped / "params.npz").read_bytes()
    (shipped / "params.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable parameter file"):
        runs.load(shipped)
    # 2. a config of another shape beside the weights
    runs.export(tmp_path / "r", shipped)
    other = micro(model=cfg.model.replace(d_model=48))
    write_json(shipped / "config.json", other.to_dict())
    with pytest.raises(ValueError, match="does not match its config.json"):
        runs.load(shipped)
    # 3. the orbax run with a config of another shape
    write_json(tmp_path / "r" / "config.json", other.to_dict())
    with pytest.raises(ValueError, match="cannot be restored with its config.json|does not match"):
        runs.load(tmp_path / "r")
    # 4. a config.json that is not one
    (shipped / "config.json").write_text("{\"model\": 3}")
    with pytest.raises(ValueError, match="not a valid training config"):
        runs.load(shipped)
    # 5. NaN weights
    training.train(cfg, tmp_path / "r2", progress=False)
    nan = runs.export(tmp_path / "r2", tmp_path / "nan")
    flat = dict(np.load(nan / "params.npz"))
    first = sorted(flat)[0]
    flat[first] = np.full_like(flat[first], np.nan)
    np.savez(nan / "params.npz", **flat)
    with pytest.raises(ValueError, match="non-finite"):
        runs.load(nan)
    with pytest.raises(FileNotFoundError, match="shipped"):
        runs.load("no-such-model")


# --------------------------------------------------------------------------- slow: Figure 3


@pytest.mark.slow
def test_tiny_lookup_preset_learns_and_superposes_on_average(tmp_path):
    """The tiny lookup preset end to end (about 4 minutes on 2 cores): >= 95% on the second half
    of fresh sequences, and at lambda = 0.5 both tasks' answers get >= 0.2 on average."""
    cfg = training.tiny(family="lookup")
    summary = training.train(cfg, tmp_path / "lookup", progress=False)
    assert summary["eval"]["answer_acc_late"] > 0.95, summary["eval"]
    _, params, _ = training.load_run(tmp_path / "lookup")
    assert training.evaluate_tasks(cfg, params, sequences=50)["answer_acc_late"] >= 0.95
    res = sweep_lib.sweep(FlaxModel("model", cfg.model, params), cfg.fam, [0, 1], n_prompts=200,
                          n_examples=cfg.n_examples - 1, progress=False)
    p_a, p_b = sweep_lib.series(res, "p_a"), sweep_lib.series(res, "p_b")
    mid = sweep_lib.at(res, 0.5)
    assert mid.p_a.mean >= 0.2 and mid.p_b.mean >= 0.2, mid
    assert p_a[-1] > 0.9 and p_b[0] > 0.9  # single-task prompts
    assert np.corrcoef(res.lambdas, p_a)[0, 1] > 0.9  # P(A) rises with lambda
    assert np.all(np.diff(p_a[::2]) > 0)  # ... monotonically on the grid 0, 0.2, ..., 1


def test_sweep_reports_every_family_tasks_answer_probability():
    cfg = micro()
    params = training.init_state(cfg)["params"]
    model = FlaxModel("model", cfg.model, params, batch=8)
    res = sweep_lib.sweep(model, "add", [1, 3], n_prompts=6, n_examples=4, lambdas=(0.4,), progress=False)
    pt = res.points[0]
    assert set(pt.family_tasks) == {f"add:{h}" for h in range(10)}
    assert pt.family_tasks["add:1"] == pytest.approx(pt.p_a.mean, abs=1e-6)
    assert pt.family_tasks["add:3"] == pytest.approx(pt.p_b.mean, abs=1e-6)
    # add's ten answers to a query are the ten digits: their probabilities are the digits' mass.
    prompts = synthetic.mixed_prompts(synthetic.FAMILIES["add"], np.random.default_rng([0, 0]), 6, 4, [1, 3],
                                      [0.4, 0.6])
    p = model.last_probs(prompts["tokens"])
    digits = p[:, synthetic.DIGIT0:synthetic.DIGIT0 + 10].sum(1).mean()
    assert sum(pt.family_tasks.values()) == pytest.approx(digits, abs=1e-5)


def test_sweep_follows_last_counts_prompts_led_by_their_last_example():
    """A stand-in model that always answers the task of the last example scores 1."""
    fam = synthetic.FAMILIES["add"]

    def last_example_model(tokens):
        # add prompts: the last example's answer minus its input is its shift h
        x, y = tokens[:, -6] - synthetic.DIGIT0, tokens[:, -4] - synthetic.DIGIT0  # "x>y\nq>"
        q = tokens[:, -2] - synthetic.DIGIT0
        out = np.zeros((len(tokens), synthetic.VOCAB_SIZE))
        out[np.arange(len(tokens)), (q + (y - x)) % 10 + synthetic.DIGIT0] = 1.0
        return out

    res = sweep_lib.sweep(last_example_model, fam, [1, 3], n_prompts=50, n_examples=6, lambdas=(0.3, 0.5),
                          progress=False)
    for pt in res.points:
        assert pt.follows_last.mean == 1.0
        assert pt.p_a.mean + pt.p_b.mean == pytest.approx(1.0)


def test_cli_export_ships_a_run_with_its_evaluation(tmp_path, capsys):
    from empirical import runs

    training.train(micro(steps=2), tmp_path / "run", progress=False)
    dest = tmp_path / "shipped" / "tiny"
    assert _cli(["export", "--run", str(tmp_path / "run"), "--to", str(dest), "--sequences", "2",
                 "--json", str(tmp_path / "x.json"), "--out", str(tmp_path / "plots"), "--quiet"]) == 0
    summary = json.loads((dest / "summary.json").read_text())
    assert summary["step"] == 2 and summary["eval"]["sequences_per_task"] == 2
    assert (tmp_path / "plots" / "learning_tiny.png").is_file() and (tmp_path / "plots" / "eval_tiny.png").is_file()
    cfg, _, step = runs.load(dest)
    assert cfg == micro(steps=2) and step == 2
    assert "exported" in capsys.readouterr().out
    # bad input: one line, exit status 2, nothing written
    assert _cli(["export", "--run", str(tmp_path / "nothing"), "--to", str(tmp_path / "y")]) == 2
    assert "neither a run directory" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert _cli(["export", "--run", str(tmp_path / "run")]) == 2
    assert "--to" in capsys.readouterr().err


def test_offset_and_example_code_embeddings():
    """offset_period / code_bits add learned embeddings of position mod n and of the example
    index's binary code; two positions with the same offset and example get the same one."""
    from construction.transformer import run

    model = training._model(synthetic.FAMILIES["add"], num_layers=1, d_model=16, num_heads=2, qk_dim=8, v_dim=8,
                            mlp_dims=16, offset_period=4, code_bits=2)
    from construction.transformer import init_params

    params = init_params(model, jax.random.key(0), 8)
    assert params["offset_embed"].shape == (4, 16) and params["code_embed"].shape == (2, 16)
    tokens = jnp.zeros((1, 16), jnp.int32)  # one token everywhere: the embedding differs by position only
    _, cache = run(model, params, tokens, capture={"embed"})
    emb = np.asarray(cache["embed"][0])
    assert not np.allclose(emb[1], emb[5])  # same offset, another example
    assert not np.allclose(emb[1], emb[2])  # same example, another offset
    np.testing.assert_allclose(emb[1] - emb[0], emb[13] - emb[12], atol=1e-6)  # offset part, any example
    with pytest.raises(ValueError, match="2-bit example code numbers at most 4"):
        run(model, params, jnp.zeros((1, 17), jnp.int32))
