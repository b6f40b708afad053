"""The seed-spread study (``empirical.seed_spread``): its seed 0 is the shipped model's
configuration, the other seeds differ in the seed alone, and its table reads every seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empirical import runs, seed_spread


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
    doc = json.loads((Path(__file__).resolve().parents[2] / "benchmarks/results/seeds/seeds.json").read_text())
    rows = seed_spread.table(doc)
    assert {r["family"] for r in rows} == set(doc["families"])
    for r, (fam, seeds) in zip(rows, doc["families"].items()):
        assert r["seeds"] == len(seeds) == len(doc["seeds"]) >= 3
        values = [next(p for p in e["points"] if p["lambda"] == 0.5)["p_a"] for e in seeds.values()]
        assert (r["p_a@0.5"]["lo"], r["p_a@0.5"]["hi"]) == (min(values), max(values))
        assert r["p_a@0.5"]["lo"] <= r["p_a@0.5"]["mean"] <= r["p_a@0.5"]["hi"]
    assert "lookup" in seed_spread.summary(doc)
