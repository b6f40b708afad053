"""The scaling/capacity study (empirical/scaling.py) and calibration fits (empirical/calibration.py),
on models whose behaviour is known: the constructed model, and two oracles that read the prompt's
examples (a proportional mixer and a per-prompt chooser of the majority task)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical import calibration, scaling, synthetic
from empirical.cli import main

ADD = synthetic.family("add")
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "scaling"


def _example_tasks(tokens: np.ndarray) -> np.ndarray:
    """[P, m] the add task h = y - x mod 10 of every example, read off the tokens (the query is last)."""
    m = (tokens.shape[1] - ADD.lead - ADD.answer_offset) // ADD.example_len
    starts = ADD.lead + np.arange(m) * ADD.example_len
    x = tokens[:, starts] - synthetic.DIGIT0
    y = tokens[:, starts + ADD.answer_offset] - synthetic.DIGIT0
    return (y - x) % 10


def _oracle(kind: str):
    """An oracle whose ``last_probs`` (all the study asks of a model) give every task's answer to
    the query with the task's share of the examples (``mixer``), or all mass on the majority
    task's (``chooser``)."""

    def probs(tokens: np.ndarray) -> np.ndarray:
        hs = _example_tasks(tokens)
        xq = tokens[:, -2] - synthetic.DIGIT0  # the query's input, before '>'
        p = np.zeros((len(tokens), ADD.vocab_size))
        for i, row in enumerate(hs):
            share = np.bincount(row, minlength=10) / len(row)
            if kind == "chooser":
                share = (share == share.max()) / (share == share.max()).sum()
            for h in range(10):
                p[i, synthetic.DIGIT0 + (xq[i] + h) % 10] += share[h]
        return p

    return SimpleNamespace(name=kind, last_probs=probs)


def test_the_proportional_oracle_is_calibrated_and_superposes():
    res = scaling.evaluate_mixtures(_oracle("mixer"), ADD, ks=(2, 4), n_prompts=60, skewed=True, progress=False)
    for m in res:
        assert m.kl.mean == pytest.approx(0.0, abs=1e-9)
        assert m.other.mean == pytest.approx(0.0, abs=1e-9)
        assert m.n_prompts == 60
    d = [row for m in res for g in m.groups for row in g.d]
    p = [row for m in res for g in m.groups for row in g.p]
    fit = calibration.fit_exponent(d, p, bootstrap=20)
    assert fit.alpha == pytest.approx(1.0, abs=2e-3) and fit.lo <= 1.0 + 2e-3 and fit.hi >= 1.0 - 2e-3
    for b in calibration.reliability(d, p).bins:
        assert b.p.mean == pytest.approx(b.d, abs=1e-3)


def test_the_majority_chooser_is_far_from_proportional():
    res = scaling.evaluate_mixtures(_oracle("chooser"), ADD, ks=(3,), n_prompts=100, skewed=True, progress=False)
    d = [row for g in res[0].groups for row in g.d]
    p = [row for g in res[0].groups for row in g.p]
    fit = calibration.fit_exponent(d, p, bootstrap=20)
    assert fit.alpha > 10
    assert res[0].kl.mean > 0.1


def test_the_constructed_model_puts_every_task_in_its_top_k():
    fam = scaling.constructed_family()
    res = scaling.evaluate_mixtures(None, fam, ks=(2, 5), n_prompts=20, progress=False,
                                    make_model=scaling.constructed_models(fam))
    for m in res:
        assert m.r.mean == m.k
        assert m.kl.mean < 0.01
        # uniform mixtures: the second-largest task probability is near 1/K, not 0
        assert m.second.mean > 0.5 / m.k


def test_trained_and_constructed_prompts_use_the_same_tasks_and_mixtures():
    a = scaling.mixture_prompts(ADD, 3, n_prompts=20, n_examples=10, skewed=True, seed=4)
    b = scaling.mixture_prompts(scaling.constructed_family(), 3, n_prompts=20, n_examples=10, skewed=True, seed=4)
    again = scaling.mixture_prompts(ADD, 3, n_prompts=20, n_examples=10, skewed=True, seed=4)
    assert [g["tasks"] for g in a] == [g["tasks"] for g in b] == [g["tasks"] for g in again]
    assert [g["mixture"] for g in a] == [g["mixture"] for g in b]
    assert all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(a, again))
    assert all(len(set(g["tasks"])) == 3 for g in a)


@settings(deadline=None)
@given(st.integers(2, 6), st.integers(0, 10**6))
def test_r_counts_the_answers_among_the_top_k(k, seed):
    rng = np.random.default_rng(seed)
    v = 14
    p = rng.dirichlet(np.ones(v), size=5)
    answers = np.stack([rng.choice(v, size=k, replace=False) for _ in range(5)])
    tasks = rng.integers(0, k, size=(5, 7))
    m = scaling.prompt_metrics(p, answers, tasks, k)
    for i in range(5):
        top = set(np.argsort(-p[i])[:k])
        assert m["r_next_token"][i] == len(top & set(answers[i]))
    assert m["r"] is None and m["r_complete"] is None  # they need the distributions after each token
    assert np.allclose(m["d"].sum(axis=1), 1.0)


def test_the_three_rs_of_one_prompt_by_hand():
    """Vocabulary of 6 (token 0 the newline), K = 2, answers 2 and 3. p: token 1 .5, 2 .25,
    3 .2, 4 .05. After token 1 the newline gets .3 (token 5 .7: not complete for the authors'
    rule); after 2 and 3 it gets .9 and .99; after 4, .6. The authors' pool is {2 .25, 3 .2,
    4 .05}: both answers count (r = 2). Ours multiplies the newline in: 1 .15, 2 .225, 3 .198:
    threshold .198, both count too; with the newline after 3 at .5 ("3\n" .1 < "1\n" .15)
    r_complete drops to 1 while r stays 2. The next-token r counts 2 of the top 2 {1, 2}: 1."""
    nl = scaling.synthetic.NEWLINE
    assert nl == 0
    p = np.array([[0.0, 0.5, 0.25, 0.2, 0.05, 0.0]])
    after = np.zeros((1, 6, 6))
    for t, q in ((1, 0.3), (2, 0.9), (3, 0.99), (4, 0.6)):
        after[0, t, nl] = q
        after[0, t, 5] = 1 - q
    answers, tasks = np.array([[2, 3]]), np.array([[0, 1]])
    m = scaling.prompt_metrics(p, answers, tasks, 2, p_next=after)
    assert (m["r"][0], m["r_complete"][0], m["r_next_token"][0], m["r_strict"][0]) == (2, 2, 1, 2)
    after[0, 3, nl], after[0, 3, 5] = 0.5, 0.5
    m = scaling.prompt_metrics(p, answers, tasks, 2, p_next=after)
    assert (m["r"][0], m["r_complete"][0]) == (2, 1)


def test_next_after_reads_each_extended_prompt():
    """next_after's rows are the distributions of the prompts extended by one token."""
    calls = []

    def probs(tokens):
        calls.append(tokens.shape)
        out = np.zeros((len(tokens), 6))
        out[np.arange(len(tokens)), tokens[:, -1] % 6] = 1.0  # "repeat the last token"
        return out

    tokens = np.array([[1, 2, 3], [4, 4, 4]])
    p = np.array([[0.1, 0.5, 0.4, 0, 0, 0], [0, 0, 0, 0.3, 0.3, 0.4]])
    q = scaling.next_after(SimpleNamespace(last_probs=probs), tokens, p, np.array([[1, 3], [2, 5]]), beam=2)
    assert len(calls) == 1 and calls[0][1] == 4
    for i, t in ((0, 1), (0, 2), (0, 3), (1, 5), (1, 3), (1, 2)):
        assert q[i, t, t] == 1.0
    assert q[0, 4].sum() == 0.0


def test_members_share_the_budget_rule():
    ms = scaling.members("all")
    assert len(ms) == len(scaling.SIZES) + len(scaling.HEADS) - 1  # width 96 with 6 heads is in both
    cfgs = [m.config() for m in ms]
    assert {(c.steps, c.batch_size, c.n_examples, c.curriculum) for c in cfgs} == {
        (scaling.STEPS, scaling.BATCH, 40, scaling.CURRICULUM)}
    cap = [m.config().model for m in scaling.capacity_members()]
    assert {c.d_model for c in cap} == {scaling.CAPACITY_WIDTH}
    assert [c.num_heads * c.v_dim for c in cap] == [scaling.CAPACITY_WIDTH] * len(cap)
    with pytest.raises(ValueError, match="which"):
        scaling.members("bigger")


def test_a_member_is_named_by_its_run():
    assert [m.name for m in scaling.members("add-d96-h1")] == ["add-d96-h1"]
    assert scaling.members("add-d96-h1")[0].config().model.num_heads == 1
    assert scaling.member_names() == [m.name for m in scaling.members("all")]


def test_member_runs_name_each_seed_and_learning_rate(tmp_path):
    """The budget rule's run, its seeds, and a learning-rate grid crossed with seeds: each run's
    directory names what differs, and nothing else in the config does."""
    m = scaling.members("add-d24-h6")[0]
    base = m.config()
    assert base.lr == scaling.budget_lr(24) == 3e-3 and scaling.budget_lr(256) == pytest.approx(1.5e-3)
    assert scaling.member_runs(m, tmp_path) == [(base, tmp_path / "add-d24-h6")]
    assert [(c.seed, r.name) for c, r in scaling.member_runs(m, tmp_path, [2, 1])] == [
        (2, "add-d24-h6-seed2"), (1, "add-d24-h6-seed1")]
    grid = scaling.member_runs(m, tmp_path, [0, 1], [1e-3, 1e-2])
    assert [(c.lr, c.seed, r.name) for c, r in grid] == [
        (1e-3, 0, "add-d24-h6-lr0.001-seed0"), (1e-3, 1, "add-d24-h6-lr0.001-seed1"),
        (1e-2, 0, "add-d24-h6-lr0.01-seed0"), (1e-2, 1, "add-d24-h6-lr0.01-seed1")]
    assert {replace(c, lr=base.lr, seed=base.seed) for c, _ in grid} == {base}
    assert [c.seed for c, _ in scaling.member_runs(m, tmp_path, lrs=[1e-3])] == [0]


@pytest.mark.parametrize("seeds, lrs, message", [
    ([], None, "seeds"), ([1, 1], None, "seeds"), ([-1], None, "seeds"),
    (None, [], "lrs"), (None, [1e-3, 1e-3], "lrs"), (None, [0.0], "lrs"), (None, [float("nan")], "lrs"),
    ([0], [2.0], "lrs")])
def test_member_runs_refuse_bad_grids(tmp_path, seeds, lrs, message):
    with pytest.raises(ValueError, match=message):
        scaling.member_runs(scaling.members("add-d24-h6")[0], tmp_path, seeds, lrs)


def test_cli_refuses_an_unknown_member(tmp_path, capsys):
    assert main(["scaling", "train", "--which", "add-d7-h6", "--runs", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add-d24-h6" in err[0] and "add-d7-h6" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_the_seed_spread_holds_only_the_budget_rule_runs():
    """A member's crosses (:func:`scaling.seeds_of`) are its runs at other seeds, not its runs
    of a learning-rate grid."""
    spread = scaling.read_runs(RESULTS / "seeds.json")
    entry = spread.models[0]
    assert scaling.seeds_of(entry, spread)
    grid = replace(spread, models=(replace(entry, lr=10 * scaling.budget_lr(entry.width)),
                                   replace(entry, lr=scaling.budget_lr(entry.width))))
    assert scaling.seeds_of(entry, grid) == [grid.models[1]]


@pytest.mark.parametrize("bad, message", [
    (([[0.5, 0.5]], [[0.5, 0.5], [0.2, 0.3]]), "rows"),
    (([[0.5, 0.5]], [[0.5, 0.2, 0.3]]), "shape"),
    (([[0.5, 0.5]], [[-0.1, 0.3]]), "non-negative"),
    (([[1.0, 0.0]], [[0.5, 0.2]]), "two tasks"),
])
def test_calibration_refuses_bad_rows(bad, message):
    with pytest.raises(ValueError, match=message):
        calibration.fit_exponent(*bad, bootstrap=0)


def test_cli_refuses_a_study_that_is_not_one(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"command": "probe"}))
    for action in ("plot", "calibration"):
        assert main(["scaling", action, "--study", str(bad), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a `superpose scaling eval` result" in err[0]
    assert main(["scaling", "plot", "--out", str(tmp_path)]) == 2
    assert "needs --study" in capsys.readouterr().err
    assert main(["scaling", "runs", "--out", str(tmp_path)]) == 2
    assert "needs --run" in capsys.readouterr().err
    assert main(["scaling", "runs", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_plots_and_calibration_of_a_study(tmp_path):
    """A study whose 'trained' members are the two oracles: both plots are written, and the
    calibration entries tell the mixer (alpha 1, per-prompt distance 0) from the chooser."""
    kw = dict(n_prompts=20, progress=False)
    models = []
    for i, m in enumerate(scaling.scaling_members()[:2] + scaling.capacity_members()[:1]):
        oracle = _oracle("mixer" if i == 0 else "chooser")
        models.append(scaling.ScalingEntry(
            name=m.name, kind="trained", width=m.width, heads=m.heads, params=1000 * (i + 1), single_task_late_acc=1.0,
            worst_task_late_acc=1.0, uniform=tuple(scaling.evaluate_mixtures(oracle, ADD, ks=(2, 3), **kw)),
            skewed=tuple(scaling.evaluate_mixtures(oracle, ADD, ks=(2, 3), skewed=True, **kw))))
    study = _study(tmp_path, models, n_prompts=20)
    assert scaling.ScalingStudy.from_json(study.to_json()) == study
    for which in ("scaling", "capacity"):
        assert scaling.plot_family(study, which, tmp_path / f"{which}.png").stat().st_size > 0
    from types import SimpleNamespace as Doc

    llm_rows = (Doc(proportions=(0.75, 0.25), probs=(0.6, 0.2)), Doc(proportions=(0.2, 0.8), probs=(0.1, 0.4)))
    entries = scaling.calibration_entries(study, [Doc(model="m", family="f", rows=llm_rows)])
    mixer, chooser, llm = entries
    assert mixer.exponent.alpha == pytest.approx(1.0, abs=1e-2)
    assert mixer.per_prompt.tv.mean == pytest.approx(0.0, abs=1e-3)
    assert chooser.per_prompt.tv.mean > 0.1
    assert llm.exponent.alpha == pytest.approx(1.0, abs=1e-2) and llm.kind == "llm" and llm.ks is None
    assert calibration.CalibrationEntry.from_json(mixer.to_json()) == mixer
    assert calibration.plot(entries, tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no trained member"):
        scaling.plot_family(_study(tmp_path, []), "scaling", tmp_path / "x.png")


def _study(runs, models, n_prompts: int = 500, **config) -> scaling.ScalingStudy:
    """A study of ``models`` (made in the test, not measured)."""
    cfg = replace(scaling._study_config(runs, n_prompts, 0), **config)
    return scaling.ScalingStudy(command="scaling eval", config=cfg, package_version="test", device="cpu", date="today",
                                missing=(), models=tuple(models))


def test_reuse_refuses_a_study_of_other_settings(tmp_path):
    with pytest.raises(ValueError, match="other settings"):
        scaling.evaluate_study(tmp_path, n_prompts=500, seed=0, reuse=_study(tmp_path, [], seed=1), progress=False)


def test_fingerprint_tells_weights_apart():
    a = {"w": np.zeros((2, 3), np.float32), "b": np.ones(3, np.float32)}
    b = {"w": np.zeros((2, 3), np.float32), "b": np.array([1, 1, 1.0001], np.float32)}
    assert scaling.fingerprint(a) == scaling.fingerprint({k: v.copy() for k, v in a.items()})
    assert scaling.fingerprint(a) != scaling.fingerprint(b)


@cache
def _committed_study() -> scaling.ScalingStudy:
    return scaling.read_study(RESULTS / "scaling.json")


def test_the_committed_study_reproduces_on_a_seeded_subset():
    """One member's r's and KL recomputed on the committed study's first prompt group of K = 3
    (50 prompts, the same seeded draw): per prompt as committed (KL stored to 4 decimals, answer
    probabilities to 5; an r may differ only where a float32 tie decides it)."""
    from empirical.models import FlaxModel

    study, name, k = _committed_study(), "add-d96-h6", 3
    c = study.config
    saved = next(e for e in study.models if e.name == name).block(k).groups[0]
    group = scaling.mixture_prompts(ADD, k, n_prompts=c.n_prompts, n_examples=c.n_examples, skewed=False,
                                    seed=c.seed)[0]
    assert tuple(group["tasks"]) == saved.tasks
    model, _ = FlaxModel.trained(name)
    p = model.last_probs(group["tokens"])
    m = scaling.prompt_metrics(p, group["answers"], group["example_task"], k,
                               p_next=scaling.next_after(model, group["tokens"], p, group["answers"]))
    np.testing.assert_allclose(m["d"], saved.d, atol=1e-4)
    np.testing.assert_allclose(m["p"], saved.p, atol=2e-5)
    np.testing.assert_allclose(m["kl"], saved.kl, atol=2e-4)
    assert np.mean(m["r_next_token"] == np.asarray(saved.r_next_token or saved.r)) >= 0.96
    if saved.r_complete is not None:  # the study carries both r's
        assert np.mean(m["r"] == np.asarray(saved.r)) >= 0.96
        assert np.mean(m["r_complete"] == np.asarray(saved.r_complete)) >= 0.96
    assert np.mean(m["kl"]) == pytest.approx(np.mean(saved.kl), abs=1e-4)


def test_the_committed_study_was_measured_on_the_shipped_weights():
    """benchmarks/results/scaling/scaling.json names each member's weights by fingerprint: the
    shipped checkpoints are those weights, and the committed plots come from that file."""
    from empirical import runs

    study = _committed_study()
    trained = [e for e in study.models if e.kind == "trained"]
    assert {e.name for e in trained} | set(study.missing) == {m.name for m in scaling.members("all")}
    for e in trained:
        if e.name in runs.available():
            cfg, params, step = runs.load(e.name)
            assert step == scaling.STEPS and cfg == scaling.Member(e.name, e.width, e.heads).config()
            assert scaling.fingerprint(params) == e.fingerprint, e.name


def test_batches_of_runs_merge_into_one_result():
    """Two halves of the committed seeds file merge back into it; a run in both halves, or
    halves measured with other settings, are refused."""
    whole = scaling.read_runs(RESULTS / "seeds.json")
    n = len(whole.models) // 2

    def half(models, date):
        return replace(whole, date=date, models=models,
                       config=replace(whole.config, runs=tuple(m.label for m in models)))

    a, b = half(whole.models[:n], "2026-01-01T00:00:00+00:00"), half(whole.models[n:], "2026-01-02T00:00:00+00:00")
    merged = a.merge(b)
    assert merged.models == whole.models and merged.config == whole.config
    assert merged.date == b.date and b.merge(a).date == b.date
    with pytest.raises(ValueError, match="more than one batch"):
        a.merge(a)
    with pytest.raises(ValueError, match="different settings"):
        a.merge(replace(b, config=replace(b.config, n_prompts=500)))


def test_the_largest_members_plateau_knows_the_shifts_parity_only():
    """docs/scaling.md: the shipped 2.5M member (seed 0, 0.2 on every task) puts all its mass on
    the five digits whose parity is the answer's -- it infers whether the shift is odd or even,
    not which shift -- and within them is no better than a guess."""
    from empirical import runs
    from empirical.models import FlaxModel

    cfg, params, _ = runs.load("add-d288-h6")
    model = FlaxModel("add-d288-h6", cfg.model, params, "learned")
    same, hit = [], []
    for h in ADD.params:
        prompts = synthetic.mixed_prompts(ADD, np.random.default_rng([7, h]), 8, 40, np.array([h]), np.array([1.0]))
        p = model.last_probs(prompts["tokens"])[:, synthetic.DIGIT0:synthetic.DIGIT0 + 10]
        answer = np.asarray(prompts["answers"]).reshape(len(p), -1)[:, 0] - synthetic.DIGIT0
        same.append((p * (np.arange(10)[None] % 2 == answer[:, None] % 2)).sum(1))
        hit.append(p.argmax(1) == answer)
    assert np.concatenate(same).min() > 0.99
    assert 0.05 < np.concatenate(hit).mean() < 0.4
