"""The Figure 2 metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.llm.metrics import collapse, kl_divergence, mean_var, other_mass, r_metric


def test_kl_uses_raw_probabilities():
    d = [0.5, 0.5]
    assert kl_divergence(d, d) == pytest.approx(0.0)
    # P sums to 0.5: KL = log 2 (the other mass counts)
    assert kl_divergence(d, [0.25, 0.25]) == pytest.approx(np.log(2))
    assert kl_divergence([1.0, 0.0], [0.5, 0.0]) == pytest.approx(np.log(2))  # D_k = 0 terms vanish
    assert np.isfinite(kl_divergence([0.5, 0.5], [0.0, 1.0]))


def test_the_sweeps_kl_is_the_prompts_shares_against_the_raw_answer_probabilities():
    """The sweep's KL at each lambda is the mean over prompts of KL(D || P), D the prompt's actual
    task shares and P the raw answer probabilities (the mass elsewhere counts), recomputed with
    kl_divergence from the per-prompt values the sweep keeps (P to 5 decimals, at least 0.5/37:
    the recomputation is good to ~1e-3)."""
    from empirical import sweep

    rng = np.random.default_rng(0)

    def probs(tokens):
        return 0.5 * rng.dirichlet(np.ones(37), size=len(tokens)) + 0.5 / 37

    res = sweep.sweep(probs, "add", [1, 4], n_prompts=20, n_examples=5, lambdas=(0.0, 0.3, 1.0), progress=False)
    for pt in res.points:
        pp = pt.per_prompt
        want = np.mean([kl_divergence([s, 1 - s], [a, b]) for s, a, b in zip(pp.share_a, pp.p_a, pp.p_b)])
        assert pt.kl.mean == pytest.approx(want, abs=2e-3), pt.lam
        assert want > 1.0  # P holds ~1/10 of the mass: far from D, so a KL that ignores it differs
        # var / (m (1 - m)) of P(A) and P(B) over the prompts, as saved and as recomputed
        from empirical.within_prompt import variance_ratio

        got = [pt.variance_ratio.a, pt.variance_ratio.b]
        assert got == pytest.approx(variance_ratio(np.stack([pp.p_a, pp.p_b], axis=1)), rel=1e-3)
        assert sweep.variance_ratios(res)[pt.lam] == pt.variance_ratio


def test_other_mass():
    assert other_mass([0.2, 0.3]) == pytest.approx(0.5)


def test_r_metric():
    lp = np.log
    answers = ["a", "b", "c"]
    # continuations: x > a > b > y > c: the 3rd largest is b -> a, b count
    cont = {"x": lp(0.3), "a": lp(0.99), "y": lp(0.05)}
    r, thr = r_metric([lp(0.2), lp(0.1), lp(0.01)], cont, answers)
    assert r == 2 and np.exp(thr) == pytest.approx(0.1)  # the answers' exact scores win over the beam's
    r, _ = r_metric([lp(0.3), lp(0.3), lp(0.3)], {}, answers)
    assert r == 3
    r, _ = r_metric([lp(0.01), lp(0.01), lp(0.01)], {"p": lp(0.5), "q": lp(0.4), "s": lp(0.3)}, answers)
    assert r == 0


def test_collapse():
    # a = [5, 6] (p 0.5 then 0.8), b = [5, 7] (0.5 then 0.1), c = [9] (0.2)
    ids = [(5, 6), (5, 7), (9,)]
    lps = [np.log([0.5, 0.8]), np.log([0.5, 0.1]), np.log([0.2])]
    c = collapse(ids, lps)
    np.testing.assert_allclose(c["first"], [0.5, 0.5, 0.2])
    np.testing.assert_allclose(c["rest"], [0.8, 0.1, 1.0])
    np.testing.assert_allclose(c["matrix"], [[0.8, 0.1, 0], [0.8, 0.1, 0], [0, 0, 1.0]])
    assert list(c["multi"]) == [True, True, False]


def test_mean_var():
    out = mean_var([[1.0, 2.0], [3.0, 4.0]])
    assert out == {"mean": [2.0, 3.0], "var": [1.0, 1.0]}


# --------------------------------------------------------------------------- r, both ways

class _Tok:
    """Greedy longest-match tokenizer over a handful of pieces (no special tokens but EOS)."""

    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.eos_id = 0

    def encode(self, text):
        ids, i = [], 0
        while i < len(text):
            best = max((j for j, p in enumerate(self.pieces) if j and p and text.startswith(p, i)),
                       key=lambda j: len(self.pieces[j]))
            ids.append(best)
            i += len(self.pieces[best])
        return ids

    encode_prompt = encode

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids if i)

    def token_texts(self):
        return list(self.pieces)


class HandSetModel:
    """A language model whose next-token distribution after the prompt is set by hand: ``table``
    maps the text generated so far (as a tuple of pieces) to ``{piece: probability}``; the
    rest of the mass goes equally to four filler pieces (so a context not in the table
    continues with fillers, never with a newline). Implements what the probe calls."""

    FILLERS = ("q", "r", "s", "t")

    def __init__(self, pieces, table):
        self.tokenizer = _Tok(["<eos>", "P", "\n", *self.FILLERS, *pieces])
        self.table = {tuple(k): v for k, v in table.items()}
        self.n = len(self.tokenizer.pieces)

    def _logprobs(self, ctx_ids):
        ctx = tuple(self.tokenizer.pieces[i] for i in ctx_ids)
        p = np.zeros(self.n)
        for piece, v in self.table.get(ctx, {}).items():
            p[self.tokenizer.pieces.index(piece)] = v
        rest = 1.0 - p.sum()
        assert rest > -1e-12
        for f in self.FILLERS:
            p[self.tokenizer.pieces.index(f)] += rest / len(self.FILLERS)
        return np.log(np.maximum(p, 1e-300))

    def token_texts(self):
        return self.tokenizer.token_texts()

    def prefix(self, token_lists):
        return np.stack([self._logprobs(()) for _ in token_lists]), [list(t) for t in token_lists]

    def next_logprobs(self, cache, rows, token_lists):
        return np.stack([self._logprobs(tuple(t)) for t in token_lists])

    def continuation_logprobs(self, cache, last_logits, rows, token_lists):
        out = []
        for r, toks in zip(rows, token_lists):
            done = cache[r][1:]  # tokens after the one-token prompt "P"
            out.append(np.array([self._logprobs(tuple(done) + tuple(toks[:j]))[t] for j, t in enumerate(toks)]))
        return out

    def score_many(self, prompts, answers, *, prefix=None):
        from empirical.llm.scoring import score_prompts

        return score_prompts(self, prompts, answers)

    def continuations(self, prompt, k, **kw):
        from empirical.llm.scoring import enumerate_continuations

        return enumerate_continuations(self, prompt, k, **kw)


def _probe(table, pieces, answers, **kw):
    from types import SimpleNamespace

    from empirical.llm.probe import probe_prompt

    model = HandSetModel(pieces, table)
    prompt = SimpleNamespace(text="P", query="q", answers=tuple(answers),
                             proportions=tuple([1 / len(answers)] * len(answers)))
    return probe_prompt(model, prompt, **kw)


def test_r_leaves_the_newline_out_and_r_complete_keeps_it():
    """"a" (0.4, newline 0.5) against "x" (0.35, newline 0.9): without the newline "a" is the most
    probable completion (r = 1); with it, "x\\n" (0.315) beats "a\\n" (0.2) (r_complete = 0)."""
    row = _probe({(): {"a": 0.4, "x": 0.35}, ("a",): {"\n": 0.5}, ("x",): {"\n": 0.9}}, ["a", "x"], ["a"])
    assert (row.r, row.r_complete) == (1, 0)
    assert row.r_threshold == pytest.approx(0.4) and row.r_complete_threshold == pytest.approx(0.315)
    assert row.paper_completions[0] == ("a", pytest.approx(0.4))


def test_r_counts_a_completion_only_where_the_newline_is_the_most_likely_token():
    """After "x" (0.6) the newline has 0.45 but "y" 0.5: not complete for r (its pool is just
    "a", r = 1); r_complete closes "x" with any newline ("x\\n" 0.27 beats "a\\n" 0.24: 0)."""
    table = {(): {"a": 0.3, "x": 0.6}, ("a",): {"\n": 0.8}, ("x",): {"\n": 0.45, "y": 0.5}}
    row = _probe(table, ["a", "x", "y"], ["a"])
    assert (row.r, row.r_complete) == (1, 0)
    assert [t for t, _ in row.paper_completions] == ["a"]
    assert row.top_continuations[0][0] == "x"


def test_r_pools_only_the_completions_its_search_reaches():
    """Answers "a" (0.15) and "bc" (0.35 x 0.95): a search of 2 tokens cannot complete "bc", so
    r's pool is {x 0.4, a 0.15}, its threshold 0.15 and both answers count (r = 2; "bc" by its
    scored probability, 0.33). r_complete adds the answers to its pool, so "bc" raises the
    threshold above "a" (r_complete = 1)."""
    table = {(): {"x": 0.4, "b": 0.35, "a": 0.15}, ("a",): {"\n": 0.9}, ("x",): {"\n": 0.9},
             ("b",): {"c": 0.95}, ("b", "c"): {"\n": 0.9}}
    row = _probe(table, ["a", "b", "c", "x"], ["a", "bc"], max_tokens=2)
    assert row.r_reached == (True, False)
    assert row.r_probs[1] == pytest.approx(0.35 * 0.95)
    assert (row.r, row.r_complete) == (2, 1)


def test_r_sums_the_tokenisations_of_one_text():
    """"ab" as one token (0.2) and as "a" + "b" (0.25 x 0.6): r sums them (0.35, above "x" 0.3
    and "y" 0.22: r = 2 of answers "ab", "x"); r_complete keeps the more probable one (0.2
    x 0.9, below "y\\n" 0.209: r_complete = 1)."""
    table = {(): {"ab": 0.2, "a": 0.25, "x": 0.3, "y": 0.22}, ("ab",): {"\n": 0.9}, ("a",): {"b": 0.6},
             ("a", "b"): {"\n": 0.9}, ("x",): {"\n": 0.9}, ("y",): {"\n": 0.95}}
    row = _probe(table, ["a", "b", "ab", "x", "y"], ["ab", "x"])
    assert dict(row.paper_completions)["ab"] == pytest.approx(0.2 + 0.25 * 0.6)
    assert (row.r, row.r_complete) == (2, 1)


def test_r_paper_by_hand():
    from empirical.llm.metrics import r_paper

    # pool x 0.5 > a 0.2 > z 0.1, K = 2: threshold 0.2; "b" not reached, scored 0.3: counts
    r, thr, probs = r_paper([0.19, 0.3], {"x": 0.5, "a": 0.2, "z": 0.1}, ["a", "b"])
    assert (r, thr, probs) == (2, 0.2, [0.2, 0.3])  # "a" takes the search's (summed) value
    # the authors' tolerance: 1e-5 below the threshold still counts
    assert r_paper([0.2 - 5e-6], {"x": 0.2}, ["a"])[0] == 1
    assert r_paper([0.2 - 5e-5], {"x": 0.2}, ["a"])[0] == 0
    # fewer completions than tasks: the missing ones count as 0, so every answer counts
    assert r_paper([0.0, 0.0], {"x": 0.9}, ["a", "b"])[:2] == (2, 0.0)
    with pytest.raises(ValueError, match="one probability per answer"):
        r_paper([0.1], {}, ["a", "b"])


def test_variance_ratio():
    from empirical.within_prompt import variance_ratio

    rng = np.random.default_rng(0)
    chooser = (rng.random(1000) < 0.3).astype(float)
    assert variance_ratio(chooser) == [pytest.approx(1.0)]
    mixer = 0.3 + 0.01 * rng.standard_normal(1000)
    assert variance_ratio(mixer)[0] < 0.001
    both = variance_ratio(np.stack([chooser, mixer], axis=1))
    assert both[0] == pytest.approx(1.0) and both[1] < 0.001
    assert variance_ratio(np.zeros(5)) == [None]  # m = 0: undefined
    with pytest.raises(ValueError):
        variance_ratio(np.zeros((2, 2, 2)))
