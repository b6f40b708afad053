"""Skewed in-context proportions (the calibration study's prompts), their answer-probability
rows and ``superpose probe --skewed``; the collapse comparison (``probe --collapse``); the
Gemma 3 chunk assembly and the GGUF reader."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from empirical.cli import main
from empirical.llm import load_model
from empirical.llm.families import dirichlet_counts, make_prompts
from tests.tiny_llm import write_tiny_gguf


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf", seed=2)


def test_dirichlet_counts():
    rng = np.random.default_rng(0)
    for k, total in ((3, 60), (4, 80), (4, 4), (2, 7)):
        for _ in range(50):
            c = dirichlet_counts(rng, k, total)
            assert len(c) == k and sum(c) == total and min(c) >= 1
    spread = np.array([dirichlet_counts(rng, 4, 80) for _ in range(400)]) / 80
    assert abs(spread.mean() - 0.25) < 0.02 and spread.std() > 0.1  # flat Dirichlet: wide, centred
    with pytest.raises(ValueError):
        dirichlet_counts(rng, 4, 3)


def test_skewed_prompts():
    equal = make_prompts("letter", 3, seed=5)
    assert equal == make_prompts("letter", 3, seed=5, skewed=False)  # the default is unchanged
    assert all(p.proportions == (0.25,) * 4 for p in equal)
    skewed = make_prompts("country", 20, seed=1, skewed=True)
    assert skewed == make_prompts("country", 20, seed=1, skewed=True)
    for p in skewed:
        n = len(p.example_tasks)
        assert n == 60 and len(p.text.split("\n")) == 61
        assert p.proportions == tuple(p.example_tasks.count(t) / n for t in ("capital", "continent", "upper"))
        assert min(p.proportions) >= 1 / 60
    assert len({p.proportions for p in skewed}) > 15
    small = make_prompts("add", 4, seed=0, skewed=True, total_examples=9)
    assert all(len(p.example_tasks) == 9 for p in small)
    with pytest.raises(ValueError):
        make_prompts("add", 1, total_examples=9)


def test_calibration_rows_and_cli(tiny_path, tmp_path, capsys):
    from empirical.llm.probe import SkewedResult, calibration_rows

    m = load_model(tiny_path)
    rows = calibration_rows(m, "at", 5, seed=2, total_examples=6)
    prompts = make_prompts("at", 5, seed=2, skewed=True, total_examples=6)
    assert [r.query for r in rows] == [p.query for p in prompts]
    for r, p in zip(rows, prompts):
        assert r.proportions == p.proportions and r.answers == p.answers
        np.testing.assert_allclose(r.probs, m.score(p.text, p.answers).probs, rtol=1e-4, atol=1e-9)
    js = tmp_path / "cal.json"
    assert main(["probe", "skewed", "--model", str(tiny_path), "--family", "at", "--prompts", "5", "--seed", "2",
                 "--total-examples", "6", "--json", str(js), "--quiet"]) == 0
    doc = SkewedResult.from_json(js)
    assert doc.family == "at" and doc.model == "tiny" and doc.tasks == ("A", "B", "A+B")
    assert doc.rows == tuple(rows)
    assert "5 skewed prompts" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["skewed", "--family", "all"], "one family"),
    (["run", "--family", "at", "--total-examples", "6"], "--total-examples is for `probe skewed`"),
    (["skewed", "--family", "at", "--total-examples", "2"], "at least the number of tasks"),
])
def test_skewed_bad_input(argv, needle, tiny_path, capsys):
    assert main(["probe", argv[0], "--model", str(tiny_path), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_collapse_comparison_cli(tiny_path, tmp_path, capsys):
    from empirical.llm.probe import CollapseResult

    for name, fam in (("a", "letter"), ("b", "at"), ("c", "letter")):
        assert main(["probe", "run", "--model", str(tiny_path), "--family", fam, "--prompts", "2", "--examples-per-task", "2",
                     "--json", str(tmp_path / f"{name}.json"), "--out", str(tmp_path), "--quiet"]) == 0
    out = tmp_path / "cmp"
    # one model, one file per family: its families side by side under the model's name
    assert main(["probe", "collapse", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)]) == 0
    doc = CollapseResult.from_json(out / "collapse_tiny.json")
    assert doc.command == "probe --collapse" and doc.models == ("tiny",) and list(doc.families) == ["at", "letter"]
    v = doc.families["letter"]["tiny"]
    assert len(v.first_token_prob) == 4 and all(0 <= x <= 1 for x in v.rest_given_first)
    assert (out / "collapse_tiny.png").stat().st_size > 1000
    # the same family twice: told apart by file name
    assert main(["probe", "collapse", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(out)]) == 0
    doc = CollapseResult.from_json(out / "collapse_a_c.json")
    assert doc.models == ("a", "c") and set(doc.families["letter"]) == {"a", "c"}
    assert "letter: a first" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["probe", "collapse", str(tmp_path / "bad.json"), "--out", str(out)]) == 2
    assert main(["probe", "collapse", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a saved probe result" in err[0] and "does not exist" in err[1]


def test_gemma3_chunks_assembled_atomically(tmp_path, monkeypatch):
    from empirical.llm import loading

    parts = []
    for i, payload in enumerate((b"GGUF" + b"a" * 1000, b"b" * 999, b"c" * 5, b"d" * 77)):
        p = tmp_path / "pkgs" / f"p{i}" / f"gemma-3-270m-q4_k_m.gguf.part{i:02d}"
        p.parent.mkdir(parents=True)
        p.write_bytes(payload)
        parts.append(p)
    whole = b"".join(p.read_bytes() for p in parts)
    monkeypatch.setattr(loading, "gemma3_chunks", lambda: list(parts))
    monkeypatch.setattr(loading, "_expected_sha256", lambda: hashlib.sha256(whole).hexdigest())
    cache = tmp_path / "cache"
    path = loading.gemma3_path(cache)
    assert path == cache / "gemma-3-270m-q4_k_m.gguf" and path.read_bytes() == whole
    assert sorted(p.name for p in cache.iterdir()) == [path.name]  # no temporary file left
    mtime = path.stat().st_mtime_ns
    assert loading.gemma3_path(cache) == path and path.stat().st_mtime_ns == mtime  # cached
    path.write_bytes(whole[:-3])  # a damaged cache (wrong size) is rebuilt
    assert loading.gemma3_path(cache).read_bytes() == whole
    monkeypatch.setattr(loading, "_expected_sha256", lambda: "0" * 64)
    path.unlink()
    with pytest.raises(loading.ModelFileError, match="SHA-256"):
        loading.gemma3_path(cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(loading, "gemma3_chunks", lambda: None)
    assert loading.gemma3_path(cache) is None


def test_gguf_reader_matches_gguf_py(tiny_path):
    """Our memory-mapped reader gives what gguf-py's GGUFReader gives (fields and tensors)."""
    from gguf import GGUFReader

    from empirical.llm.weights import GGUFFile

    ours, ref = GGUFFile(tiny_path), GGUFReader(str(tiny_path))
    assert set(ours.fields) == set(ref.fields)
    for key, field in ref.fields.items():
        assert ours.fields[key].contents() == pytest.approx(field.contents()), key
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for a, b in zip(ours.tensors, ref.tensors):
        assert a.tensor_type == b.tensor_type and list(a.shape) == list(b.shape)
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
