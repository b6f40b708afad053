"""The seed-spread study (``empirical.seed_spread``): its seed 0 is the shipped model's
configuration, the other seeds differ in the seed alone, and its table reads every seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empirical import runs, seed_spread

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.mark.parametrize("family", sorted(seed_spread.FIGURE3))
def test_the_seeds_are_the_shipped_configuration_but_the_seed(family):
    shipped = runs.load(family)[0]
    assert seed_spread.config(family, 0) == shipped
    other = seed_spread.config(family, 2)
    assert other.seed == 2 and other.replace(seed=0) == shipped


def test_an_unknown_family_is_one_clear_error():
    with pytest.raises(ValueError, match="family must be one of"):
        seed_spread.config("nope", 0)


def test_the_committed_study_reads_back_with_its_spread():
    study = seed_spread.SeedStudy.from_json(RESULTS / "seeds" / "seeds.json")
    rows = seed_spread.table(study)
    assert {r.family for r in rows} == set(study.families)
    for r, seeds in zip(rows, study.families.values()):
        assert r.seeds == len(seeds) == len(study.seeds) >= 3
        values = [next(p for p in e.points if p.lam == 0.5).p_a for e in seeds.values()]
        assert (r.p_a.lo, r.p_a.hi) == (min(values), max(values))
        assert r.p_a.lo <= r.p_a.mean <= r.p_a.hi
    assert "lookup" in seed_spread.summary(study)


def test_seeds_plot_reads_a_study_and_refuses_another_file(tmp_path):
    study = RESULTS / "seeds" / "seeds.json"
    lines = []
    got = seed_spread.command("plot", study_path=str(study), out=tmp_path, echo=lines.append)
    assert got == seed_spread.SeedStudy.from_json(study) and (tmp_path / "seeds.png").is_file()
    assert "lookup" in lines[0]
    doc = json.loads(study.read_text())
    del doc["families"]["add"]["1"]["points"][2]["p_a"]
    (tmp_path / "broken.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"broken\.json is not a `superpose seeds eval` result \(.*missing field"):
        seed_spread.command("plot", study_path=str(tmp_path / "broken.json"), out=tmp_path)
    other = RESULTS / "within_prompt_summary.json"
    with pytest.raises(ValueError, match="within_prompt_summary.json is not a `superpose seeds eval` result"):
        seed_spread.command("plot", study_path=str(other), out=tmp_path)
