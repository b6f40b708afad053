"""``superpose check``: the table, the JSON (atomic, with provenance), the plots, the exit code."""

from __future__ import annotations

import pytest

import proofs_check
from empirical import cli
from proofs_check import LemmaResult, binary_code_gap, sweeps
from proofs_check.report import CheckResult


def test_check_quick_every_lemma_holds(tmp_path, capsys):
    out = tmp_path / "c.json"
    rc = cli.main(["check", "--quick", "--no-plots", "--json", str(out), "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert rc == 0, text
    data = CheckResult.from_json(out)
    assert data.all_hold is True and data.to_text() == out.read_text()
    assert data.command == "check" and data.config["grid"] == "quick" and data.package_version and data.device and data.date
    assert data.beta_sweep is None and data.length_sweep is None and data.plots is None  # --no-plots
    lemmas = {r.lemma.split(" ")[0] for r in data.results}
    assert lemmas == {"1", "2", "3", "4", "5", "6", "7"}  # every lemma of docs/theory.md section 5
    assert all(r.holds for r in data.results)
    e2e = [r for r in data.results if r.lemma == "7 end-to-end composition"]
    assert e2e and min(r.bound for r in e2e if r.config["regime"] == "discrete") < 1e-6
    assert "all hold" in text and "worst measured" in text
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


@pytest.fixture
def tiny_grid(monkeypatch):
    monkeypatch.setattr(sweeps, "BETAS_QUICK", (5.0, 30.0))
    monkeypatch.setattr(sweeps, "LENGTHS_QUICK", (1, 2))
    monkeypatch.setattr(proofs_check.report, "run_all", lambda grid, seed=0, progress=None: [binary_code_gap(8)])


def test_check_writes_both_plots(tmp_path, tiny_grid):
    out = tmp_path / "c.json"
    assert cli.main(["check", "--quick", "--json", str(out), "--out", str(tmp_path / "plots")]) == 0
    data = CheckResult.from_json(out)
    assert data.plots == (str(tmp_path / "plots" / "check_beta.png"), str(tmp_path / "plots" / "check_length.png"))
    assert (tmp_path / "plots" / "check_beta.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "check_length.png").stat().st_size > 1000
    beta = data.beta_sweep
    assert beta.betas == (5.0, 30.0)
    # exponential decay in float64, and float32 rounding dominating at beta=30
    assert beta.measured_float64[1] < 1e-9 < beta.measured_float64[0]
    assert beta.measured_float32[1] > 100 * beta.measured_float64[1]
    assert all(m <= b for m, b in zip(beta.measured_float32, beta.bound_float32))
    assert all(m <= b for m, b in zip(beta.measured_float64, beta.bound_float64))
    length = data.length_sweep
    assert length.n_examples == (1, 2) and length.betas == (10.0, 30.0)
    assert all(m <= b for beta in length.betas for m, b in zip(length.measured(beta), length.bound(beta)))


def test_check_exits_non_zero_when_a_lemma_fails(tmp_path, monkeypatch, capsys):
    bad = LemmaResult("1 softmax as hard attention", {"beta": 1.0}, 1e-9, 0.5, False)
    monkeypatch.setattr(proofs_check.report, "run_all", lambda grid, seed=0, progress=None: [bad])
    out = tmp_path / "c.json"
    assert cli.main(["check", "--quick", "--no-plots", "--json", str(out), "--out", str(tmp_path)]) == 1
    assert CheckResult.from_json(out).all_hold is False
    assert "1 failed" in capsys.readouterr().out
