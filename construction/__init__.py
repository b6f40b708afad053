"""Theorem 1 by construction: tasks, prompts, the reference, and the seven-layer transformer.

    from construction import construct, lookup_task, sample_prompts, superposition_target
"""

from construction.bounds import Bounds
from construction.layout import Layout
from construction.model import ConstructedModel, Trace, construct, predict_many, probabilities_many, trace_many
from construction.prompts import Prompts, sample_prompts
from construction.reference import consistency, reference_trace, superposition_target, task_outputs, task_weights
from construction.spec import DEFAULT_BETA, ROLES, ConstructionSpec, width_formula
from construction.tasks import (
    LinearTask,
    LookupTask,
    TaskSet,
    default_task_set,
    default_tasks,
    continuous_task,
    lookup_task,
    retrieval_task,
    shift_task,
    tasks_from_json,
)
from construction.transformer import Transformer, TransformerConfig, init_params, run

__all__ = [
    "Bounds", "ConstructedModel", "ConstructionSpec", "DEFAULT_BETA", "Layout", "LinearTask", "LookupTask",
    "Prompts", "ROLES", "TaskSet", "Trace", "Transformer", "TransformerConfig", "construct", "consistency",
    "continuous_task", "default_task_set", "default_tasks", "init_params", "lookup_task", "predict_many", "probabilities_many", "trace_many", "reference_trace", "retrieval_task", "run",
    "sample_prompts", "shift_task", "superposition_target", "task_outputs", "task_weights",
    "tasks_from_json", "width_formula",
]
