"""The four task families of the paper's Figure 2, and their superposed prompts.

Prompt = examples joined by newlines, a newline, then the query (no instruction). Every
prompt holds ``examples_per_task`` examples of each task, randomly interleaved; the query's
input is not among the examples' inputs. The in-context proportions D are uniform, or, with
``make_prompts(..., skewed=True)``, drawn per prompt from a flat Dirichlet (the calibration
study).

    add      A+B->answer, A, B in [10, 99]: digits / English / French / Spanish words
    country  France->Paris: capital / continent / UPPER-CASE name (the 193 UN member states)
    at       A@B=answer, A, B in [10, 99]: A / B / A+B
    letter   word->letter: first / last letter, lower / upper case (400 frequent words)
    letter_rare  the same tasks on 400 rare dictionary words (mostly several tokens each)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from empirical.llm import data


@dataclass(frozen=True, kw_only=True)
class Family:
    """A task family: named tasks mapping one input to one answer each."""

    name: str
    tasks: tuple[str, ...]
    sep: str
    description: str
    inputs: Callable[[], list[Any]]
    render: Callable[[Any], str]
    answer: Callable[[str, Any], str]


@dataclass(frozen=True, kw_only=True)
class Prompt:
    """One superposed prompt: its text, the query input, each task's answer, proportions D."""

    family: str
    text: str
    query: str
    answers: tuple[str, ...]
    proportions: tuple[float, ...]
    example_tasks: tuple[str, ...]


def _number_words() -> dict[str, dict[str, str]]:
    return data.load("numbers.json")["words"]


def _pairs() -> list[tuple[int, int]]:
    return [(a, b) for a in range(10, 100) for b in range(10, 100)]


def _distinct_pairs() -> list[tuple[int, int]]:
    return [(a, b) for a, b in _pairs() if a != b]


def _add_answer(task: str, x: tuple[int, int]) -> str:
    s = x[0] + x[1]
    if task == "digits":
        return str(s)
    return _number_words()[str(s)][{"english": "en", "french": "fr", "spanish": "es"}[task]]


def _at_answer(task: str, x: tuple[int, int]) -> str:
    return str({"A": x[0], "B": x[1], "A+B": x[0] + x[1]}[task])


def _countries() -> list[dict]:
    return data.load("countries.json")["countries"]


def _country_answer(task: str, x: dict) -> str:
    return {"capital": x["capital"], "continent": x["continent"], "upper": x["name"].upper()}[task]


def _letter_answer(task: str, w: str) -> str:
    pos, case = task.split("_")
    ch = w[0] if pos == "first" else w[-1]
    return ch.upper() if case == "upper" else ch.lower()


PROBE_FAMILIES: dict[str, Family] = {
    "add": Family(name="add", tasks=("digits", "english", "french", "spanish"), sep="->",
                  description="A+B->answer written as digits / English / French / Spanish words",
                  inputs=_pairs, render=lambda x: f"{x[0]}+{x[1]}", answer=_add_answer),
    "country": Family(name="country", tasks=("capital", "continent", "upper"), sep="->",
                      description="country->capital / continent / UPPER-CASE name",
                      inputs=_countries, render=lambda x: x["name"], answer=_country_answer),
    "at": Family(name="at", tasks=("A", "B", "A+B"), sep="=",
                 description="A@B=A / B / A+B (A != B, so the answers differ)",
                 inputs=_distinct_pairs,
                 render=lambda x: f"{x[0]}@{x[1]}", answer=_at_answer),
    "letter": Family(name="letter", tasks=("first_lower", "first_upper", "last_lower", "last_upper"),
                     sep="->", description="word->first / last letter, lower / upper case (frequent words)",
                     inputs=lambda: list(data.load("words.json")["words"]), render=lambda w: w,
                     answer=_letter_answer),
    "letter_rare": Family(name="letter_rare", tasks=("first_lower", "first_upper", "last_lower", "last_upper"),
                          sep="->", description="word->first / last letter, lower / upper case (rare dictionary words)",
                          inputs=lambda: list(data.load("rare_words.json")["words"]), render=lambda w: w,
                          answer=_letter_answer),
}


def get_family(name: str) -> Family:
    """The family called ``name`` (ValueError naming the choices otherwise)."""
    if name not in PROBE_FAMILIES:
        raise ValueError(f"unknown family {name!r} (choose from {', '.join(PROBE_FAMILIES)})")
    return PROBE_FAMILIES[name]


def dirichlet_counts(rng: np.random.Generator, k: int, total: int) -> list[int]:
    """Per-task example counts with proportions drawn from a flat Dirichlet(1, ..., 1) over
    ``k`` tasks, summing to ``total``, every task at least once: one each, the other
    ``total - k`` split by the drawn proportions (largest remainders get the leftovers)."""
    if total < k:
        raise ValueError(f"{total} examples cannot give each of {k} tasks one")
    share = rng.dirichlet(np.ones(k)) * (total - k)
    counts = np.floor(share).astype(int)
    left = total - k - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:left]] += 1
    return (counts + 1).tolist()


def make_prompt(family: Family, rng: np.random.Generator, *, examples_per_task: int = 20,
                tasks: Sequence[str] | None = None, counts: Sequence[int] | None = None) -> Prompt:
    """One prompt: ``examples_per_task`` examples of each task (distinct inputs), shuffled,
    then the query (an input not used by any example). ``counts`` (one per task), when
    given, sets each task's number of examples instead."""
    tasks = tuple(tasks or family.tasks)
    if counts is None:
        counts = [examples_per_task] * len(tasks)
    if len(counts) != len(tasks) or min(counts) < 0:
        raise ValueError(f"counts must give a non-negative count for each of the {len(tasks)} tasks")
    pool = family.inputs()
    n = int(sum(counts)) + 1
    if n > len(pool):
        raise ValueError(f"{family.name}: {n} distinct inputs needed, {len(pool)} available")
    picked = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    query, examples = picked[-1], picked[:-1]
    labels = [t for t, c in zip(tasks, counts) for _ in range(int(c))]
    order = rng.permutation(len(labels))
    lines = []
    ex_tasks = []
    for x, i in zip(examples, order):
        t = labels[i]
        ex_tasks.append(t)
        lines.append(f"{family.render(x)}{family.sep}{family.answer(t, x)}")
    text = "\n".join(lines) + "\n" + family.render(query) + family.sep
    return Prompt(family=family.name, text=text, query=family.render(query),
                  answers=tuple(family.answer(t, query) for t in family.tasks),
                  proportions=tuple(ex_tasks.count(t) / len(ex_tasks) for t in family.tasks),
                  example_tasks=tuple(ex_tasks))


def make_prompts(family: Family | str, n: int, *, seed: int = 0, examples_per_task: int = 20,
                 skewed: bool = False, total_examples: int | None = None) -> list[Prompt]:
    """``n`` prompts from one numpy Generator seeded with ``seed`` (same seed, same prompts).

    ``skewed``: each prompt's per-task example counts come from :func:`dirichlet_counts`
    (drawn from the same generator, before the prompt), ``total_examples`` in all (default
    ``examples_per_task * K``); ``Prompt.proportions`` holds the realised proportions. The
    default gives every task ``examples_per_task`` examples.
    """
    fam = get_family(family) if isinstance(family, str) else family
    rng = np.random.default_rng(seed)
    if not skewed:
        if total_examples is not None:
            raise ValueError("total_examples is for skewed prompts (use examples_per_task)")
        return [make_prompt(fam, rng, examples_per_task=examples_per_task) for _ in range(n)]
    total = examples_per_task * len(fam.tasks) if total_examples is None else int(total_examples)
    return [make_prompt(fam, rng, counts=dirichlet_counts(rng, len(fam.tasks), total)) for _ in range(n)]
