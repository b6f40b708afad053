"""Property tests of the shipped learned models against Theorem 1's function (hypothesis).

Over drawn mixtures of the default lookup task set (which tasks, in what proportions, how
many examples), a model superposes as Theorem 1 says when, on a mixture's 32 prompts:

* **proportional**: its next-token distribution p is close to the theorem's output
  y = sum_k alpha_k onehot(g_k(x_q)) / |.|_1 (alpha_k: the share of the prompt's examples task
  k fits): mean TV(p, y) <= :data:`TV_MAX` = 0.15. Fixed before any mixture-trained model was
  measured, from what each strategy scores: the constructed model ~0.03 (beta 30: softmax
  leakage); the Bayes predictor of mixed training, (n_k + a) / (m + K a), differs from n_k / m
  by its prior, at most ~0.05 on typical prompts of >= 8 examples (hence m >= 8 here), plus a
  few per cent of mass elsewhere; a per-prompt chooser scores 1 - max_k alpha_k, ~0.3 on
  mixtures of two or three tasks with weights >= 0.05 of their sum.
* **order-free**: reversing the order of the examples moves p by mean TV <= :data:`ORDER_MAX`
  = 0.10 (averaging is order-free, 0; a last-example follower moves by ~0.5 on mixed prompts;
  0.10 is the issue's order-invariance target).
* **argmax in the prompt**: its most likely answer is the answer of a task that fits at least
  one example, in all but :data:`ALLOWED` of the 32 prompts.

Controls: the constructed model and the proportional oracle pass all three; the majority
chooser and the last-example follower (``empirical.superposition.oracle_probs``, which read
the tokens only) must fail the first, and the follower the second, on fixed balanced
mixtures. The mixture-trained models (``like-construction-mix``, ``lookup-mix``) must pass; the single-task models
(``lookup``, ``like-construction``) are choosers and are expected to fail the first
(``xfail(strict=True, raises=AssertionError)``: a crash is not the finding).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from construction import construct, sample_prompts
from construction.reference import consistency, superposition_target, task_outputs
from empirical import runs, superposition
from empirical.models import FlaxModel

PROMPTS = 32
TV_MAX = 0.15
ORDER_MAX = 0.10
ALLOWED = 2
#: prompts of at least this many examples (the prior of the mixed-training Bayes predictor
#: weighs ~K a / (m + K a) and fades with m); at most the shipped models' 19
MIN_EXAMPLES, MAX_EXAMPLES = 8, 19
LENGTHS = (MIN_EXAMPLES, 12, 16, MAX_EXAMPLES)
#: the shipped mixture-trained models: the construction-shaped and the tiny lookup preset
MIXED = ("like-construction-mix", "lookup-mix")
CHOOSES = ("a single-task model chooses one task per prompt (docs/superposition.md): "
           "its distance to the theorem's mixture is a chooser's")


@cache
def _model(name: str):
    """(probs, task set) of a shipped model or the constructed model: its Model's ``last_probs``."""
    cfg, params, _ = runs.load("lookup" if name == "constructed" else name)
    ts = cfg.fam.task_set
    if name == "constructed":
        m = construct(ts.tasks, vocab_size=ts.vocab_size, example_len=ts.example_len, max_examples=64, beta=30.0)
        return FlaxModel.of(m).last_probs, ts
    return FlaxModel(name, cfg.model, params, batch=PROMPTS).last_probs, ts


def _oracle(kind: str):
    ts = _model("constructed")[1]
    fam = runs.load("lookup")[0].fam
    return superposition.oracle_probs(fam, kind, tasks=list(range(len(ts.tasks)))), ts


@st.composite
def mixtures(draw, num_tasks: int):
    k = draw(st.integers(2, num_tasks))
    tasks = draw(st.permutations(range(num_tasks)))[:k]
    weights = np.array(draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k)))
    m = draw(st.sampled_from(LENGTHS))  # a few lengths: one compilation each
    seed = draw(st.integers(0, 2**31 - 1))
    return list(tasks), weights / weights.sum(), m, seed


def _prompts(ts, mixture) -> np.ndarray:
    tasks, p, m, seed = mixture
    return sample_prompts(np.random.default_rng(seed), [ts.tasks[k] for k in tasks], p, n_examples=m,
                          batch=PROMPTS, vocab_size=ts.vocab_size, example_len=ts.example_len,
                          interleave="iid").tokens


def _theorem(ts, tokens) -> np.ndarray:
    y = superposition_target(tokens, ts.tasks, ts.example_len)
    return y / y.sum(axis=1, keepdims=True)


def _reversed(ts, tokens) -> np.ndarray:
    m = (tokens.shape[1] - (ts.example_len - 1)) // ts.example_len
    body = tokens[:, : m * ts.example_len].reshape(len(tokens), m, ts.example_len)[:, ::-1]
    return np.concatenate([body.reshape(len(tokens), -1), tokens[:, m * ts.example_len:]], axis=1)


def check_proportional(probs, ts, mixture) -> float:
    tokens = _prompts(ts, mixture)
    tv = 0.5 * np.abs(np.asarray(probs(tokens), np.float64) - _theorem(ts, tokens)).sum(axis=1)
    assert tv.mean() <= TV_MAX, (mixture, float(tv.mean()))
    return float(tv.mean())


def check_order_free(probs, ts, mixture) -> float:
    tokens = _prompts(ts, mixture)
    before, after = np.asarray(probs(tokens), np.float64), np.asarray(probs(_reversed(ts, tokens)), np.float64)
    tv = 0.5 * np.abs(before - after).sum(axis=1)
    assert tv.mean() <= ORDER_MAX, (mixture, float(tv.mean()))
    return float(tv.mean())


def check_argmax_in_prompt(probs, ts, mixture) -> int:
    tokens = _prompts(ts, mixture)
    answers = task_outputs(tokens, ts.tasks, ts.example_len)
    fits = consistency(tokens, ts.tasks, ts.example_len).any(axis=1)
    top = np.asarray(probs(tokens)).argmax(axis=1)
    misses = [i for i in range(len(tokens)) if top[i] not in set(answers[i, fits[i]])]
    assert len(misses) <= ALLOWED, (mixture, misses)
    return len(misses)


CHECKS = {"proportional": check_proportional, "order_free": check_order_free, "argmax": check_argmax_in_prompt}
SINGLE_TASK = [pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=CHOOSES))
               for name in ("lookup", "like-construction")]


@pytest.mark.parametrize("name", MIXED)
@pytest.mark.parametrize("check", list(CHECKS))
@given(data=st.data())
def test_the_mixture_trained_models_superpose_as_the_theorem_says(check, name, data):
    probs, ts = _model(name)
    CHECKS[check](probs, ts, data.draw(mixtures(len(ts.tasks))))


@pytest.mark.parametrize("name", SINGLE_TASK)
@given(data=st.data())
def test_single_task_models_are_not_proportional(name, data):
    probs, ts = _model(name)
    check_proportional(probs, ts, data.draw(mixtures(len(ts.tasks))))


#: fixed balanced mixtures on which a chooser is far from the theorem's mixture
BALANCED = [([0, 1], np.array([0.5, 0.5]), 12, 1), ([0, 1, 2], np.ones(3) / 3, 15, 2), ([1, 2], np.array([0.6, 0.4]), 19, 3)]


@pytest.mark.parametrize("name", ["constructed", "oracle:proportional"])
def test_controls_that_average_pass_every_property(name):
    probs, ts = _oracle(name.split(":")[1]) if name.startswith("oracle") else _model(name)
    for mixture in BALANCED:
        for check in CHECKS.values():
            check(probs, ts, mixture)


@pytest.mark.parametrize("kind, failing", [("majority", ("proportional",)), ("last", ("proportional", "order_free"))])
def test_choosers_fail_the_properties(kind, failing):
    probs, ts = _oracle(kind)
    for check in failing:
        for mixture in BALANCED:
            with pytest.raises(AssertionError):
                CHECKS[check](probs, ts, mixture)
    check_argmax_in_prompt(probs, ts, BALANCED[0])  # a chooser's answer is a task in the prompt


@pytest.mark.parametrize("name", MIXED)
def test_the_shipped_mixture_models_meet_the_targets_on_fresh_prompts(name):
    """The study's targets (fixed before measuring: empirical.mixture_study.TARGETS) on prompts
    and sequences of a seed the study did not use."""
    from empirical import mixture_study

    cfg, params, _ = runs.load(name)
    result = mixture_study.measure(cfg, params, n_prompts=100, sequences=50, seed=7)
    missed = {k: t for k, t in result.targets.items() if not t.met}
    assert not missed, missed
    h = result.headline
    assert h["var_ratio@0.5"] < 0.3  # a per-prompt chooser scores 1; proportional mixing ~1/19
    assert h["flip_delta"] < 0  # one A label turned into B's answer lowers P(A)
