"""The shipped checkpoints (empirical/pretrained/<family>/): they load by name, do their tasks
on fresh sequences, and their Figure 3 sweep has the shape the paper describes at its ends.

Seconds each: 64 fresh sequences per task and 200 prompts at lambda 0, 0.5 and 1. Fresh
accuracy is held to what `superpose export` recorded on 200 sequences per task (docs/training.md),
within the sampling error of the smaller sample, and to the 95% target itself.
"""

from __future__ import annotations

import json
import math

import pytest

from empirical import runs, training
from empirical import sweep as sweep_lib
from empirical.models import FlaxModel

SHIPPED = {"copy": ("copy:1", "copy:5"), "add": ("add:2", "add:6"), "lookup": ("lookup:0", "lookup:1"),
           "like-construction": ("lookup:0", "lookup:1"), "like-construction-nonorm": ("lookup:0", "lookup:1"),
           "like-construction-mix": ("lookup:0", "lookup:1"), "lookup-mix": ("lookup:0", "lookup:1")}
#: the family of each shipped model (its name, except for the construction-shaped lookup models)
FAMILY = {"like-construction": "lookup", "like-construction-nonorm": "lookup", "like-construction-mix": "lookup",
          "lookup-mix": "lookup"}


def test_every_family_has_a_shipped_checkpoint():
    assert set(SHIPPED) <= set(runs.available())
    assert {FAMILY.get(name, name) for name in SHIPPED} == {"copy", "add", "lookup"}


def _recorded(name: str) -> dict:
    """What `superpose export` measured for the shipped model (200 fresh sequences per task)."""
    return json.loads((runs.PRETRAINED / name / "summary.json").read_text())["eval"]


#: Fresh sequences per task of every evaluation below (seed 123: no training or export stream).
FRESH = 64


@pytest.fixture(scope="module")
def fresh():
    """name -> (config, step, its evaluation on FRESH new sequences per task), computed once."""
    cache: dict = {}

    def evaluate(name: str):
        if name not in cache:
            cfg, params, step = runs.load(name)
            cache[name] = cfg, step, training.evaluate_tasks(cfg, params, sequences=FRESH, seed=123, batch=FRESH)
        return cache[name]

    return evaluate


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_reproduces_its_recorded_accuracy_on_fresh_sequences(name, fresh):
    cfg, step, res = fresh(name)
    assert cfg.family == FAMILY.get(name, name) and step == cfg.steps
    recorded = _recorded(name)
    # 64 sequences per task against 200: within ~3 standard errors of the smaller sample.
    assert abs(res["answer_acc_late"] - recorded["answer_acc_late"]) <= 0.05, (res["answer_acc_late"], recorded)
    # In-context learning: the first example (no context) is near chance, late ones far above it.
    assert res["example_acc"][0] <= 1.0 / len(cfg.fam.params) + 0.25
    assert res["answer_acc_late"] >= res["example_acc"][0] + 0.3


@pytest.mark.parametrize("name", [
    "add",
    "lookup",
    "like-construction",
    "like-construction-nonorm",
    "like-construction-mix",
    "lookup-mix",
    "copy",
])
def test_shipped_checkpoint_meets_the_95_percent_target(name, fresh):
    """On the fresh evaluation, not the committed summary: late-example accuracy >= 0.95 and the
    worst task's >= 0.9, each less 3 standard errors. Sequences are independent and a sequence's
    late accuracy lies in [0, 1], so at a true mean p its variance is at most p (1 - p): the
    standard error at the target is at most sqrt(p (1 - p) / n), n the sequences averaged."""
    cfg, _, res = fresh(name)
    n_all = FRESH * len(cfg.fam.params)
    assert res["answer_acc_late"] >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / n_all), res["answer_acc_late"]
    assert res["worst_task_late"] >= 0.9 - 3 * math.sqrt(0.9 * 0.1 / FRESH), res["tasks"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_sweep_ends(name):
    cfg, params, _ = runs.load(name)
    hs = [int(t.split(":")[1]) for t in SHIPPED[name]]
    res = sweep_lib.sweep(FlaxModel("model", cfg.model, params, batch=50), cfg.fam, hs, n_prompts=200,
                          n_examples=cfg.n_examples - 1, lambdas=(0.0, 0.5, 1.0), progress=False)
    p_a, p_b = sweep_lib.series(res, "p_a"), sweep_lib.series(res, "p_b")
    assert p_a[-1] > 0.85 and p_b[0] > 0.85  # single-task prompts: the task's answer
    assert p_a[0] < 0.1 and p_b[-1] < 0.1  # ... and not the other's
    assert p_a[0] < p_a[1] < p_a[2] and p_b[0] > p_b[1] > p_b[2]  # P(A) rises with A's share


def test_shipped_checkpoint_loads_where_a_run_is_accepted(tmp_path, capsys):
    from empirical import cli

    assert cli.main(["eval", "--run", "add", "--sequences", "2", "--json", str(tmp_path / "e.json"),
                           "--quiet"]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    assert out["run"] == "add" and set(out["tasks"]) == {f"add:{h}" for h in range(10)}
    assert "all tasks" in capsys.readouterr().out
