"""Many models in one compiled step (``training.train_many``) and mixed training sequences
(``synthetic.Mixing``, ``TrainConfig.p_mix`` and friends, ``training.fork``).

The models are micro configurations (one layer, width 32, 4 examples) so that every test
runs in seconds.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from empirical import cli, synthetic, training
from tests.empirical.test_training import micro

#: vmapped and separate runs differ only by the order of float32 reductions (vmap batches
#: the matrix products): a few ulps per step. Over 6 AdamW steps at lr 1e-2 on weights of
#: order 0.1-1, 1e-5 absolute is ~100 ulps of float32 (eps 1.2e-7): far below any change a
#: wrong batch, seed or learning rate makes (>= 1e-3, checked below).
VMAP_ATOL = 1e-5


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(_leaves(a), _leaves(b), strict=True))


# --------------------------------------------------------------------------- many models, one step


def test_vmapped_models_match_separate_runs(tmp_path):
    cfgs = [micro(seed=0), micro(seed=1, lr=3e-3), micro(seed=0, p_mix=1.0)]
    many = training.train_many(cfgs, [tmp_path / f"g{i}" for i in range(len(cfgs))], progress=False)
    assert [m["group"]["index"] for m in many] == [0, 1, 2] and many[0]["group"]["size"] == 3
    for i, cfg in enumerate(cfgs):
        one = training.train(cfg, tmp_path / f"one{i}", progress=False)
        a = training.read_metrics(tmp_path / f"g{i}")
        b = training.read_metrics(tmp_path / f"one{i}")
        assert [r["step"] for r in a] == [r["step"] for r in b]
        np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
        np.testing.assert_allclose([r["lr"] for r in a], [r["lr"] for r in b], rtol=1e-6)
        cfg_a, p_a, step_a = training.load_run(tmp_path / f"g{i}")
        _, p_b, _ = training.load_run(tmp_path / f"one{i}")
        assert cfg_a == cfg and step_a == cfg.steps == one["step"]
        assert _max_diff(p_a, p_b) < VMAP_ATOL
    # the members really differ: other seed, other learning rate, other data
    for j in (1, 2):
        assert _max_diff(training.load_run(tmp_path / "g0")[1], training.load_run(tmp_path / f"g{j}")[1]) > 1e-3


def test_multi_model_resume_continues_exactly(tmp_path):
    cfgs = [micro(seed=s, ckpt_every=2) for s in (0, 1)]
    training.train_many(cfgs, [tmp_path / f"straight{s}" for s in (0, 1)], progress=False)
    outs = [tmp_path / f"split{s}" for s in (0, 1)]
    training.train_many(cfgs, outs, progress=False, stop_at=3)
    resumed = training.train_many(cfgs, outs, progress=False, resume=True)
    assert all(r["resumed_from"] == 3 and r["step"] == cfgs[0].steps for r in resumed)
    strip = lambda rs: [{k: v for k, v in r.items() if "tokens_per_s" not in k} for r in rs]  # noqa: E731
    for s in (0, 1):
        assert strip(training.read_metrics(tmp_path / f"straight{s}", kind=None)) == strip(
            training.read_metrics(tmp_path / f"split{s}", kind=None))
        a, b = training.load_run(tmp_path / f"straight{s}")[1], training.load_run(tmp_path / f"split{s}")[1]
        assert _max_diff(a, b) == 0.0


def test_a_group_must_share_everything_but_seed_rate_and_data(tmp_path):
    with pytest.raises(ValueError, match="differ in batch_size"):
        training.train_many([micro(seed=0), micro(seed=1, batch_size=4)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="same configuration"):
        training.train_many([micro(), micro()], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="its own run directory"):
        training.train_many([micro(seed=0), micro(seed=1)], [tmp_path / "a", tmp_path / "a"])
    with pytest.raises(ValueError, match="one run directory per model"):
        training.train_many([micro(seed=0)], [])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_trains_seeds_and_a_data_grid_into_run_directories(tmp_path, capsys):
    out = tmp_path / "runs"
    code = cli.main(["train", "--family", "add", "--steps", "2", "--seeds", "1", "--p-mix", "0,0.5",
                     "--mix-tasks", "2,3", "--out", str(out), "--quiet", "--json", str(tmp_path / "r.json")])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["p_mix0-seed1", "p_mix0.5-seed1"]
    for name in names:
        cfg = training.load_config(out / name)
        assert cfg.seed == int(name[-1]) and cfg.p_mix == float(name.split("-")[0][5:]) and cfg.mix_tasks == (2, 3)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert len(doc["runs"]) == 2 and {r["group"]["size"] for r in doc["runs"]} == {2}
    # resume the grid to a later step
    assert cli.main(["train", "--family", "add", "--steps", "3", "--seeds", "1", "--p-mix", "0,0.5",
                     "--mix-tasks", "2,3", "--out", str(out), "--quiet", "--resume"]) == 0
    assert training.load_run(out / "p_mix0.5-seed1")[2] == 3


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0,,2"], "--seeds: expected comma-separated integers"),
    (["--seeds", "1,1"], "--seeds: values repeat"),
    (["--seeds", "-1"], "--seeds: seeds must be >= 0"),
    (["--seeds", "0,1", "--seed", "3"], "give --seed or --seeds"),
    (["--p-mix", "1.5"], "p_mix must lie in [0, 1]"),
    (["--p-mix", "0.5", "--mix-concentration", "0"], "concentration must be > 0"),
    (["--family", "lookup", "--p-mix", "1", "--mix-tasks", "2,4"], "cannot draw more tasks than the lookup family's 3"),
    (["--mix-tasks", "a"], "--mix-tasks: expected LO,HI"),
    (["--label-noise", "1"], "label_noise must lie in [0, 1)"),
    (["--p-mix", "0.5", "--mix-from", "-1"], "mix_from must be >= 0"),
])
def test_cli_bad_mixture_settings_are_one_line_and_leave_nothing(argv, message, tmp_path, capsys):
    base = ["train", "--family", "add", "--steps", "2", "--quiet"]
    code = cli.main(base + ["--out", str(tmp_path / "run")] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_invalid_mixture_settings_fail_at_config_time():
    for changes, message in [(dict(p_mix=-0.1), "p_mix"), (dict(mix_concentration=-1.0), "concentration"),
                             (dict(p_mix=0.5, mix_tasks=(2, 11)), "more tasks"), (dict(target="distill"), "target"),
                             (dict(mix_tasks=(3, 2)), "range")]:
        with pytest.raises(ValueError, match=message):
            micro(**changes)


# --------------------------------------------------------------------------- mixed sequences


def _old_training_batch(fam, rng, batch, n_examples):
    """One task per sequence as it was written before mixing existed (the reference)."""
    h = rng.choice(np.asarray(fam.params), size=batch)
    x = fam.sample_inputs(rng, (batch, n_examples))
    y = fam.answers(x, h[:, None])
    return synthetic._with_bos(fam, synthetic._write_examples(fam, x, y))


@pytest.mark.parametrize("family", ["copy", "add", "lookup"])
def test_no_mixing_reproduces_the_one_task_batches(family):
    fam = synthetic.family(family)
    for mixing in (None, synthetic.Mixing(), synthetic.Mixing(p_mix=0.0, concentration=5.0, tasks=(2, 3))):
        b = synthetic.training_batch(fam, np.random.default_rng([4, 0, 9]), 6, 5, mixing)
        np.testing.assert_array_equal(b["tokens"], _old_training_batch(fam, np.random.default_rng([4, 0, 9]), 6, 5))
        assert (b["task"] >= 0).all() and (b["example_task"] == b["task"][:, None]).all()
    cfg = training.tiny(family)
    assert cfg.p_mix == 0 and cfg.mixing_at(1).plain
    np.testing.assert_array_equal(training.make_batch(cfg, 7)["tokens"],
                                  _old_training_batch(cfg.fam.restrict(training.tasks_at(cfg, 7)),
                                                      training.batch_rng(cfg, 7), cfg.batch_size, cfg.n_examples))


def test_mixed_sequences_follow_their_drawn_weights():
    fam = synthetic.family("add")
    rng = np.random.default_rng(0)
    m = 400
    # near-equal weights (concentration 1e4): each sequence's k tasks get ~1/k of the examples each
    b = synthetic.training_batch(fam, rng, 200, m, synthetic.Mixing(p_mix=1.0, concentration=1e4, tasks=(2, 4)))
    assert (b["task"] == -1).all()
    for row in b["example_task"]:
        tasks, counts = np.unique(row, return_counts=True)
        assert 2 <= len(tasks) <= 4
        share = counts / m
        # binomial spread of a share 1/k over 400 examples: sd <= 0.025; 5 sd
        assert np.abs(share - 1 / len(tasks)).max() < 0.125, (tasks, share)
    ks = [len(np.unique(row)) for row in b["example_task"]]
    assert set(ks) == {2, 3, 4}
    # every labelled answer is its example's task's answer
    x = b["tokens"][:, 1:].reshape(200, m, fam.example_len)[:, :, :1]
    np.testing.assert_array_equal(fam.answers(x, b["example_task"]), b["tokens"][:, 1:].reshape(200, m, -1)[:, :, 2])
    # concentrated weights (0.05): most sequences are dominated by one task
    b = synthetic.training_batch(fam, rng, 200, m, synthetic.Mixing(p_mix=1.0, concentration=0.05, tasks=(2, 2)))
    top = np.array([np.bincount(row, minlength=10).max() / m for row in b["example_task"]])
    assert np.mean(top > 0.9) > 0.6
    # Dirichlet(1) over two tasks: the first drawn task's share is uniform on [0, 1]: mean |share - 1/2| = 1/4
    b = synthetic.training_batch(fam, rng, 2000, m, synthetic.Mixing(p_mix=1.0, concentration=1.0, tasks=(2, 2)))
    first = (b["example_task"] == b["example_task"].min(axis=1, keepdims=True)).mean(axis=1)
    assert abs(np.abs(first - 0.5).mean() - 0.25) < 0.02


def test_p_mix_is_the_share_of_mixed_sequences():
    fam = synthetic.family("copy")
    b = synthetic.training_batch(fam, np.random.default_rng(1), 4000, 3, synthetic.Mixing(p_mix=0.2))
    assert abs(np.mean(b["task"] == -1) - 0.2) < 0.02  # binomial sd 0.0063


def test_soft_targets_are_the_posterior_predictive():
    fam = synthetic.family("lookup")
    a = 0.5
    b = synthetic.training_batch(fam, np.random.default_rng(2), 50, 12,
                                 synthetic.Mixing(p_mix=0.5, concentration=a, tasks=(2, 3), soft=True))
    soft = b["soft"]
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
    assert (soft >= 0).all()
    answers = b["answer_mask"].astype(bool)
    onehot = np.eye(fam.vocab_size)[b["tokens"]]
    np.testing.assert_array_equal(soft[~answers[..., None].repeat(fam.vocab_size, -1)].reshape(-1),
                                  onehot[~answers[..., None].repeat(fam.vocab_size, -1)].reshape(-1))
    single = b["task"] >= 0
    np.testing.assert_allclose(soft[single][answers[single]], onehot[single][answers[single]])
    # a mixed sequence by hand: example i's target gives task k (n_k(<i) + a) / (i + K a), on k's answer
    r = int(np.flatnonzero(~single)[0])
    tasks = np.unique(b["example_task"][r])
    x = b["tokens"][r].reshape(12, fam.example_len)[:, :-1]
    targets = soft[r][answers[r]]
    checked = 0
    for i in range(12):
        expected = np.zeros(fam.vocab_size)
        for k in tasks:
            n_k = int((b["example_task"][r, :i] == k).sum())
            expected[fam.answers(x[i : i + 1], np.array([k]))[0]] += (n_k + a) / (i + len(tasks) * a)
        if np.isclose(expected.sum(), 1.0):
            np.testing.assert_allclose(targets[i], expected, atol=1e-6)
            checked += 1
    assert checked == 12


def test_label_noise_replaces_a_share_of_single_task_labels():
    fam = synthetic.family("add")
    eps = 0.3
    b = synthetic.training_batch(fam, np.random.default_rng(3), 2000, 10, synthetic.Mixing(label_noise=eps))
    x = b["tokens"][:, 1:].reshape(2000, 10, fam.example_len)
    clean = fam.answers(x[:, :, :1], b["task"][:, None])
    wrong = np.mean(x[:, :, 2] != clean)
    assert abs(wrong - eps * 0.9) < 0.015  # a random answer is right 1 time in 10


def test_soft_target_training_lowers_the_loss():
    cfg = micro(p_mix=1.0, target="shares", steps=8)
    state = training.init_state(cfg)
    step = training.make_train_step(cfg)
    batch = training.make_batch(cfg, 1)
    assert "soft" in batch
    losses = []
    for _ in range(8):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 0.2 and all(np.isfinite(losses)), losses


def test_fork_continues_as_the_straight_run(tmp_path):
    cfg = micro(steps=8, ckpt_every=4, mix_from=4, mix_tasks=(2, 3))
    training.train(cfg, tmp_path / "src", progress=False)
    mixed = cfg.replace(p_mix=1.0)
    training.train(mixed, tmp_path / "straight", progress=False)
    assert training.fork(tmp_path / "src", 4, tmp_path / "fork", p_mix=1.0) == mixed
    res = training.train(mixed, tmp_path / "fork", resume=True, progress=False)
    assert res["resumed_from"] == 4
    assert _max_diff(training.load_run(tmp_path / "straight")[1], training.load_run(tmp_path / "fork")[1]) == 0.0
    with pytest.raises(ValueError, match="act only after the fork"):
        training.fork(tmp_path / "src", 4, tmp_path / "bad", p_mix=1.0, mix_from=2)
    with pytest.raises(ValueError, match="not batch_size"):
        training.fork(tmp_path / "src", 4, tmp_path / "bad", batch_size=4)
    assert not (tmp_path / "bad").exists()


def test_label_noise_and_soft_targets_can_fork_after_the_single_task_stage(tmp_path):
    cfg = micro(steps=6, ckpt_every=3, mix_from=3, mix_tasks=(2, 3))
    noisy = cfg.replace(label_noise=0.5)
    # no noise up to mix_from (the fork point), noise after it
    for step in (1, 3):
        assert all(np.array_equal(a, b) for a, b in zip(training.make_batch(cfg, step).values(),
                                                         training.make_batch(noisy, step).values()))
    assert not np.array_equal(training.make_batch(cfg, 4)["tokens"], training.make_batch(noisy, 4)["tokens"])
    training.train(cfg, tmp_path / "src", progress=False)
    assert training.fork(tmp_path / "src", 3, tmp_path / "noise", label_noise=0.5) == noisy
    soft = cfg.replace(p_mix=1.0, target="shares")
    assert training.fork(tmp_path / "src", 3, tmp_path / "soft", p_mix=1.0, target="shares") == soft
    res = training.train(soft, tmp_path / "soft", resume=True, progress=False)
    assert res["resumed_from"] == 3 and res["step"] == 6


def test_a_study_names_and_configures_its_arms():
    from empirical import mixture_study as ms

    study = ms.TINY
    assert study.arms == ("0", "0.2", "1", "soft", "noise0.1")
    names = {study.run_name(arm, s) for arm in study.arms for s in study.seeds}
    assert len(names) == len(study.arms) * len(study.seeds)  # one directory per arm and seed
    soft, noise = study.config("soft", 1), study.config("noise0.1", 2)
    assert (soft.p_mix, soft.target, soft.seed, soft.mix_from) == (1.0, "shares", 1, study.fork)
    assert (noise.p_mix, noise.label_noise, noise.target) == (0.0, 0.1, "label")
    assert study.config("0.2", 0).p_mix == 0.2 and study.config("0.2", 0).preset == "tiny"
    assert ms.config(1.0, 0).preset == "like-construction" and ms.config(1.0, 0).steps == ms.RECIPE["steps"]


def test_mixture_plot_reads_the_committed_results_as_records(tmp_path):
    """``superpose mixture plot`` on a committed eval (with contrasts) and ablation result: typed
    records in, the summary, the lines and the figures out; a file of another kind is one error."""
    from pathlib import Path

    from empirical import mixture_study as ms

    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "mixture"
    lines = []
    doc = ms.command("plot", study_path=str(results / "mixture_tiny_contrasts.json"), out=tmp_path, echo=lines.append)
    assert isinstance(doc, ms.MixtureEval) and set(doc.arms) == {"soft", "noise0.1"}
    entry = doc.arms["soft"]["0"]
    assert entry.changes == {"p_mix": 1.0, "target": "shares"} and entry.ablation is None
    assert entry.value("accuracy") == entry.accuracy.answer_acc_late and entry.report.lambda_grid.at(0.5).n_prompts == 200
    assert lines[0].split()[:2] == ["model", "acc"] and "soft target seed 0" in lines[0]
    assert (tmp_path / "mixture_dose_tiny_contrasts.png").stat().st_size > 0
    lines.clear()
    ablate = ms.command("plot", study_path=str(results / "ablation.json"), out=tmp_path, echo=lines.append)
    assert isinstance(ablate, ms.MixtureAblation) and list(ablate.models) == ["like-construction-mix",
                                                                              "runs/mix/lc-mix-seed1"]
    ab = ablate.models["like-construction-mix"]
    assert ab.cumulative.averaging_first[0].silenced == ((ab.heads[0].layer, ab.heads[0].head),)
    assert lines[0].startswith("ablation like-construction-mix: TV ")
    assert (tmp_path / "mixture_ablation.png").stat().st_size > 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"command": "sweep", "points": []}))
    with pytest.raises(ValueError, match="is not a `superpose mixture eval` or `mixture ablate` result"):
        ms.command("plot", study_path=str(other), out=tmp_path, echo=lines.append)


@pytest.mark.slow
def test_the_mixture_recipe_trains_a_model_that_superposes(tmp_path):
    """End to end (~10 minutes on 2 cores): the study's p_mix = 1 recipe, one seed, trained
    from scratch, meets every target on fresh prompts."""
    from empirical import mixture_study

    cfg = mixture_study.config(1.0, seed=0)
    training.train(cfg, tmp_path / "run", progress=False)
    _, params, _ = training.load_run(tmp_path / "run")
    result = mixture_study.measure(cfg, params, n_prompts=100, sequences=50, seed=7)
    assert all(t.met for t in result.targets.values()), result.targets
