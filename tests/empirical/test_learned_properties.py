"""Property tests of the shipped learned models against the construction (hypothesis).

Over drawn mixtures -- which tasks, in what proportions, how many examples (within the
training range) -- each shipped lookup-family model (``lookup``, a standard small transformer;
``like-construction``, the construction's own architecture trained on its tasks) is held to:

* its probability of every task's answer stays within the tolerance that its committed
  report (``superpose compare``, benchmarks/results/compare/) measured: the 99th percentile,
  over every prompt of the report, of the largest difference between the learned and the
  constructed model's probability of a task's answer. As in the report, at most 1% of the
  prompts may exceed it: of a drawn mixture's 32 prompts at most 2 (a 1% rate exceeds that
  with probability 0.004). The report's maximum is not used: for both models it is 0.99 or
  more, a tolerance that no probability can exceed;
* its most likely answer is the answer of a task in the prompt: one that fits at least one
  of its examples (from the prompt alone, a task that fits by chance cannot be told from one
  that generated examples; the construction weights both), again in all but at most 2 of a
  mixture's 32 prompts (every prompt: the report's ``properties`` show that neither model
  manages that, ~1% and ~3% of prompts miss).

``like-construction`` fails both (the finding: per prompt it commits to one task, mostly
``copy x2``, whatever the mixture; 3-7% of its prompts are beyond the tolerance and up to 4%
answer a task that is not in the prompt), ``like-construction-nonorm`` fails the second (it
answers ``x1 + 3`` in mixed prompts), so those cases are marked as expected failures; its
tolerance (1.000) is one no probability can exceed, so the first property is not run for it.

The tolerance is read from the report, never chosen here; where a property fails, the
failure is the finding (README, "Constructed versus learned").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from construction import sample_prompts
from construction.reference import task_outputs, task_weights
from empirical import compare as C

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "benchmarks" / "results" / "compare"
SUBJECTS = ("lookup", "like-construction", "like-construction-nonorm")
#: the finding behind the expected failures (README, "Constructed versus learned")
COMMITS = ("like-construction commits to one task per prompt (mostly copy x2): 3-7% of its prompts are beyond "
           "the report's tolerance, up to 4% answer a task not in the prompt")
CASES = [pytest.param("lookup"), pytest.param("like-construction", marks=pytest.mark.xfail(strict=True, reason=COMMITS))]
#: like-construction-nonorm's report measures a 99th percentile of 1.000: a tolerance no
#: probability can exceed, so the tolerance property is empty for it and is not run
TOLERANCE_CASES = CASES
NONORM = ("like-construction-nonorm answers x1 + 3 in mixed prompts, present or not (.67 at lambda 0.5 on copy x0 / "
          "copy x2 prompts); up to 9% of its prompts (4 examples) answer no task in the prompt")
ARGMAX_CASES = CASES + [pytest.param("like-construction-nonorm", marks=pytest.mark.xfail(strict=True, reason=NONORM))]
PROMPTS = 32
#: prompts of a drawn mixture allowed beyond the report's 99th percentile
ALLOWED = 2


def _report(name: str) -> dict:
    return json.loads((REPORTS / f"compare_{name}.json").read_text())


_LOADED: dict = {}


def _models(name: str):
    if name not in _LOADED:
        learned, cfg = C.learned_subject(name)
        bits = C.code_bits_of(learned, cfg.n_examples - 1)
        _LOADED[name] = learned, C.constructed_subject(cfg.fam.task_set, bits=bits), cfg
    return _LOADED[name]


@st.composite
def mixtures(draw, num_tasks: int, max_examples: int):
    k = draw(st.integers(1, num_tasks))
    tasks = draw(st.permutations(range(num_tasks)))[:k]
    weights = np.array(draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k)))
    m = draw(st.integers(1, max_examples))
    seed = draw(st.integers(0, 2**31 - 1))
    return list(tasks), weights / weights.sum(), m, seed


def _draw(cfg, mixture):
    tasks, p, m, seed = mixture
    ts = cfg.fam.task_set
    prompts = sample_prompts(np.random.default_rng(seed), [ts.tasks[k] for k in tasks], p, n_examples=m,
                             batch=PROMPTS, vocab_size=ts.vocab_size, example_len=ts.example_len, interleave="iid")
    answers = task_outputs(prompts.tokens, ts.tasks, ts.example_len)  # [P, K] every task's answer
    fits = task_weights(prompts.tokens, ts.tasks, ts.example_len) > 0  # the tasks in each prompt
    present = [set(answers[i, fits[i]]) for i in range(PROMPTS)]
    return prompts.tokens, answers, present


@pytest.mark.parametrize("name", TOLERANCE_CASES)
@given(data=st.data())
def test_learned_answer_probabilities_stay_within_the_reported_tolerance(name, data):
    learned, constructed, cfg = _models(name)
    tolerance = _report(name)["behaviour"]["answer_diff"]["q99"]
    mixture = data.draw(mixtures(len(cfg.fam.task_set.tasks), cfg.n_examples - 1))
    tokens, answers, _ = _draw(cfg, mixture)
    rows = np.arange(len(tokens))[:, None]
    p_l, p_c = C.probabilities(learned, tokens), C.probabilities(constructed, tokens)
    diff = np.abs(p_l[rows, answers] - p_c[rows, answers]).max(axis=1)
    beyond = int((diff > tolerance).sum())
    assert beyond <= ALLOWED, (mixture, beyond, np.sort(diff)[-4:], tolerance)


@pytest.mark.parametrize("name", ARGMAX_CASES)
@given(data=st.data())
def test_learned_argmax_is_the_answer_of_a_task_in_the_prompt(name, data):
    learned, _, cfg = _models(name)
    mixture = data.draw(mixtures(len(cfg.fam.task_set.tasks), cfg.n_examples - 1))
    tokens, _, present = _draw(cfg, mixture)
    top = C.probabilities(learned, tokens).argmax(axis=1)
    misses = [i for i in range(len(tokens)) if top[i] not in present[i]]
    assert len(misses) <= ALLOWED, (mixture, misses)


def test_the_constructed_model_satisfies_both_properties_on_every_prompt():
    """The control: the construction against itself, tolerance 0, no prompt missed."""
    _, constructed, cfg = _models("lookup")
    scan = C.property_scan(constructed, constructed, cfg.fam.task_set, tolerance=0.0, max_examples=8, mixtures=3)
    assert scan["lengths"] and all(p["argmax_absent"] == 0 and p["beyond_tolerance"] == 0 for p in scan["lengths"])
