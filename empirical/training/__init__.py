"""Training the shared transformer from scratch on one in-context task per sequence (Fig. 3).

The model is :class:`construction.transformer.TransformerConfig` / ``run`` as is (the class
the construction also runs on). A run is described by a frozen :class:`TrainConfig` (model
architecture + data + optimiser), saved as ``config.json`` beside the orbax checkpoints:

    out/config.json        the TrainConfig (model config inside)
    out/checkpoints/<step> orbax checkpoints of {params, opt_state, step}
    out/metrics.jsonl      one JSON object per logged step (``"kind": "train"`` or ``"eval"``)
    out/result.json        the final summary (config, version, device, date, metrics)

:func:`train_many` trains N models (seeds, learning rates, data settings) in one vmapped,
jitted step, each into its own run directory; :func:`train` is the same code with N = 1.

The batch of step ``s`` is drawn from ``numpy.random.default_rng([seed, 0, s])``, so a resumed
run sees exactly the data the uninterrupted run would have seen, and XLA's deterministic
kernels give the same losses.

Files: ``config`` (TrainConfig, presets), ``step`` (optimiser, batches, the jitted steps),
``loop`` (:func:`train`), ``checkpoints`` (the run directory), ``evaluation``, ``plots``.

Presets: :func:`tiny` (a 2-core CPU, 3 to 15 minutes per family) and :func:`paper` (the authors'
Llama-style ~14M-parameter model, docs/theory.md section 6).
"""

from empirical.training.checkpoints import finished, fork, load_config, load_run, provenance, restore_state
from empirical.training.config import (
    PRESETS,
    TINY,
    TrainConfig,
    _model,  # noqa: F401 (the tests build small models with it)
    flops_per_token,
    like_construction,
    paper,
    param_count,
    tiny,
)
from empirical.training.evaluation import evaluate, evaluate_tasks
from empirical.training.loop import check_group, read_metrics, train, train_many
from empirical.training.plots import plot_eval, plot_learning_curves
from empirical.training.step import (
    MEMBER_FIELDS,
    batch_rng,
    device_batch,
    eval_rng,
    init_state,
    make_batch,
    make_eval_fn,
    make_group_step,
    make_train_step,
    optimizer,
    schedule,
    shared_config,
    tasks_at,
    unit_schedule,
)

__all__ = [
    "MEMBER_FIELDS", "check_group", "finished", "fork", "device_batch", "make_group_step", "shared_config", "train_many", "unit_schedule",
    "PRESETS", "TINY", "TrainConfig", "batch_rng", "eval_rng", "evaluate", "evaluate_tasks", "flops_per_token",
    "init_state", "like_construction", "load_config", "load_run", "make_batch", "make_eval_fn", "make_train_step",
    "optimizer", "paper", "param_count", "plot_eval", "plot_learning_curves", "provenance", "read_metrics",
    "restore_state", "schedule", "tasks_at", "tiny", "train",
]
