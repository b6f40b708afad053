"""Prompt sets over a :class:`construction.tasks.TaskSet` (token arrays ``[P, L]``, i.i.d. example order)."""

from __future__ import annotations

import numpy as np

from construction import sample_prompts
from construction.tasks import TaskSet


def dirichlet_prompts(task_set: TaskSet, rng: np.random.Generator, n_prompts: int, n_examples: int,
                      groups: int = 16) -> np.ndarray:
    """Prompts over all tasks, in ``groups`` groups whose task proportions are each drawn from a
    flat Dirichlet (so that the task weights vary across prompts): tokens [P, L]."""
    sizes = np.diff(np.linspace(0, n_prompts, groups + 1).astype(int))
    out = []
    for size in sizes[sizes > 0]:
        p = rng.dirichlet(np.ones(len(task_set.tasks)))
        out.append(sample_prompts(rng, task_set.tasks, p, n_examples=n_examples, batch=int(size),
                                  vocab_size=task_set.vocab_size, example_len=task_set.example_len,
                                  interleave="iid").tokens)
    return np.concatenate(out)


def two_task_prompts(task_set: TaskSet, rng: np.random.Generator, n_prompts: int, n_examples: int, lam: float,
                     pair: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Prompts of tasks ``pair`` with shares ``lam`` and ``1 - lam``: tokens [P, L]."""
    sub = [task_set.tasks[pair[0]], task_set.tasks[pair[1]]]
    return sample_prompts(rng, sub, [lam, 1 - lam], n_examples=n_examples, batch=n_prompts,
                          vocab_size=task_set.vocab_size, example_len=task_set.example_len, interleave="iid").tokens


def proportion_prompts(task_set: TaskSet, rng: np.random.Generator, proportions, n_prompts: int,
                       n_examples: int) -> np.ndarray:
    """Prompts of all tasks in the given ``proportions`` (one per task): tokens [P, L]."""
    return sample_prompts(rng, task_set.tasks, proportions, n_examples=n_examples, batch=n_prompts,
                          vocab_size=task_set.vocab_size, example_len=task_set.example_len, interleave="iid").tokens
