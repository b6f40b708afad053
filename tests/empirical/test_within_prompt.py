"""Within-prompt statistics (empirical/within_prompt.py) on arrays whose structure is known."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical import within_prompt as wp

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _chooser(lam: float, n: int, rng) -> np.ndarray:
    """All mass on A in a fraction lam of the prompts, on B in the rest."""
    pick_a = rng.random(n) < lam
    return np.stack([pick_a, ~pick_a], axis=1).astype(float)


def _proportional(lam: float, n: int) -> np.ndarray:
    return np.tile([lam, 1 - lam], (n, 1))


@pytest.mark.parametrize("lam", [0.1, 0.3, 0.5, 0.9])
def test_pure_strategies_give_their_reference_values(lam):
    rng = np.random.default_rng(0)
    ref = wp.reference([lam, 1 - lam])
    chooser = wp.summary(_chooser(lam, 4000, rng))
    mixer = wp.summary(_proportional(lam, 4000))
    for key in ("second", "entropy", "several"):
        assert chooser[key]["mean"] == pytest.approx(ref["chooser"][key], abs=1e-12)
        assert mixer[key]["mean"] == pytest.approx(ref["proportional"][key], abs=1e-12)
    assert ref["proportional"]["second"] == pytest.approx(min(lam, 1 - lam))
    h = -(lam * np.log2(lam) + (1 - lam) * np.log2(1 - lam))
    assert ref["proportional"]["entropy"] == pytest.approx(h)
    # The two strategies have the same mean P(A): only the per-prompt statistics tell them apart.
    assert _chooser(lam, 200000, rng)[:, 0].mean() == pytest.approx(lam, abs=0.005)


def test_a_blend_is_in_between_in_proportion():
    rng = np.random.default_rng(1)
    lam, n, w = 0.5, 10000, 0.3  # 30% of prompts mix proportionally, 70% choose
    p = np.concatenate([_proportional(lam, int(w * n)), _chooser(lam, n - int(w * n), rng)])
    s = wp.summary(p)
    assert s["second"]["mean"] == pytest.approx(w * 0.5, abs=1e-12)
    assert s["several"]["mean"] == pytest.approx(w, abs=1e-12)
    assert s["entropy"]["mean"] == pytest.approx(w * 1.0, abs=1e-12)
    assert s["second"]["lo"] < s["second"]["mean"] < s["second"]["hi"] or s["second"]["ci95"] == 0


def test_other_mass_and_many_tasks():
    # Mass elsewhere does not count as superposition; renormalised entropy ignores it.
    p = np.array([[0.05, 0.05, 0.0], [0.4, 0.3, 0.2], [0.0, 0.0, 0.0]])
    per = wp.per_prompt(p)
    np.testing.assert_allclose(per["second"], [0.05, 0.3, 0.0])
    np.testing.assert_allclose(per["several"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(per["entropy"][0], 1.0)  # two equal tasks: one bit
    np.testing.assert_allclose(per["entropy"][2], np.log2(3))  # no mass at all: uniform by convention


@settings(max_examples=50, deadline=None)
@given(k=st.integers(2, 6), n=st.integers(2, 30), seed=st.integers(0, 2**31 - 1))
def test_statistics_are_bounded(k, n, seed):
    rng = np.random.default_rng(seed)
    raw = rng.dirichlet(np.ones(k + 1), size=n)[:, :k]  # the last column plays "other"
    per = wp.per_prompt(raw)
    assert np.all((0 <= per["second"]) & (per["second"] <= 0.5 + 1e-12))
    assert np.all((0 <= per["entropy"]) & (per["entropy"] <= np.log2(k) + 1e-9))
    assert set(np.unique(per["several"])) <= {0.0, 1.0}


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="K >= 2"):
        wp.per_prompt(np.ones((3, 1)) * 0.5)
    with pytest.raises(ValueError, match="sum to at most 1"):
        wp.per_prompt(np.array([[0.7, 0.6]]))


def _saved_sweep(lam: float, p: np.ndarray, share, *, run: str | None = None, tasks=("add:1", "add:3")):
    """A one-lambda sweep result whose prompts give task probabilities ``p`` [n, 2] and A's shares
    ``share``, as saved before the variance ratio was recorded (its other statistics: placeholders)."""
    from empirical.results import MeanCI
    from empirical.sweep import PerPrompt, Sweep, SweepPoint

    n, none = len(p), MeanCI.of(np.zeros(len(p)))
    point = SweepPoint(lam=lam, p_a=MeanCI.of(p[:, 0]), p_b=MeanCI.of(p[:, 1]), p_other=MeanCI.of(1 - p.sum(1)),
                       acc_a=none, acc_b=none, kl=none,
                       **{key: MeanCI.of(v) for key, v in wp.per_prompt(np.clip(p, 0, 1)).items()},
                       reference=wp.Reference.of([lam, 1 - lam]), family_tasks={}, follows_last=none,
                       per_prompt=PerPrompt(p_a=tuple(p[:, 0].tolist()), p_b=tuple(p[:, 1].tolist()),
                                            share_a=tuple(np.asarray(share, dtype=float).tolist())))
    return Sweep(command="sweep", run=run, family="add", tasks=tasks, task_labels=tasks, n_prompts=n,
                 n_examples=19, seed=0, lambdas=(lam,), points=(point,))


def test_summary_rows_from_saved_sweep_and_probe_results(tmp_path):
    """from_sweep / from_probe read the numbers a saved result carries; the CLI plots them."""
    from empirical import cli

    rng = np.random.default_rng(1)
    lam, n = 0.5, 200
    chooser = _chooser(lam, n, rng)
    share = rng.binomial(19, lam, size=n) / 19
    sweep = _saved_sweep(lam, chooser, share, run="x")
    row = wp.from_sweep(sweep, lam)
    assert row.second.mean == 0.0 and row.several.mean == 0.0
    assert row.proportional == pytest.approx(np.minimum(share, 1 - share).mean())
    with pytest.raises(ValueError, match="no lambda"):
        wp.from_sweep(sweep, 0.3)
    from empirical.llm.probe import load_saved

    saved = RESULTS / "llm_probe" / "smollm2_add_100.json"
    family = load_saved(saved).results[0]
    k = len(family.summary.tasks)
    probe_row = wp.from_probe(family)
    assert probe_row.second == family.summary.within_prompt.second and probe_row.prompts == len(family.per_prompt)
    assert probe_row.proportional == pytest.approx(1 / k) and probe_row.setting == f"{k} tasks, 1/{k} each"
    recomputed = wp.summary(np.array([r.probs for r in family.per_prompt]))
    assert probe_row.second.mean == pytest.approx(recomputed["second"]["mean"], abs=1e-12)

    sweep.write(tmp_path / "s.json")
    assert cli.main(["within-prompt", "--sweep", str(tmp_path / "s.json"), "--probe", str(saved),
                     "--json", str(tmp_path / "w.json"), "--out", str(tmp_path)]) == 0
    result = wp.WithinPromptResult.from_json(tmp_path / "w.json")
    assert set(result.rows) == {"trained x: add:1 vs add:3", "smollm2: add"}
    assert isinstance(result.rows["trained x: add:1 vs add:3"], wp.SweepRow)
    assert type(result.rows["smollm2: add"]) is wp.Row and result.rows["smollm2: add"] == probe_row
    assert result.rows["trained x: add:1 vs add:3"] == row and result.plot is not None
    assert (tmp_path / "within_prompt_summary.png").is_file()
    assert cli.main(["within-prompt"]) == 2
    assert cli.main(["within-prompt", "--sweep", str(tmp_path / "missing.json")]) == 2
    # a file of another kind (here the probe result) given as a sweep: one clear error
    with pytest.raises(ValueError, match=r"smollm2_add_100\.json is not a `superpose sweep` result \(.*unknown field"):
        wp.command([str(saved)])


def test_variance_ratio_of_a_saved_sweep_and_probe():
    """A sweep saved without the ratio gets it from its per-prompt values (1 for a chooser, ~0
    for proportional mixing); a probe result's comes per task."""
    rng = np.random.default_rng(2)
    chooser = _chooser(0.3, 400, rng)
    mixer = np.tile([0.3, 0.7], (400, 1)) + 0.001 * rng.standard_normal((400, 2))
    sweep = _saved_sweep(0.3, chooser, [0.3] * 400, run="c", tasks=("a", "b"))
    assert sweep.points[0].variance_ratio is None
    row = wp.from_sweep(sweep, 0.3)
    assert row.variance_ratio["a"] == pytest.approx(1.0) and row.variance_ratio_range[0] == pytest.approx(1.0)
    pt = sweep.points[0]
    mixed = replace(pt, per_prompt=replace(pt.per_prompt, p_a=tuple(mixer[:, 0]), p_b=tuple(mixer[:, 1])))
    assert max(wp.from_sweep(replace(sweep, points=(mixed,)), 0.3).variance_ratio.values()) < 0.001
    from empirical.llm.probe import load_saved

    family = load_saved(RESULTS / "llm_probe" / "gemma3_letter_100.json").results[0]
    recomputed = wp.variance_ratio(np.array([r.probs for r in family.per_prompt]))
    ratios = wp.from_probe(family).variance_ratio
    assert list(ratios) == list(family.summary.tasks)
    assert list(ratios.values()) == pytest.approx(recomputed, abs=1e-12)


def _authors_files(folder, lams=(0.1, 0.5, 0.9), chooser=True):
    import json

    summary = {}
    for lam in (0.0, *lams, 1.0):
        m = lam
        v = m * (1 - m) if chooser else 0.0
        summary.update({f"eval/{lam}_ans_prob_mean_0": m, f"eval/{lam}_ans_prob_mean_1": 1 - m,
                        f"eval/{lam}_ans_prob_var_0": v, f"eval/{lam}_ans_prob_var_1": v, f"eval/{lam}_loss": 1.0})
    (folder / "run_summaries.json").write_text(json.dumps([summary]))
    (folder / "run_configs.json").write_text(json.dumps([{"task": "copy", "run_name": "eval_copy"}]))


def test_the_authors_logged_ratios_are_read_per_lambda(tmp_path):
    _authors_files(tmp_path)
    got = wp.load_authors(tmp_path)
    run = got.runs["copy"]
    assert got.repository == wp.AUTHORS_RUNS and set(got.sha256) == {"run_summaries.json", "run_configs.json"}
    assert set(run.variance_ratio_by_lambda) == {"0.1", "0.5", "0.9"}  # lambda 0 and 1: m(1 - m) = 0
    assert run.variance_ratio_range == (pytest.approx(1.0), pytest.approx(1.0))
    assert run.p_a_plus_p_b_by_lambda["0.5"] == pytest.approx(1.0)
    _authors_files(tmp_path, chooser=False)
    assert wp.load_authors(tmp_path).runs["copy"].variance_ratio_range == (0.0, 0.0)
    with pytest.raises(ValueError, match="does not exist"):
        wp.load_authors(tmp_path / "nope")
    with pytest.raises(ValueError, match="2 run summaries but 1"):
        wp.authors_ratios([{}, {}], [{}])


def test_within_prompt_cli_with_the_authors_runs(tmp_path, capsys):
    import json

    from empirical import cli

    probe = RESULTS / "llm_probe" / "gemma3_add_100.json"
    (tmp_path / "authors").mkdir()
    _authors_files(tmp_path / "authors")
    assert cli.main(["within-prompt", "--probe", str(probe), "--authors", str(tmp_path / "authors"),
                     "--json", str(tmp_path / "w.json")]) == 0
    result = wp.WithinPromptResult.from_json(tmp_path / "w.json")
    from empirical.llm.probe import load_saved

    assert result.rows["gemma3: add"] == wp.from_probe(load_saved(probe).results[0])
    assert result.authors.runs["copy"].variance_ratio_range[0] == pytest.approx(1.0)
    assert "authors" not in json.dumps(result.config).replace('"authors": "JackCai1206', "")  # no path recorded
    assert "authors' copy" in capsys.readouterr().out
    assert cli.main(["within-prompt", "--probe", str(probe), "--authors", str(tmp_path / "no")]) == 2
