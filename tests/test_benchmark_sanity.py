"""The benchmarks refuse impossible or unfair results: each ``sanity()`` is fed summaries that
cannot be right (a figure that is not finite, faster than the FLOP floor, slowed by contention,
the two sides computing different things or training different models) and must name the
reason; a plausible summary passes. The benchmarks themselves are not run here."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _load("llm_harness")
training_bench = _load("training")


# --------------------------------------------------------------------------- the LLM harness


def _harness(mode: str = "cpu", **changes) -> dict:
    """A plausible summary (the committed CPU run's figures), with ``changes``."""
    summary = {"ours_s": 2.49, "reference_s": 11.5, "floor_s": 1.54, "speedup_vs_reference": 4.6,
               "ours_over_floor": 1.61, "reference_over_floor": 7.45, "prefix_sharing_limit": 4.0,
               "mode": mode, "max_abs_logprob_diff": 1.5e-4}
    if mode == "cpu":
        summary.update(reference_over_its_floor=1.54,
                       ours_breakdown_s={"prefix": 2.27, "prefix_floor": 1.51, "candidates": 0.22,
                                         "candidates_floor": 0.04})
    else:
        summary["weights"] = {"ours": "0123456789abcdef", "reference": "0123456789abcdef"}
    summary.update(changes)
    return summary


@pytest.mark.parametrize("mode", ["cpu", "gpu"])
def test_the_harness_accepts_a_plausible_summary(mode):
    assert harness.sanity(_harness(mode)) == []


@pytest.mark.parametrize("mode,changes,reason", [
    ("cpu", {"ours_s": math.nan}, "ours_s is nan"),
    ("cpu", {"ours_breakdown_s": {"prefix": math.inf}}, "prefix is inf"),
    ("cpu", {"ours_over_floor": 0.6}, "faster than the measured matmul peak"),
    ("cpu", {"reference_over_its_floor": 3.1}, "contention"),
    ("cpu", {"reference_over_its_floor": 0.8}, "faster than the peak allows"),
    ("cpu", {"max_abs_logprob_diff": 2e-3}, "do not compute the same thing"),
    ("cpu", {"max_abs_logprob_diff": math.nan}, "max_abs_logprob_diff is nan"),
    ("gpu", {"max_abs_logprob_diff": 0.5}, "do not compute the same thing"),
    ("gpu", {"weights": {"ours": "0123456789abcdef", "reference": "fedcba9876543210"}}, "same weights"),
    ("gpu", {"weights": None}, "same weights"),
])
def test_the_harness_refuses_an_impossible_summary(mode, changes, reason):
    problems = harness.sanity(_harness(mode, **changes))
    assert any(reason in p for p in problems), problems


def test_the_harness_checks_every_round_and_the_warmup():
    """The summary's log-probability gap is the largest of all rows, the warm-up row included;
    on the CPU each row's gap is every round of one side against every round of the other."""
    row = {"candidate_tokens": [1, 2], "ours_s": 1.0, "reference_s": 2.0, "floor_s": 0.5, "reference_floor_s": 1.0,
           "ours_prefix_s": 0.8, "prefix_floor_s": 0.4, "ours_candidates_s": 0.2}
    rows = [{**row, "warmup": True, "max_abs_logprob_diff": 5e-3}, {**row, "max_abs_logprob_diff": 1e-5}]
    summary = harness.summarize(rows, gpu=False)
    assert summary["max_abs_logprob_diff"] == 5e-3
    assert any("do not compute the same thing" in p for p in harness.sanity(summary))


def test_same_weights_on_both_sides_of_the_gpu_harness():
    """What the GPU mode does on its 8B model, on a tiny one on the CPU: our weights copied into
    the ``transformers`` model give the same fingerprint and the same log-probabilities; the
    reference's own random initialisation (what the GPU mode compared before) does not."""
    from empirical.llm import model_from_params
    from empirical.llm.weights import state_dict_from_params
    from tests.tiny_llm import random_params, tiny_config, torch_model

    cfg = tiny_config(n_layers=2)
    params = random_params(cfg, std=0.2)
    ref = torch_model(cfg, seed=1)
    ours_fp = harness.weights_fingerprint(state_dict_from_params(cfg, params))
    assert harness.weights_fingerprint(dict(ref.named_parameters())) != ours_fp
    harness.torch_from_ours(cfg, params, ref)
    assert harness.weights_fingerprint(dict(ref.named_parameters())) == ours_fp
    prompt, cands = [5, 17, 3, 99, 42], [[7], [8, 9], [200, 1, 2]]
    ours = harness.ours_score(model_from_params(cfg, params), [prompt], [cands])[0]
    theirs = harness.reference_score(ref, prompt, cands, "cpu")
    np.testing.assert_allclose(ours, theirs, atol=harness.LOGPROB_TOL["cpu"])


# --------------------------------------------------------------------------- the training benchmark


def _rounds(side: str, n: int = 3, **changes) -> list[dict]:
    base = {"side": side, "seconds": 10.0, "steps": 20, "peak_flops_per_s": 3e10, "first_loss": 3.6,
            "last_loss": 3.4, "params": 128192, "device": "cpu", "threads": __import__("os").cpu_count() or 1}
    return [{**base, **changes} for _ in range(n)]


FPT, TOKENS = 7.7e5, 16 * 161  # a utilisation of ~0.2, as committed


def test_the_training_benchmark_accepts_plausible_rounds():
    assert training_bench.sanity(_rounds("ours"), _rounds("reference"), FPT, TOKENS) == []


@pytest.mark.parametrize("side,changes,reason", [
    ("ours", {"seconds": math.nan}, "seconds is nan"),
    ("reference", {"peak_flops_per_s": math.inf}, "peak_flops_per_s is inf"),
    ("ours", {"first_loss": math.nan}, "first_loss is nan"),
    ("reference", {"last_loss": None}, "last_loss is None"),
    ("ours", {"seconds": 0.5}, "utilisation"),
    ("reference", {"last_loss": 3.7}, "did not fall"),
    ("reference", {"threads": 1_000}, "threads"),
    ("reference", {"params": 177344}, "different sizes"),
])
def test_the_training_benchmark_refuses_impossible_rounds(side, changes, reason):
    ours = _rounds("ours", **(changes if side == "ours" else {}))
    ref = _rounds("reference", **(changes if side == "reference" else {}))
    problems = training_bench.sanity(ours, ref, FPT, TOKENS)
    assert any(reason in p for p in problems), problems


def test_the_training_benchmark_refuses_a_contended_round():
    ref = _rounds("reference")
    ref[1] = {**ref[1], "seconds": 10.0 * (training_bench.ROUND_SLACK + 0.2)}
    problems = training_bench.sanity(_rounds("ours"), ref, FPT, TOKENS)
    assert any("contention" in p for p in problems), problems
    assert training_bench.sanity(_rounds("ours"), _rounds("reference")[:1], FPT, TOKENS) == []


@pytest.mark.parametrize("fpt,tokens", [(math.nan, TOKENS), (FPT, 0), (-1.0, TOKENS)])
def test_the_training_benchmark_refuses_impossible_shared_figures(fpt, tokens):
    assert training_bench.sanity(_rounds("ours"), _rounds("reference"), fpt, tokens)
