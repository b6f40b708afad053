"""`superpose verify`: the README's main job, its JSON and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from empirical.cli import main
from empirical.results import result_class
from empirical.verify import LambdaRow, VerifyResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_verify_default_holds_with_a_tight_bound(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["verify", "--json", str(out), "--out", str(tmp_path), "--prompts", "10", "--quiet"])
    assert code == 0
    result = VerifyResult.from_json(out)
    assert result.holds and result.max_error <= result.error_bound < 1e-6
    assert result.prompts == 110 and len(result.lambdas) == 11
    assert None not in (result.config, result.package_version, result.device, result.date)
    assert result.command == "verify"
    assert [r.layer for r in result.layers] == list(range(8))
    # at lambda = 1 every example is the first task's: it holds all its weight
    assert result.lambdas[-1].proportions[0] == 1.0
    assert (tmp_path / "verify_superposition.png").stat().st_size > 0
    assert "HOLDS" in capsys.readouterr().out


def test_verify_takes_any_task_file(tmp_path):
    out = tmp_path / "r.json"
    code = main(["verify", "--tasks-file", str(EXAMPLES / "letters.json"), "--json", str(out), "--out",
                 str(tmp_path), "--prompts", "5", "--quiet"])
    result = VerifyResult.from_json(out)
    assert code == 0 and result.tasks == ("upper-case x0", "copy x3", "x1 + 5")
    masses = np.array([r.mass_mean for r in result.lambdas])
    ideal = np.array([r.ideal_mass_mean for r in result.lambdas])
    assert np.abs(masses - ideal).max() <= result.error_bound


def test_a_written_verify_result_reads_back_and_writes_out_unchanged(tmp_path):
    out = tmp_path / "r.json"
    assert main(["verify", "--tasks-file", str(EXAMPLES / "letters.json"), "--json", str(out), "--out",
                 str(tmp_path), "--prompts", "5", "--quiet"]) == 0
    text = out.read_text()
    assert result_class(json.loads(text)) is VerifyResult  # found by its command, like the committed results
    result = VerifyResult.from_json(out)
    assert isinstance(result.lambdas[0], LambdaRow) and isinstance(result.lambdas[0].mass_mean, tuple)
    assert result.to_text(indent=2 if text.startswith("{\n") else None) == text
    assert VerifyResult.from_json(result.to_json()) == result


def test_verify_bad_task_file_gives_one_line_and_no_result(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"vocab_size": 3, "example_len": 2, "tasks": [{"position": 0, "table": [0, 7, 1]}]}))
    out = tmp_path / "r.json"
    code = main(["verify", "--tasks-file", str(bad), "--json", str(out), "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a map on the vocabulary" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".r.json*"))
