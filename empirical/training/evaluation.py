"""Answer accuracy of a trained model on fresh single-task sequences, per task and per
example index."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from empirical import synthetic
from empirical.training.config import TrainConfig
from empirical.training.step import eval_rng, make_eval_fn


def evaluate_tasks(cfg: TrainConfig, params, *, sequences: int = 200, seed: int = 0, batch: int = 50,
                   progress: bool = False) -> dict:
    """Single-task answer accuracy of ``params`` per task and per example index, on
    ``sequences`` fresh sequences of each task (``numpy.random.default_rng([seed, 2, h])``:
    a stream no training or in-training evaluation batch uses).

    Returns ``{"tasks": {name: {answer_acc, answer_acc_late, loss, example_acc}}, "answer_acc",
    "answer_acc_late", "example_acc", "worst_task_late"}`` (the last four over all tasks).
    """
    from tqdm.auto import tqdm

    if sequences < 1 or batch < 1:
        raise ValueError(f"need sequences >= 1 and batch >= 1, got {sequences} and {batch}")
    eval_fn = make_eval_fn(cfg)
    fam = cfg.fam
    per_task, curves = {}, []
    for h in tqdm(fam.params, disable=not progress, desc="eval", unit="task"):
        one = fam.restrict([h])
        rng = np.random.default_rng([seed, 2, h])
        sums, n_done = 0.0, 0
        while n_done < sequences:
            size = min(batch, sequences - n_done)
            b = synthetic.training_batch(one, rng, batch, cfg.n_examples)  # fixed shape: one compilation
            out = eval_fn(params, b["tokens"], b["mask"], b["answer_mask"])
            sums = sums + np.asarray(out["example_hits"], dtype=np.float64)[:size].sum(0)
            n_done += size
        example_acc = sums / sequences
        curves.append(example_acc)
        per_task[fam.task(h)] = {
            "label": fam.task_label(h),
            "answer_acc": float(example_acc.mean()),
            "answer_acc_late": float(example_acc[cfg.n_examples // 2 :].mean()),
            "example_acc": example_acc.tolist(),
        }
    mean_curve = np.mean(curves, axis=0)
    return {
        "sequences_per_task": sequences,
        "seed": seed,
        "n_examples": cfg.n_examples,
        "tasks": per_task,
        "answer_acc": float(mean_curve.mean()),
        "answer_acc_late": float(mean_curve[cfg.n_examples // 2 :].mean()),
        "worst_task_late": min(t["answer_acc_late"] for t in per_task.values()),
        "example_acc": mean_curve.tolist(),
    }


def evaluate(cfg: TrainConfig, params, batch: dict | None = None, eval_fn: Callable | None = None) -> dict:
    """Single-task accuracy of ``params`` on ``cfg.eval_batch`` fresh sequences (fixed seed)."""
    if batch is None:
        batch = synthetic.training_batch(cfg.fam, eval_rng(cfg), cfg.eval_batch, cfg.n_examples)
    eval_fn = eval_fn or make_eval_fn(cfg)
    out = eval_fn(params, batch["tokens"], batch["mask"], batch["answer_mask"])
    return {k: (np.asarray(v).tolist() if np.ndim(v) else float(v)) for k, v in out.items() if k != "example_hits"}


