"""Decoding several answers of one prompt (``empirical.llm.decode``): each method against a
reference computed by full forward passes on tiny random models, the shared cache, the
maximum-length flag, bad input, and ``superpose decode`` end to end.

Tolerance: log-probabilities from the streams' grown caches equal full forward passes within
1e-4 (float32, highest matmul precision), as the package's other cache tests."""

from __future__ import annotations

import itertools
import json
import os

import jax
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from empirical.cli import main  # noqa: E402
from empirical.llm import load_model  # noqa: E402
from empirical.llm.config import tiny  # noqa: E402
from empirical.llm.decode import METHODS, Streams, decode, decode_ids, mixed_embedding  # noqa: E402
from empirical.llm.decode_study import DecodeStudyResult  # noqa: E402
from empirical.llm.loading import model_from_params  # noqa: E402
from tests.tiny_llm import random_params, tiny_config, write_tiny_gguf  # noqa: E402

ATOL = 1e-4
PROMPT = "12@34=12\n56@78=78\n40@13="


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """A tiny random model with the tiny BPE tokenizer (270 tokens), context 96."""
    path = tmp_path_factory.mktemp("dec") / "tiny.gguf"
    return load_model(write_tiny_gguf(path, tiny_config(n_layers=2, max_len=96), seed=5))


def _five(family: str):
    """A tiny random model over a 5-token vocabulary (token 0 ends an answer)."""
    extra = dict(sliding_window=4, local_layers=(True, False), tie_embeddings=True) if family == "gemma3" else {}
    cfg = tiny(family=family, vocab_size=5, n_layers=2, max_len=64, **extra)
    return model_from_params(cfg, random_params(cfg, seed=7, std=0.5))


@pytest.fixture(scope="module")
def five():
    return _five("llama")


@pytest.fixture(scope="module")
def five_gemma():
    """Gemma 3's decoder: scaled embedding, a local layer with a 4-token window."""
    return _five("gemma3")


def _ref_batch(model, seqs, width: int = 24, rows: int = 32) -> list[np.ndarray]:
    """For each sequence, ``lp[j] = log p(. | seq[:j+1])`` by full forward passes: every sequence
    right-padded to ``width`` in batches of ``rows`` (causal, so padding changes nothing before
    it; one compilation serves every call)."""
    out = []
    for i in range(0, len(seqs), rows):
        chunk = seqs[i:i + rows]
        toks = np.zeros((rows, width), np.int32)
        for r, s in enumerate(chunk):
            assert len(s) <= width
            toks[r, :len(s)] = s
        with jax.default_matmul_precision("highest"):
            logits = np.asarray(model.logits(toks), np.float64)
        m = logits.max(-1, keepdims=True)
        lp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
        out += [lp[r, :len(s)] for r, s in enumerate(chunk)]
    return out


def _full_logprobs(model, ids, width: int = 24) -> np.ndarray:
    return _ref_batch(model, [list(ids)], width)[0]


def _seq_logprob(model, prompt, seq, width: int = 24) -> float:
    lp = _full_logprobs(model, list(prompt) + list(seq), width)
    return float(sum(lp[len(prompt) - 1 + j, t] for j, t in enumerate(seq)))


PROMPT_IDS = [1, 3, 2, 4, 4, 1, 2, 3, 1]


def test_branch_k1_equals_greedy(five):
    g = decode_ids(five, PROMPT_IDS, "greedy", 1, stop_ids=[0], max_tokens=6)
    b = decode_ids(five, PROMPT_IDS, "branch", 1, stop_ids=[0], max_tokens=6)
    assert g["outputs"] == b["outputs"] and g["forward_tokens"] == b["forward_tokens"]
    # greedy is the argmax chain of full forward passes
    seq, lp, complete = g["outputs"][0]
    ref = _full_logprobs(five, list(PROMPT_IDS) + list(seq))
    n = len(PROMPT_IDS)
    assert list(seq) == [int(np.argmax(ref[n - 1 + j])) for j in range(len(seq))]
    assert complete == (seq[-1] == 0)
    assert abs(lp - _seq_logprob(five, PROMPT_IDS, seq)) < ATOL


@pytest.mark.parametrize("family", ["llama", pytest.param("gemma3", marks=pytest.mark.slow)])
def test_branch_streams_equal_separate_full_passes(family, request):
    """Branches share the prompt's cache in one batch: each stream's per-step log-probabilities
    equal a full forward pass over prompt + that stream (and its own separate greedy run)."""
    five = request.getfixturevalue("five" if family == "llama" else "five_gemma")
    log: list = []
    res = decode_ids(five, PROMPT_IDS, "branch", 4, stop_ids=[0], max_tokens=5, _log=log)
    firsts = np.argsort(-_full_logprobs(five, PROMPT_IDS)[-1], kind="stable")[:4]
    assert [s[0] for s, _, _ in res["outputs"]] == [int(t) for t in firsts]
    # stream i at step j sits in row (its rank among the streams still open at that step)
    open_at = [[i for i, (s, _, _) in enumerate(res["outputs"]) if len(s) > j + 1] for j in range(len(log))]
    refs = _ref_batch(five, [list(PROMPT_IDS) + list(s) for s, _, _ in res["outputs"]])
    n = len(PROMPT_IDS)
    for j, step in enumerate(log):
        for r, i in enumerate(open_at[j]):
            np.testing.assert_allclose(step[r], refs[i][n + j], atol=ATOL)
    for seq, lp, _ in res["outputs"]:
        assert abs(lp - _seq_logprob(five, PROMPT_IDS, seq)) < ATOL
    # generated-token evaluations: one per token after the first, per stream
    assert res["forward_tokens"] == len(PROMPT_IDS) + sum(len(s) - 1 for s, _, _ in res["outputs"])


def _brute_force(model, prompt, max_tokens, stop=0):
    """Every sequence of at most ``max_tokens`` tokens (exact log-probabilities by full passes):
    complete ones (ending in ``stop``, none before) and the unfinished ones of full length."""
    seqs = []
    for n in range(1, max_tokens + 1):
        for tail in itertools.product(range(1, model.config.vocab_size), repeat=n - 1):
            seqs.append(tuple(tail) + (stop,))
    lps = _ref_batch(model, [list(prompt) + list(s) for s in seqs])
    p = len(prompt)
    return {s: float(sum(lp[p - 1 + j, t] for j, t in enumerate(s))) for s, lp in zip(seqs, lps)}


def test_beam_equals_brute_force_enumeration(five):
    """Width 16 covers every open prefix of at most 2 tokens over 4 non-stop tokens, so beam
    search of 3 tokens must return exactly the 16 most probable complete sequences."""
    exact = _brute_force(five, PROMPT_IDS, 3)
    res = decode_ids(five, PROMPT_IDS, "beam", 16, stop_ids=[0], max_tokens=3)
    got = sorted(((s, lp) for s, lp, c in res["outputs"] if c), key=lambda x: -x[1])[:16]
    want = sorted(exact.items(), key=lambda x: -x[1])[:16]
    assert [s for s, _ in got] == [s for s, _ in want]
    np.testing.assert_allclose([lp for _, lp in got], [lp for _, lp in want], atol=ATOL)


def _reference_beam(model, prompt, k, max_tokens, stop=0):
    """Beam search by full forward passes (no cache), the definition written out plainly."""
    done, open_h = [], [((), 0.0)]
    for depth in range(max_tokens):
        kth = sorted((lp for _, lp in done), reverse=True)[k - 1] if len(done) >= k else -np.inf
        open_h = [h for h in open_h if h[1] > kth]
        if not open_h:
            break
        cand = []
        rows = _ref_batch(model, [list(prompt) + list(seq) for seq, _ in open_h])
        for (seq, s), lp in zip(open_h, rows):
            row = lp[-1]
            for t in np.argsort(-row, kind="stable")[:k]:
                cand.append((seq + (int(t),), s + float(row[t])))
        cand.sort(key=lambda x: -x[1])
        open_h = []
        for seq, s in cand:
            if seq[-1] == stop:
                done.append((seq, s))
            elif len(open_h) < k:
                open_h.append((seq, s))
    return sorted(done, key=lambda x: -x[1])


@pytest.mark.parametrize("k", [2, 3])
def test_beam_equals_reference_beam(five, k):
    res = decode_ids(five, PROMPT_IDS, "beam", k, stop_ids=[0], max_tokens=4)
    got = sorted(((s, lp) for s, lp, c in res["outputs"] if c), key=lambda x: -x[1])
    want = _reference_beam(five, PROMPT_IDS, k, 4)
    assert [s for s, _ in got] == [s for s, _ in want]
    np.testing.assert_allclose([lp for _, lp in got], [lp for _, lp in want], atol=ATOL)


@pytest.mark.parametrize("family", ["llama", pytest.param("gemma3", marks=pytest.mark.slow)])
def test_superposed_input_with_one_candidate_is_greedy(family, request):
    """The mixed-embedding step with one token at weight 1 gives the token step's log-probabilities
    bit for bit, and superposed decoding with k = 1 is greedy decoding."""
    five = request.getfixturevalue("five" if family == "llama" else "five_gemma")
    a = Streams(five, PROMPT_IDS, 4, rows=2)
    b = Streams(five, PROMPT_IDS, 4, rows=2)
    for toks in ([3, 1], [2, 4], [1, 1]):
        x = a.step([0, 1], tokens=toks)
        y = b.step([0, 1], mix=(np.array(toks)[:, None], np.ones((2, 1), np.float32)))
        np.testing.assert_array_equal(x, y)
    g = decode_ids(five, PROMPT_IDS, "greedy", 1, stop_ids=[0], max_tokens=6)
    s = decode_ids(five, PROMPT_IDS, "superposed", 1, stop_ids=[0], max_tokens=6)
    assert [o[0] for o in g["outputs"]] == [o[0] for o in s["outputs"]]
    assert abs(g["outputs"][0][1] - s["outputs"][0][1]) < ATOL


def test_superposed_mixture_is_the_weighted_embedding(five):
    """Two tokens at weights .3 / .7: the step equals a forward pass whose embedding at that
    position is .3 e(a) + .7 e(b) (an embed edit of a full pass), and the drafts' reported
    probabilities are their exact teacher-forced ones."""
    ids, w = np.array([[2, 3]]), np.array([[0.3, 0.7]], np.float32)
    st = Streams(five, PROMPT_IDS, 3, rows=1)
    got = st.step([0], mix=(ids, w))[0]
    vec = np.asarray(mixed_embedding(five, five.params, jax.numpy.asarray(ids), jax.numpy.asarray(w)))[0]
    n = len(PROMPT_IDS)

    def edit(x):
        return x.at[:, n].set(vec)

    with jax.default_matmul_precision("highest"):
        logits = np.asarray(five.logits(np.array(PROMPT_IDS + [0]), edits={"embed": edit}), np.float64)[n]
    ref = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    np.testing.assert_allclose(got, ref, atol=ATOL)
    res = decode_ids(five, PROMPT_IDS, "superposed", 3, stop_ids=[0], max_tokens=4)
    assert 1 <= len(res["outputs"]) <= 3
    for seq, lp, _ in res["outputs"]:
        assert abs(lp - _seq_logprob(five, PROMPT_IDS, seq)) < ATOL


def test_sampling_is_seeded_and_exact(five):
    a = decode_ids(five, PROMPT_IDS, "sample", 3, stop_ids=[0], max_tokens=5, seed=1)
    b = decode_ids(five, PROMPT_IDS, "sample", 3, stop_ids=[0], max_tokens=5, seed=1)
    assert a["outputs"] == b["outputs"] and len(a["outputs"]) == 3
    for seq, lp, _ in a["outputs"]:
        assert abs(lp - _seq_logprob(five, PROMPT_IDS, seq)) < ATOL


@pytest.mark.parametrize("method", METHODS)
def test_stops_at_max_tokens_with_flag(text_model, method):
    """An end string the model never writes: every stream stops at max_tokens, unfinished."""
    k = 1 if method == "greedy" else 2
    r = decode(text_model, PROMPT, method, k, max_tokens=3, end="\u2603")
    assert r.truncated and r.answers == () and len(r.probs) == 0
    assert r.outputs and all(not o.complete and len(o.token_ids) == 3 for o in r.outputs)


def test_decode_text_answers(text_model):
    """Complete answers end at the newline; their probabilities include the ending token and
    equal the teacher-forced score of answer + newline when the tokenisation agrees."""
    r = decode(text_model, PROMPT, "beam", 3, max_tokens=8)
    assert r.prompt_tokens == len(text_model.tokenizer.encode_prompt(PROMPT))
    assert r.forward_tokens > r.prompt_tokens and r.seconds > 0
    assert list(r.probs) == sorted(r.probs, reverse=True) and len(r.answers) <= 3
    for o in r.outputs:
        if o.complete:
            assert "\n" in text_model.tokenizer.decode(list(o.token_ids[-1:])) and "\n" not in o.text
            full = text_model.tokenizer.encode_prompt(PROMPT) + list(o.token_ids)
            lp = _full_logprobs(text_model, full, width=64)
            n = len(full) - len(o.token_ids)
            assert abs(o.logprob - sum(lp[n - 1 + j, t] for j, t in enumerate(o.token_ids))) < ATOL


@pytest.mark.parametrize("kwargs, needle", [
    (dict(method="beam", k=0), "k must be"),
    (dict(method="branch", k=-2), "k must be"),
    (dict(method="nope", k=1), "unknown decoding method"),
    (dict(method="greedy", k=2), "greedy"),
    (dict(method="beam", k=2, prompt=""), "empty"),
    (dict(method="beam", k=2, prompt="12@34=12\n" * 20), "exceeds the model's context"),
    (dict(method="beam", k=2, max_tokens=0), "max_tokens"),
])
def test_bad_input_is_one_value_error(text_model, kwargs, needle):
    kwargs = {"prompt": PROMPT, **kwargs}
    with pytest.raises(ValueError, match=needle):
        decode(text_model, kwargs.pop("prompt"), kwargs.pop("method"), kwargs.pop("k"), **kwargs)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("cli") / "tiny.gguf", tiny_config(n_layers=2, max_len=96), seed=5)


@pytest.fixture(scope="module")
def long_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("cli") / "long.gguf", tiny_config(n_layers=1), seed=5)


def test_cli_decode_prompt_json(tiny_path, tmp_path, capsys):
    js = tmp_path / "d.json"
    rc = main(["decode", "--model", str(tiny_path), "--prompt", PROMPT, "--method", "beam", "--k", "2",
               "--max-tokens", "6", "--json", str(js)])
    assert rc == 0
    doc = json.loads(js.read_text())
    assert {"config", "package_version", "device", "date", "rows"} <= set(doc)
    assert doc["config"]["method"] == "beam" and doc["config"]["model"] == "tiny.gguf"
    assert str(tmp_path) not in js.read_text() and str(tiny_path.parent) not in js.read_text()
    assert "forward tokens" in capsys.readouterr().out


def test_score_outputs_and_summary():
    """Recall counts tasks found among the outputs (white space ignored), precision the distinct
    outputs that are some task's answer; the summary averages them per method and k."""
    from empirical.llm.decode_study import Entry, PromptCollapse, StudyRow, TaskCollapse, score_outputs, summarize

    s = score_outputs(["Paris", "Europe", "FRANCE"], [" Paris", "Paris", "France", "FRANCE"])
    assert s["recall"] == pytest.approx(2 / 3) and not s["all"] and s["precision"] == pytest.approx(2 / 3)
    assert s["tasks_recalled"] == [True, False, True]
    assert score_outputs(["a"], [])["precision"] is None

    def entry(k, outs, gold):
        s = score_outputs(gold, outs)
        return Entry(k=k, outputs=tuple(outs), probs=(), forward_tokens=10 + k, generated_tokens=k, seconds=1.0 * k,
                     seconds_derived=False, truncated=False, recall=s["recall"], all=s["all"],
                     tasks_recalled=tuple(s["tasks_recalled"]), precision=s["precision"])

    gold = ["x", "y"]
    collapse = PromptCollapse(tasks={"0": TaskCollapse(own=.9, mix=.5, mix_uniform=.3, other=.0, first_prob=.5),
                                     "1": TaskCollapse(own=.8, mix=.05, mix_uniform=.2, other=None, first_prob=.4)},
                              mix_weights=(.6, .4), distinct_first_tokens=2)
    rows = [StudyRow(query="q", answers=tuple(gold), prompt_tokens=10, prompt_seconds=0.5, collapse=collapse,
                     methods={m: (entry(1, ["x"], gold),) + (() if m == "greedy" else (entry(2, ["x", o], gold),))
                              for m in METHODS})
            for o in ("y", "z")]
    out = summarize(["t0", "t1"], rows)
    beam = out.methods["beam"]
    assert [e.k for e in beam] == [1, 2] and beam[1].recall == pytest.approx(0.75)
    assert beam[1].all == pytest.approx(0.5) and beam[1].precision == pytest.approx(0.75)
    c = out.collapse
    assert c.pairs == 4 and c.own == pytest.approx(0.85) and c.other == pytest.approx(0.0)
    assert (c.several_alive.own, c.several_alive.mix, c.several_alive.mix_uniform) == (1.0, 0.0, 1.0)
    assert c.per_task["t1"].pairs == 2 and c.per_task["t1"].other is None


@pytest.mark.slow
def test_cli_decode_study(long_path, tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["decode", "--model", str(long_path), "--study", "--family", "at", "--prompts", "2",
            "--examples-per-task", "2", "--max-tokens", "3", "--ceiling-prompts", "1", "--ks", "3",
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    doc = DecodeStudyResult.from_json(out / "long_at.json")
    assert doc.complete and doc.prompts_done == 2 and doc.max_k == 3 and doc.methods == METHODS
    for m in METHODS:
        ks = [e.k for e in doc.summary.methods[m]]
        assert ks == {"greedy": [1], "beam": [1, 3], "superposed": [1, 3]}.get(m, [1, 2, 3])
    assert set(doc.ceiling.accuracy) == {"A", "B", "A+B"}
    assert (out / "recall_cost_long.png").stat().st_size > 1000 and (out / "collapse_superposed.png").is_file()
    assert str(tmp_path) not in (out / "long_at.json").read_text()
    for row in doc.per_prompt:  # the derived k of branch equal the first k streams: recall never falls
        rec = [e.recall for e in row.methods["branch"]]
        assert rec == sorted(rec) and row.methods["branch"][0].outputs == row.methods["greedy"][0].outputs
        assert row.methods["beam"][0].same_as == "greedy"
    assert main(argv) == 0  # complete: reused, its summary recomputed from the rows
    assert DecodeStudyResult.from_json(out / "long_at.json").per_prompt == doc.per_prompt


@pytest.mark.parametrize("argv, needle", [
    (["--k", "0"], "--k"),
    (["--method", "nope"], "--method"),
    (["--prompt", ""], "empty"),
    (["--method", "greedy", "--k", "2"], "greedy"),
    (["--prompt", "12@34=12\n" * 20], "exceeds"),
    (["--family", "nope"], "--family"),
    (["--model", "/no/such/model.gguf"], "no such model"),
    (["--study"], "--json"),
    (["--prompt", "a", "--prompt-file", "b.txt"], "not both"),
])
def test_cli_bad_input(tiny_path, tmp_path, capsys, argv, needle):
    js = tmp_path / "d.json"
    base = ["decode", "--model", str(tiny_path), "--json", str(js), "--out", str(tmp_path / "o")]
    rc = main(base + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not js.exists() and not (tmp_path / "o").exists()


def test_cli_prompt_file_too_long(tiny_path, tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("12@34=12\n" * 20)
    js = tmp_path / "d.json"
    rc = main(["decode", "--model", str(tiny_path), "--prompt-file", str(f), "--json", str(js)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "exceeds" in err[0] and not js.exists()


@pytest.mark.parametrize("case", ["--json under a file", "--out is a file"])
def test_cli_unwritable_output_checked_first(tiny_path, tmp_path, capsys, case):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    flag, value = {"--json under a file": ("--json", f"{blocker}/r.json"), "--out is a file": ("--out", str(blocker))}[case]
    rc = main(["decode", "--model", str(tiny_path), "--prompt", PROMPT, flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"error: {flag} {value}" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] and blocker.read_text() == "x"
