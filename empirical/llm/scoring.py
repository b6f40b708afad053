"""Scoring candidate answers after a prompt, and enumerating complete continuations.

Score of an answer ``a`` after prompt ``p`` = product of the teacher-forced probabilities of
the answer's tokens. Tokenisation is joint: ``p + a`` is tokenised as one string and the
scored tokens are those after the longest common token prefix of ``tok(p)`` and
``tok(p + a)``. Usually that prefix is all of ``tok(p)``; when the answer's first characters
merge with the prompt's last token (e.g. a prompt ending in a space and an answer starting
with a letter, in a GPT-2 style tokeniser), the prompt's last token(s) are re-tokenised
together with the answer, the first scored token covers those prompt characters too, and
``merged`` is True for that answer: the score is then P(prompt tail + answer | prompt head),
the probability of the text the model would actually produce.

The batched path computes the common token prefix of all candidates once (KV cache) and all
candidates' remaining tokens in one call; :func:`score_candidates_naive` runs one full
forward pass per answer (the reference way) and agrees with it.

Two searches for the most probable complete continuations feed the two r metrics of
:mod:`empirical.llm.metrics`: :func:`enumerate_continuations` (ours, for ``r_complete``: any
newline-bearing token closes a continuation, whose probability includes that token; one
text keeps its most probable tokenisation) and :func:`enumerate_completions_paper` (the
authors' ``get_top_probs2`` of ``edixiong/task-superposition``, for ``r``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True, kw_only=True)
class CandidateScores:
    """Scores of one prompt's candidate answers.

    ``logprobs[k]``: total log-probability of answer k; ``token_ids[k]`` /
    ``token_logprobs[k]``: its scored tokens and their log-probabilities; ``merged[k]``: the
    answer's first token merged with the prompt's trailing characters (see module doc).
    """

    answers: tuple[str, ...]
    logprobs: np.ndarray
    token_ids: tuple[tuple[int, ...], ...]
    token_logprobs: tuple[np.ndarray, ...]
    merged: np.ndarray

    @property
    def probs(self) -> np.ndarray:
        """Probabilities ``exp(logprobs)``."""
        return np.exp(self.logprobs)


@dataclass(frozen=True, kw_only=True)
class Split:
    """A candidate's joint tokenisation: ``ids = tok(prompt + answer)``, scored from ``start``."""

    ids: tuple[int, ...]
    start: int
    merged: bool


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def split_candidates(tokenizer, prompt: str, answers: Sequence[str]) -> tuple[list[int], list[Split]]:
    """Tokenise the prompt and every ``prompt + answer`` jointly; find where scoring starts."""
    if not answers:
        raise ValueError("no candidate answers")
    p = tokenizer.encode_prompt(prompt)
    splits = []
    for a in answers:
        if not a:
            raise ValueError("empty candidate answer")
        j = tokenizer.encode_prompt(prompt + a)
        b = common_prefix_len(p, j)
        if b == 0:
            raise ValueError(f"prompt {prompt[:30]!r} has no token left to condition on")
        if b == len(j):  # cannot happen for a non-empty answer, kept as a guard
            raise ValueError(f"answer {a!r} produced no token")
        splits.append(Split(ids=tuple(j), start=b, merged=b < len(p)))
    return p, splits


def score_prompts(model, prompts: Sequence[str], answers: Sequence[Sequence[str]], *,
                  prefix=None) -> list[CandidateScores]:
    """Score every prompt's answers: all prefixes in one call, all candidates in another.

    The shared prefix of a prompt is the common token prefix of its candidates' joint
    tokenisations; it is computed once and its keys/values are reused by every candidate.
    ``prefix`` (optional) is ``model.prefix`` of the prompts' full token lists, reused when
    no candidate merges with its prompt.
    """
    if len(prompts) != len(answers):
        raise ValueError("one list of answers per prompt is needed")
    prefixes, rows, conts, meta = [], [], [], []
    whole = True
    for i, (prompt, ans) in enumerate(zip(prompts, answers)):
        p, splits = split_candidates(model.tokenizer, prompt, ans)
        c = min(s.start for s in splits)
        whole = whole and c == len(p)
        prefixes.append(splits[0].ids[:c])
        for s in splits:
            rows.append(i)
            conts.append(s.ids[c:])
            meta.append((s, s.start - c))
    last_logits, cache = prefix if (prefix is not None and whole) else model.prefix(prefixes)
    lps = model.continuation_logprobs(cache, last_logits, rows, conts)
    out, k = [], 0
    for ans in answers:
        ids, tlp, merged = [], [], []
        for _ in ans:
            s, off = meta[k]
            ids.append(tuple(s.ids[s.start:]))
            tlp.append(np.asarray(lps[k][off:], np.float64))
            merged.append(s.merged)
            k += 1
        out.append(CandidateScores(
            answers=tuple(ans), logprobs=np.array([t.sum() for t in tlp]), token_ids=tuple(ids),
            token_logprobs=tuple(tlp), merged=np.array(merged, bool)))
    return out


def score_candidates(model, prompt: str, answers: Sequence[str]) -> CandidateScores:
    """Probabilities of ``answers`` after ``prompt``, batched with the prompt computed once."""
    return score_prompts(model, [prompt], [answers])[0]


def score_candidates_naive(model, prompt: str, answers: Sequence[str]) -> CandidateScores:
    """The reference way: one full forward pass over ``prompt + answer`` per answer."""
    _, splits = split_candidates(model.tokenizer, prompt, answers)
    ids, tlp = [], []
    for s in splits:
        lp = model.full_logprobs(list(s.ids))  # lp[j - 1] = log p(ids[j] | ids[:j])
        ids.append(tuple(s.ids[s.start:]))
        tlp.append(np.asarray(lp[s.start - 1:], np.float64))
    return CandidateScores(answers=tuple(answers), logprobs=np.array([t.sum() for t in tlp]),
                           token_ids=tuple(ids), token_logprobs=tuple(tlp),
                           merged=np.array([s.merged for s in splits], bool))


@dataclass(frozen=True, kw_only=True)
class Continuations:
    """Complete continuations (text before the first newline) and their log-probabilities.

    A continuation's log-probability includes its newline-bearing final token; sorted, best
    first. ``exhausted`` is True when the search stopped because no open hypothesis could
    still beat the k-th best complete one (so the top k are exact up to beam width).
    """

    texts: tuple[str, ...]
    logprobs: np.ndarray
    exhausted: bool


def enumerate_continuations(model, prompt: str, k: int, *, beam: int | None = None,
                            max_tokens: int = 12, newline: str = "\n", prefix=None) -> Continuations:
    """Beam enumeration of complete continuations of ``prompt`` ending in a newline.

    Keeps the ``beam`` (default ``max(2k, 8)``) most probable open hypotheses per step,
    expanding each by its ``beam`` most probable next tokens; a token containing ``newline``
    closes a hypothesis. Stops when no open hypothesis is more probable than the k-th best
    complete continuation (probabilities only decrease), or after ``max_tokens`` tokens.
    Different tokenisations of one text keep the most probable. ``prefix`` (optional) is
    ``model.prefix([tokenizer.encode_prompt(prompt)])``, reused instead of recomputed.
    """
    beam = beam or max(2 * k, 8)
    texts = model.token_texts()
    nl = np.array([newline in t for t in texts])
    eos = model.tokenizer.eos_id
    p = model.tokenizer.encode_prompt(prompt)
    last_logits, cache = prefix if prefix is not None else model.prefix([p])
    done: dict[str, float] = {}
    open_h: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    exhausted = False
    for _ in range(max_tokens):
        if not open_h:
            exhausted = True
            break
        if open_h[0][0] == ():
            row0 = np.asarray(last_logits[0], np.float64)
            nxt = (row0 - row0.max() - np.log(np.exp(row0 - row0.max()).sum()))[None]
        else:
            nxt = model.next_logprobs(cache, [0] * len(open_h), [h for h, _ in open_h])
        cand: list[tuple[tuple[int, ...], float]] = []
        for (h, lp), row in zip(open_h, nxt):
            width = min(beam, row.shape[0])
            top = np.argpartition(-row, width - 1)[:width]
            for t in top:
                t = int(t)
                if eos is not None and t == eos:
                    continue
                total = lp + float(row[t])
                if nl[t]:
                    text = model.tokenizer.decode(list(h) + [t]).split(newline, 1)[0]
                    done[text] = max(done.get(text, -np.inf), total)
                else:
                    cand.append((h + (t,), total))
        cand.sort(key=lambda x: -x[1])
        open_h = cand[:beam]
        kth = sorted(done.values(), reverse=True)[k - 1] if len(done) >= k else -np.inf
        if not open_h or open_h[0][1] < kth:
            exhausted = True
            break
    items = sorted(done.items(), key=lambda x: -x[1])
    return Continuations(texts=tuple(t for t, _ in items),
                         logprobs=np.array([v for _, v in items]), exhausted=exhausted)


@dataclass(frozen=True, kw_only=True)
class PaperCompletions:
    """Completions found by :func:`enumerate_completions_paper`: texts and their probabilities
    (summed over the token paths that reach one text; the newline's probability is *not*
    included), sorted best first; ``steps`` beam steps ran; ``stop`` says why the search
    ended (``"eps"``: the best open hypothesis fell below ``eps``; ``"empty"``: nothing left
    to expand; ``"max_tokens"``)."""

    texts: tuple[str, ...]
    probs: np.ndarray
    steps: int
    stop: str

    def as_dict(self) -> dict[str, float]:
        """``{text: probability}``."""
        return dict(zip(self.texts, (float(p) for p in self.probs)))


def newline_token_id(tokenizer, newline: str = "\n") -> int:
    """The id of the one token that encodes ``newline`` alone (ValueError if it takes several)."""
    ids = tokenizer.encode(newline)
    if len(ids) != 1:
        raise ValueError(f"{newline!r} is not a single token for this tokenizer ({ids})")
    return int(ids[0])


def enumerate_completions_paper(model, prompt: str, *, beam: int = 8, max_tokens: int = 12,
                                eps: float = 0.01, stop_prob: float = 0.5, newline: str = "\n",
                                prefix=None) -> PaperCompletions:
    """The authors' search for complete continuations (``get_top_probs2`` in
    ``edixiong/task-superposition/run_experiments.py``), on token paths with a KV cache.

    From the empty continuation, each step reads every open hypothesis's next-token
    distribution. A hypothesis is *complete* when its most probable next token is the newline
    token itself (:func:`newline_token_id`); its text then gains the hypothesis's probability
    (without the newline's), summed over every path that reaches the same text (so different
    tokenisations of one string add up). A complete hypothesis whose newline has probability
    above ``stop_prob`` is not expanded; every other one is expanded by its ``beam`` most
    probable tokens (the newline among them, as in the original), and the ``beam`` most
    probable of all expansions stay open. The search stops when the best open hypothesis is
    below ``eps``, when none is left, or after ``max_tokens`` steps. Differences from the
    original: token paths continue from the cached prompt instead of re-tokenising
    ``prompt + text`` at each step; the end-of-sequence token is never expanded; and the
    original's test for not expanding a complete hypothesis reads ``probs[0]`` of the
    *unsorted* distribution (the probability of token id 0, almost never above 0.5, so it
    expands nearly every complete hypothesis too), where this function tests the newline's
    probability, as the original's comment intends.
    """
    if beam < 1 or max_tokens < 1:
        raise ValueError(f"beam and max_tokens must be positive, got {beam}, {max_tokens}")
    nl = newline_token_id(model.tokenizer, newline)
    eos = model.tokenizer.eos_id
    last_logits, cache = prefix if prefix is not None else model.prefix([model.tokenizer.encode_prompt(prompt)])
    done: dict[str, float] = {}
    open_h: list[tuple[tuple[int, ...], float]] = [((), 1.0)]
    steps, stop = 0, "max_tokens"
    for _ in range(max_tokens):
        if open_h[0][0] == ():
            row0 = np.asarray(last_logits[0], np.float64)
            nxt = (row0 - row0.max() - np.log(np.exp(row0 - row0.max()).sum()))[None]
        else:
            nxt = model.next_logprobs(cache, [0] * len(open_h), [h for h, _ in open_h])
        steps += 1
        cand: list[tuple[tuple[int, ...], float]] = []
        for (h, pr), row in zip(open_h, nxt):
            row = np.asarray(row, np.float64)
            width = min(beam, row.shape[0])
            top = np.argpartition(-row, width - 1)[:width]
            top = top[np.argsort(-row[top], kind="stable")]
            expand = True
            if int(top[0]) == nl:
                text = model.tokenizer.decode(list(h))
                done[text] = done.get(text, 0.0) + pr
                expand = float(np.exp(row[nl])) <= stop_prob
            if expand:
                for t in top:
                    t = int(t)
                    if eos is not None and t == eos:
                        continue
                    cand.append((h + (t,), pr * float(np.exp(row[t]))))
        if not cand:
            stop = "empty"
            break
        cand.sort(key=lambda x: -x[1])
        open_h = cand[:beam]
        if open_h[0][1] < eps:
            stop = "eps"
            break
    items = sorted(done.items(), key=lambda x: -x[1])
    return PaperCompletions(texts=tuple(t for t, _ in items), probs=np.array([v for _, v in items], np.float64),
                            steps=steps, stop=stop)
