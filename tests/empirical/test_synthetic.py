"""Invariants of the character-level task data (empirical/synthetic.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical import synthetic as S


def _examples(fam, tokens):
    """[B, lead + m*E] sequences -> [B, m, E] examples (dropping the leading token, if any)."""
    return tokens[:, fam.lead :].reshape(tokens.shape[0], -1, fam.example_len)


def test_vocabulary_round_trip():
    text = "abcdefgh>c\n7>0\n"
    assert S.decode(S.encode(text)) == text
    assert S.VOCAB_SIZE == len(set(S.VOCAB))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        S.encode("A")


def test_examples_render_in_the_papers_format():
    rng = np.random.default_rng(0)
    copy = S.training_batch(S.FAMILIES["copy"], rng, 1, 3)
    text = S.decode(copy["tokens"][0])
    lines = text.split("\n")
    assert text.startswith("\n") and text.endswith("\n")
    for line in lines[1:-1]:
        assert len(line) == 10 and line[8] == ">" and line[:8].isalpha() and len(set(line[:8])) == 8
        assert line[9] == line[int(copy["task"][0])]
    add = S.training_batch(S.FAMILIES["add"], rng, 1, 5)
    for line in S.decode(add["tokens"][0]).split("\n")[1:-1]:
        x, y = line.split(">")
        assert (int(x) + int(add["task"][0])) % 10 == int(y)


@settings(max_examples=25, deadline=None)
@given(family=st.sampled_from(sorted(S.FAMILIES)), seed=st.integers(0, 2**31 - 1),
       batch=st.integers(1, 6), n=st.integers(1, 12))
def test_training_batch_invariants(family, seed, batch, n):
    fam = S.FAMILIES[family]
    b = S.training_batch(fam, np.random.default_rng(seed), batch, n)
    tokens, mask, h = b["tokens"], b["mask"], b["task"]
    assert tokens.shape == mask.shape == (batch, S.sequence_length(fam, n))
    assert tokens.dtype == np.int32 and np.all((0 <= tokens) & (tokens < fam.vocab_size))
    if fam.bos is not None:
        assert np.all(tokens[:, 0] == fam.bos)
    ex = _examples(fam, tokens)
    x, y = ex[..., : fam.input_len], ex[..., fam.answer_offset]
    if fam.sep is not None:
        assert np.all(ex[..., fam.input_len] == fam.sep)
    if fam.end is not None:
        assert np.all(ex[..., -1] == fam.end)
    # One task per sequence: every example's answer is that task's answer.
    assert np.all(np.isin(h, fam.params))
    np.testing.assert_array_equal(y, fam.answers(x, h[:, None]))
    if family == "copy":
        letters = x - S.LETTER_A
        assert np.all((0 <= letters) & (letters < 26))
        assert all(len(set(row)) == 8 for row in letters.reshape(-1, 8))
    elif family == "add":
        assert np.all((S.DIGIT0 <= x) & (x < S.DIGIT0 + 10))
    # The loss mask covers exactly the answers and the terminators after them.
    covered = _examples(fam, mask)
    expected = np.zeros(fam.example_len)
    expected[fam.answer_offset] = 1
    if fam.end is not None:
        expected[fam.answer_offset + 1] = 1
    assert np.all(covered == expected) and mask[:, : fam.lead].sum() == 0
    assert np.all(_examples(fam, b["answer_mask"]).sum(-1) == 1)
    # answer_positions: where in the targets (tokens[:, 1:]) each example's answer sits.
    where = S.answer_positions(fam, n)
    np.testing.assert_array_equal(tokens[:, 1:][:, where], y)


def test_one_task_per_sequence_is_not_unique_across_sequences():
    # Tasks are drawn per sequence: a big batch sees every task of the family.
    for fam in S.FAMILIES.values():
        h = S.training_batch(fam, np.random.default_rng(1), 400, 2)["task"]
        assert set(h.tolist()) == set(fam.params)


def test_same_seed_same_data_different_seed_different_data():
    fam = S.FAMILIES["copy"]
    a = S.training_batch(fam, np.random.default_rng([3, 0, 7]), 4, 5)["tokens"]
    b = S.training_batch(fam, np.random.default_rng([3, 0, 7]), 4, 5)["tokens"]
    c = S.training_batch(fam, np.random.default_rng([3, 0, 8]), 4, 5)["tokens"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generator_accepts_jax_keys():
    import jax

    g1, g2 = S.generator(jax.random.key(5)), S.generator(jax.random.key(5))
    assert g1.integers(1 << 30) == g2.integers(1 << 30)
    assert S.generator(7).integers(1 << 30) == np.random.default_rng(7).integers(1 << 30)


@pytest.mark.parametrize("family,tasks", [("copy", [2, 6]), ("add", [1, 3]), ("lookup", [0, 1]), ("lookup", [2, 0])])
def test_mixed_prompts_layout_and_answers(family, tasks):
    fam = S.FAMILIES[family]
    n, m = 64, 20
    p = S.mixed_prompts(fam, np.random.default_rng(0), n, m, tasks, [0.3, 0.7])
    tokens = p["tokens"]
    assert tokens.shape == (n, S.prompt_length(fam, m))
    assert tokens.shape[1] == fam.lead + m * fam.example_len + fam.input_len + (fam.sep is not None)
    if fam.sep is not None:
        assert np.all(tokens[:, -1] == fam.sep)
    ex = tokens[:, fam.lead : fam.lead + m * fam.example_len].reshape(n, m, fam.example_len)
    x, y = ex[..., : fam.input_len], ex[..., fam.answer_offset]
    hs = np.asarray(tasks)[p["example_task"]]
    np.testing.assert_array_equal(y, fam.answers(x, hs))
    q_end = tokens.shape[1] - (fam.sep is not None)
    np.testing.assert_array_equal(p["query"], tokens[:, q_end - fam.input_len : q_end])
    for k, h in enumerate(tasks):
        np.testing.assert_array_equal(p["answers"][:, k], fam.answers(p["query"], np.full(n, h)))
    # Distinct tasks give distinct answers on every query (unambiguous targets; the lookup
    # tasks copy x0 and copy x2 agree when x0 == x2, so such queries are redrawn).
    assert np.all(p["answers"][:, 0] != p["answers"][:, 1])


def test_lookup_prompts_are_the_constructions_prompts():
    """A lookup prompt is laid out exactly as construction.sample_prompts lays one out, and its
    labels, weights and answers are the construction reference's."""
    from construction import Layout, default_task_set, sample_prompts, task_outputs, task_weights

    ts = default_task_set()
    fam = S.lookup_family(ts)
    m = 12
    p = S.mixed_prompts(fam, np.random.default_rng(3), 50, m, [0, 1, 2], [0.5, 0.3, 0.2])
    assert p["tokens"].shape[1] == Layout(ts.example_len, m).length
    ref = sample_prompts(0, ts.tasks, [0.5, 0.3, 0.2], n_examples=m, batch=2, example_len=ts.example_len)
    assert ref.tokens.shape[1] == p["tokens"].shape[1]
    np.testing.assert_array_equal(task_outputs(p["tokens"], ts.tasks, ts.example_len), p["answers"])
    # Every example fits the task that generated it (others may fit too, by chance).
    fits = task_weights(p["tokens"], ts.tasks, ts.example_len)
    own = np.stack([(p["example_task"] == k).mean(1) for k in range(3)], axis=1)
    assert np.all(fits >= own - 1e-12)
    # A task file gives its own family; the default family is the default task set's.
    assert S.family("lookup") == fam and S.family("lookup", ts) == fam
    with pytest.raises(ValueError, match="only the lookup family"):
        S.family("copy", ts)


def test_identical_tasks_cannot_give_distinct_answers():
    from construction import TaskSet, retrieval_task

    twins = TaskSet(vocab_size=4, example_len=3, tasks=(retrieval_task(0, 4, name="a"), retrieval_task(0, 4, name="b")))
    with pytest.raises(ValueError, match="same answer"):
        S.mixed_prompts(S.lookup_family(twins), np.random.default_rng(0), 3, 2, [0, 1], [0.5, 0.5], max_tries=5)


@pytest.mark.parametrize("lam", [0.0, 0.2, 0.5, 1.0])
def test_mixed_prompt_proportions(lam):
    fam = S.FAMILIES["copy"]
    p = S.mixed_prompts(fam, np.random.default_rng(11), 200, 100, [2, 6], [lam, 1 - lam])
    share = (p["example_task"] == 0).mean()
    # 20000 i.i.d. draws: the share is within 5 standard errors of lambda.
    assert abs(share - lam) <= 5 * np.sqrt(lam * (1 - lam) / 20000) + 1e-12
    # i.i.d. per example, not per prompt: prompts' shares vary when 0 < lambda < 1.
    per_prompt = (p["example_task"] == 0).mean(axis=1)
    assert (per_prompt.std() > 0) == (0 < lam < 1)


def test_task_parsing_errors_are_clear():
    fam, hs = S.parse_tasks("copy:2,copy:6")
    assert fam.name == "copy" and hs == [2, 6]
    for bad, match in [
        ("copy:2", "at least two"),
        ("copy:2,add:3", "share one family"),
        ("copy:9,copy:1", "h must be one of"),
        ("mul:1,mul:2", "unknown task family"),
        ("copy:x,copy:1", "family:h"),
        ("copy:1,copy:1", "distinct"),
    ]:
        with pytest.raises(ValueError, match=match):
            S.parse_tasks(bad)
    with pytest.raises(ValueError, match="proportions"):
        S.mixed_prompts(fam, np.random.default_rng(0), 2, 2, [1, 2], [0.5, 0.6])
    lookup, hs = S.parse_tasks("lookup:0,lookup:2")
    assert lookup.name == "lookup" and hs == [0, 2] and lookup.task_label(2) == "lookup:2 (x1 + 3)"
    with pytest.raises(ValueError, match="h must be one of"):
        S.parse_tasks("lookup:0,lookup:3")
    with pytest.raises(ValueError, match="non-empty subset"):
        fam.restrict([9])
