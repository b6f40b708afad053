"""Decoding that returns several answers of one prompt: greedy, sampling, beam search,
branching and superposed decoding, with their cost.

A superposed prompt (examples of several tasks) leaves probability on several tasks' answers,
but ordinary generation writes one of them: the first generated token commits it
("generation collapse"). :func:`decode` returns up to ``k`` complete answers of a prompt
(texts ending in the end-of-answer string, a newline by default, or the end-of-sequence
token), each with the model's exact probability, the number of forward-token evaluations
spent (the prompt's tokens once plus one per generated token per stream; padding rows of a
batch are not counted) and the wall time. Every method computes the prompt once; streams
continue that one prompt's keys and values (a per-stream copy of the prompt's cache, grown
one token per step).

Methods (``method=``):

``greedy``
    The most probable next token until the answer ends (``k`` must be 1).
``sample``
    ``k`` independent samples at temperature 1, in one batch (seeded by ``seed``); repeated
    texts are kept once.
``beam``
    Beam search of width ``k``: every step expands each open hypothesis by its ``k`` most
    probable tokens and keeps the ``k`` most probable open extensions; a hypothesis whose
    token contains the end of answer is set aside as complete. It stops when no open
    hypothesis is more probable than the ``k``-th best complete one (probabilities only fall)
    or at ``max_tokens``; the ``k`` most probable complete answers are returned.
``branch``
    One pass over the prompt, then its ``k`` most probable first tokens (exact) continued as
    ``k`` greedy streams in one batch until each ends.
``superposed``
    Superposed Decoding (after Shen et al., NeurIPS 2024, arXiv 2405.18400): one stream whose
    input at each step after the first is the weighted sum of the (scaled) token embeddings of
    the open drafts' last tokens, weights = the drafts' probabilities normalised to sum to 1.
    **Draft selection** (this implementation's rule; the paper also smooths with n-gram models,
    which are not available offline here): the first step takes the prompt's ``k`` most probable
    first tokens as drafts; each later step gets one next-token distribution ``q`` from the
    stream and extends every open draft ``d`` by each of ``q``'s ``k`` most probable tokens
    ``t``, scored ``score(d) + log q(t)``; of those ``k x k`` candidates the best are kept,
    complete ones (the token holds the end of answer) set aside, open ones filling the
    ``k - complete`` remaining places; it stops with ``k`` complete drafts, none open, or at
    ``max_tokens``. The complete drafts are then rescored exactly (teacher-forced on the
    prompt's cache, one batched pass, counted in the cost) and returned by that probability.

Bad input (``k < 1``, an unknown method, an empty prompt, a prompt that with ``max_tokens``
does not fit the model's context, ``greedy`` with ``k > 1``) is one ValueError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from empirical.llm.loading import bucket
from empirical.llm.model import KVCache

#: The decoding methods :func:`decode` knows.
METHODS = ("greedy", "sample", "beam", "branch", "superposed")


@dataclass(frozen=True, kw_only=True)
class Output:
    """One decoded stream: its generated ``token_ids`` (end token included when complete), the
    ``text`` before the end of answer, its ``logprob`` (the model's exact log-probability of
    those tokens after the prompt), and whether it ended (``complete``) before ``max_tokens``."""

    text: str
    token_ids: tuple[int, ...]
    logprob: float
    complete: bool


@dataclass(frozen=True, kw_only=True)
class DecodeResult:
    """What :func:`decode` returns.

    ``answers`` / ``probs``: the distinct complete answers, most probable first, at most ``k``,
    with their exact probabilities (end-of-answer token included). ``outputs``: every stream's
    :class:`Output` (also unfinished ones). ``forward_tokens``: tokens evaluated by the model
    (``prompt_tokens`` once, plus one per generated token per stream, plus rescoring);
    ``seconds``: the call's wall time (``prompt_seconds`` of it spent on the prompt pass; 0 when
    the prompt's pass was given as ``prefix``). ``truncated``: some stream stopped at
    ``max_tokens`` before its answer ended."""

    method: str
    k: int
    answers: tuple[str, ...]
    probs: np.ndarray
    outputs: tuple[Output, ...]
    forward_tokens: int
    prompt_tokens: int
    steps: int
    seconds: float
    prompt_seconds: float
    truncated: bool


@dataclass
class _Counter:
    tokens: int = 0
    steps: int = 0
    log: list = field(default_factory=list)  # per-step log-probabilities (tests)


def _batch_bucket(n: int) -> int:
    """Batch sizes 1, 2, 4, 8, ... (few jit shapes; padding rows are computed, not counted)."""
    b = 1
    while b < n:
        b *= 2
    return b


class Streams:
    """Streams continuing one prompt: a batch of ``rows`` copies of the prompt's keys and values,
    each with room for ``max_tokens`` more, grown by one token per :meth:`step`. The batch is
    padded to 1, 2, 4, 8, ... rows (one jit shape per batch and cache width; padding rows are
    computed but not counted as forward tokens)."""

    _jits: dict = {}

    def __init__(self, model, prompt_ids: Sequence[int], max_tokens: int, rows: int = 1, *, prefix=None):
        self.model = model
        self.n = len(prompt_ids)
        t0 = time.perf_counter()
        given = prefix is not None
        if prefix is None:
            prefix = model.prefix([list(prompt_ids)])
        self.last_logits, self.cache = prefix
        self.first = np.asarray(jax.nn.log_softmax(self.last_logits[0].astype(jnp.float32)), np.float64)
        self.prompt_seconds = 0.0 if given else time.perf_counter() - t0
        self.width = bucket(self.n + max_tokens + 1, 64)
        self.rows = _batch_bucket(rows)
        k, v = self.cache.k[:, :1], self.cache.v[:, :1]
        widths = ((0, 0), (0, 0), (0, self.width - k.shape[2]), (0, 0), (0, 0))
        shape = (k.shape[0], self.rows, self.width, *k.shape[3:])
        self.k = jnp.broadcast_to(jnp.pad(k, widths), shape)
        self.v = jnp.broadcast_to(jnp.pad(v, widths), shape)
        self.length = jnp.full((self.rows,), self.n, jnp.int32)
        fns = Streams._jits.get(id(model))
        if fns is None or fns[0] is not model:
            fns = (model, jax.jit(lambda *a: _token_step(model, *a)), jax.jit(lambda *a: _mix_step(model, *a)))
            Streams._jits.clear()  # one model at a time keeps its compilations
            Streams._jits[id(model)] = fns
        self._tok, self._mix = fns[1], fns[2]

    def step(self, parents: Sequence[int], tokens: Sequence[int] | None = None,
             mix: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Feed one input per stream and return next-token log-probabilities ``[n, vocab]``.

        Row ``i`` continues the stream in row ``parents[i]`` of the previous step (at the first
        step every row holds the prompt) with token ``tokens[i]``, or with the weighted sum of
        the token embeddings ``mix = (ids [n, m], weights [n, m])``."""
        n, b = len(parents), self.rows
        if n > b:
            raise ValueError(f"{n} streams but room for {b}")
        par = np.zeros(b, np.int32)
        par[:n] = np.asarray(parents, np.int32)
        if mix is None:
            tok = np.zeros(b, np.int32)
            tok[:n] = np.asarray(tokens, np.int32)
            lp, self.k, self.v, self.length = self._tok(self.model.params, self.k, self.v, self.length,
                                                        jnp.asarray(par), jnp.asarray(tok))
        else:
            ids, w = mix
            mi = np.zeros((b, ids.shape[1]), np.int32)
            mw = np.zeros((b, ids.shape[1]), np.float32)
            mi[:n], mw[:n] = ids, w
            lp, self.k, self.v, self.length = self._mix(self.model.params, self.k, self.v, self.length,
                                                        jnp.asarray(par), jnp.asarray(mi), jnp.asarray(mw))
        return np.asarray(lp[:n], np.float64)


def _apply(model, params, k, v, length, parents, tokens, edits=None):
    """One token per row after gathering the rows' parents: log-probabilities and the grown cache."""
    k, v, length = k[:, parents], v[:, parents], length[parents]
    logits, new, _ = model.module.apply({"params": params}, tokens[:, None], cache=KVCache(k, v, length),
                                        edits=edits)
    rows = jnp.arange(tokens.shape[0])
    k = k.at[:, rows, length].set(new.k[:, :, 0].astype(k.dtype))
    v = v.at[:, rows, length].set(new.v[:, :, 0].astype(v.dtype))
    return jax.nn.log_softmax(logits[:, 0], axis=-1), k, v, length + 1


def _token_step(model, params, k, v, length, parents, tokens):
    return _apply(model, params, k, v, length, parents, tokens)


def mixed_embedding(model, params, ids, weights):
    """``sum_m weights[:, m] * embed(ids[:, m])`` ``[b, d]``: the model's input embedding (Gemma's
    sqrt(d) scale included) of a weighted set of tokens."""
    cfg = model.config
    dt = jnp.dtype(cfg.dtype)
    e = jnp.take(params["embed"]["embedding"], ids, axis=0).astype(dt)
    if cfg.arch.embed_scale:
        e = e * jnp.asarray(np.float32(np.sqrt(cfg.d_model)), dt)
    return jnp.sum(weights.astype(dt)[..., None] * e, axis=1)


def _mix_step(model, params, k, v, length, parents, ids, weights):
    x = mixed_embedding(model, params, ids, weights)[:, None, :]
    return _apply(model, params, k, v, length, parents, jnp.zeros(ids.shape[:1], jnp.int32),
                  edits={"embed": lambda _: x})


# --------------------------------------------------------------------------- the methods (on token ids)


def _top(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries, largest first (ties by lower id)."""
    k = min(k, row.shape[0])
    idx = np.argpartition(-row, k - 1)[:k]
    return idx[np.lexsort((idx, -row[idx]))]


def _greedy_streams(st: Streams, firsts: Sequence[int], first_lp: Sequence[float], stop: np.ndarray,
                    max_tokens: int, c: _Counter, choose=None,
                    log: bool = True) -> list[tuple[tuple[int, ...], float, bool]]:
    """Continue each first token (one batch) until it ends or ``max_tokens``: greedily, or by
    ``choose(logprob row) -> token`` (sampling); ``log`` keeps every step's log-probabilities."""
    choose = choose or (lambda row: int(np.argmax(row)))
    seqs = [[int(t)] for t in firsts]
    lps = [float(x) for x in first_lp]
    done = [bool(stop[t]) for t in firsts]
    active = [i for i in range(len(seqs)) if not done[i]]
    prev_rows = [0] * len(active)
    while active and len(seqs[active[0]]) < max_tokens:
        lp = st.step(prev_rows, tokens=[seqs[i][-1] for i in active])
        c.tokens += len(active)
        c.steps += 1
        if log:
            c.log.append(lp)
        still = []
        for r, i in enumerate(active):
            t = choose(lp[r])
            seqs[i].append(t)
            lps[i] += float(lp[r, t])
            if stop[t]:
                done[i] = True
            else:
                still.append((r, i))
        prev_rows = [r for r, _ in still]
        active = [i for _, i in still]
    return [(tuple(s), lp, d) for s, lp, d in zip(seqs, lps, done)]


def _sample(st: Streams, k: int, stop: np.ndarray, max_tokens: int, seed: int, c: _Counter):
    rng = np.random.default_rng(seed)

    def draw(row):
        p = np.exp(row - row.max())
        return int(rng.choice(row.shape[0], p=p / p.sum()))

    firsts = [draw(st.first) for _ in range(k)]
    return _greedy_streams(st, firsts, [float(st.first[t]) for t in firsts], stop, max_tokens, c, choose=draw,
                           log=False)


def _beam(st: Streams, k: int, stop: np.ndarray, max_tokens: int, c: _Counter):
    done: list[tuple[tuple[int, ...], float]] = []
    open_h: list[tuple[tuple[int, ...], float, int]] = []  # (tokens, logprob, row)
    for t in _top(st.first, k):
        (done if stop[t] else open_h).append(((int(t),), float(st.first[t])) if stop[t]
                                            else ((int(t),), float(st.first[t]), 0))
    open_h = open_h[:k]
    while open_h:
        kth = sorted((lp for _, lp in done), reverse=True)[k - 1] if len(done) >= k else -np.inf
        open_h = [h for h in open_h if h[1] > kth]
        if not open_h or len(open_h[0][0]) >= max_tokens:
            break
        lp = st.step([h[2] for h in open_h], tokens=[h[0][-1] for h in open_h])
        c.tokens += len(open_h)
        c.steps += 1
        cand = []
        for r, (seq, s, _) in enumerate(open_h):
            for t in _top(lp[r], k):
                cand.append((seq + (int(t),), s + float(lp[r, t]), r))
        cand.sort(key=lambda x: -x[1])
        open_h = []
        for seq, s, r in cand:
            if stop[seq[-1]]:
                done.append((seq, s))
            elif len(open_h) < k:
                open_h.append((seq, s, r))
    out = [(seq, s, True) for seq, s in done]
    out += [(h[0], h[1], False) for h in open_h]
    return out


def _superposed(st: Streams, k: int, stop: np.ndarray, max_tokens: int, c: _Counter,
                rescore: Callable[[list[tuple[int, ...]]], list[float]]):
    done: list[tuple[tuple[int, ...], float]] = []
    drafts: list[tuple[tuple[int, ...], float]] = []
    for t in _top(st.first, k):
        item = ((int(t),), float(st.first[t]))
        (done if stop[t] else drafts).append(item)
    while drafts and len(done) < k and len(drafts[0][0]) < max_tokens:
        scores = np.array([s for _, s in drafts])
        w = np.exp(scores - scores.max())
        w = (w / w.sum()).astype(np.float32)
        ids = np.array([[d[-1] for d, _ in drafts]], np.int32)
        lp = st.step([0], mix=(ids, w[None]))[0]
        c.tokens += 1
        c.steps += 1
        c.log.append(lp[None])
        top = _top(lp, k)
        cand = sorted(((d + (int(t),), s + float(lp[t])) for d, s in drafts for t in top), key=lambda x: -x[1])
        drafts = []
        for seq, s in cand:
            if len(done) + len(drafts) >= k:
                break
            (done if stop[seq[-1]] else drafts).append((seq, s))
    seqs = [d for d, _ in done] + [d for d, _ in drafts]
    exact = rescore(seqs) if seqs else []
    c.tokens += sum(len(s) for s in seqs)
    return [(s, lp, i < len(done)) for i, (s, lp) in enumerate(zip(seqs, exact))]


def decode_ids(model, prompt_ids: Sequence[int], method: str, k: int, *, stop_ids: Sequence[int] | np.ndarray,
               max_tokens: int = 16, seed: int = 0, prefix=None, _log: list | None = None) -> dict:
    """The methods on token ids: ``stop_ids`` (a boolean mask over the vocabulary, or ids) end an
    answer. Returns ``{"outputs": [(ids, logprob, complete)], "forward_tokens", "steps",
    "prompt_tokens", "prompt_seconds"}``; see :func:`decode` for the methods and checks."""
    _check(model, method, k, len(prompt_ids), max_tokens)
    v = model.config.vocab_size
    stop = np.zeros(v, bool)
    ids = np.asarray(stop_ids)
    if ids.dtype == bool:
        stop[: len(ids)] = ids
    else:
        stop[ids.astype(int)] = True
    st = Streams(model, prompt_ids, max_tokens, rows=1 if method == "superposed" else k, prefix=prefix)
    c = _Counter(tokens=len(prompt_ids))
    if method in ("greedy", "branch"):
        firsts = _top(st.first, k)
        outs = _greedy_streams(st, firsts, st.first[firsts], stop, max_tokens, c)
    elif method == "sample":
        outs = _sample(st, k, stop, max_tokens, seed, c)
    elif method == "beam":
        outs = _beam(st, k, stop, max_tokens, c)
    else:
        def rescore(seqs):
            lps = model.continuation_logprobs(st.cache, st.last_logits, [0] * len(seqs), [list(s) for s in seqs])
            return [float(np.sum(x)) for x in lps]

        outs = _superposed(st, k, stop, max_tokens, c, rescore)
    if _log is not None:
        _log.extend(c.log)
    return {"outputs": outs, "forward_tokens": c.tokens, "steps": c.steps, "prompt_tokens": len(prompt_ids),
            "prompt_seconds": st.prompt_seconds}


def _check(model, method: str, k: int, n_prompt: int, max_tokens: int) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r} (choose from {', '.join(METHODS)})")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if method == "greedy" and k != 1:
        raise ValueError(f"greedy decoding returns one answer: k must be 1, got {k}")
    if not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if n_prompt < 1:
        raise ValueError("the prompt is empty")
    if n_prompt + max_tokens > model.config.max_len:
        raise ValueError(f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) exceeds the model's "
                         f"context of {model.config.max_len} tokens")


def stop_mask(model, end: str = "\n") -> np.ndarray:
    """Tokens that end an answer: those whose text contains ``end``, and end-of-sequence."""
    texts = model.token_texts()
    mask = np.array([end in t for t in texts] + [False] * (model.config.vocab_size - len(texts)))
    eos = model.tokenizer.eos_id
    if eos is not None and eos < len(mask):
        mask[eos] = True
    return mask


def decode(model, prompt: str, method: str, k: int = 1, *, max_tokens: int = 16, end: str = "\n",
           seed: int = 0, prefix=None, stop: np.ndarray | None = None) -> DecodeResult:
    """Up to ``k`` complete answers of ``prompt`` by ``method`` (see the module doc), with their
    exact probabilities, the forward-token evaluations spent and the wall time.

    An answer ends with a token whose text contains ``end`` (a newline: the families' end of
    answer) or with end-of-sequence; its text is what comes before ``end``. ``prefix``
    (optional) is ``model.prefix([tokenizer.encode_prompt(prompt)])``, reused (its prompt
    tokens are still counted; ``prompt_seconds`` is then 0). ``stop`` (optional) is
    :func:`stop_mask`'s result, reused. A ValueError for: ``k < 1``, an unknown method, an
    empty prompt, a model without tokenizer, a prompt that with ``max_tokens`` exceeds the
    model's context.
    """
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r} (choose from {', '.join(METHODS)})")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("the prompt is empty")
    if model.tokenizer is None:
        raise ValueError("the model has no tokenizer: decode text needs one (use decode_ids)")
    ids = model.tokenizer.encode_prompt(prompt)
    _check(model, method, k, len(ids), max_tokens)
    t0 = time.perf_counter()
    stop = stop_mask(model, end) if stop is None else stop
    raw = decode_ids(model, ids, method, k, stop_ids=stop, max_tokens=max_tokens, seed=seed, prefix=prefix)
    seconds = time.perf_counter() - t0
    outputs = []
    for seq, lp, complete in raw["outputs"]:
        text = model.tokenizer.decode(list(seq))
        text = text.split(end, 1)[0] if complete and end in text else text
        if complete and seq and model.tokenizer.eos_id is not None and seq[-1] == model.tokenizer.eos_id:
            text = model.tokenizer.decode(list(seq[:-1]))
        outputs.append(Output(text=text, token_ids=tuple(int(t) for t in seq), logprob=float(lp), complete=bool(complete)))
    best: dict[str, float] = {}
    for o in outputs:
        if o.complete:
            best[o.text] = max(best.get(o.text, -np.inf), o.logprob)
    order = sorted(best.items(), key=lambda x: -x[1])[:k]
    return DecodeResult(method=method, k=int(k), answers=tuple(t for t, _ in order),
                        probs=np.exp(np.array([lp for _, lp in order], np.float64)), outputs=tuple(outputs),
                        forward_tokens=int(raw["forward_tokens"]), prompt_tokens=int(raw["prompt_tokens"]),
                        steps=int(raw["steps"]), seconds=seconds, prompt_seconds=float(raw["prompt_seconds"]),
                        truncated=any(not o.complete for o in outputs))
