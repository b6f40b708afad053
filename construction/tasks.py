"""Tasks of docs/theory.md section 2: an input position p and a map T, with g(x) = T(x_p).

Discrete regime: ``T`` is a table on the vocabulary (``table[v]`` is the image of symbol v).
Continuous regime: ``T`` is a d x d matrix acting on token vectors. Positions count from 0,
so a task of an example of length n reads one of the inputs 0..n-2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def _symbol(value, task: str) -> int:
    """A table entry as an int; anything but an integer (or an integral float) is an error."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"task {task!r}: table entries must be integer symbols, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class LookupTask:
    """g(x) = table[x[position]]: any map on the vocabulary, applied to one input symbol."""

    position: int
    table: tuple[int, ...]
    name: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", f"lookup@{self.position}")
        object.__setattr__(self, "table", tuple(_symbol(v, self.name) for v in self.table))
        if self.position < 0:
            raise ValueError(f"task {self.name!r}: position must be >= 0, got {self.position}")
        vocab = len(self.table)
        if vocab < 1:
            raise ValueError(f"task {self.name!r}: the table is empty")
        bad = [v for v in self.table if not 0 <= v < vocab]
        if bad:
            raise ValueError(
                f"task {self.name!r}: the table is not a map on the vocabulary of {vocab} symbols "
                f"(image {bad[0]} is outside 0..{vocab - 1})"
            )

    @property
    def vocab_size(self) -> int:
        return len(self.table)

    @property
    def matrix(self) -> np.ndarray:
        """The 0/1 matrix M with M[T(v), v] = 1, so that M @ onehot(v) = onehot(T(v))."""
        m = np.zeros((self.vocab_size, self.vocab_size))
        m[np.asarray(self.table), np.arange(self.vocab_size)] = 1.0
        return m

    def apply(self, inputs: np.ndarray) -> np.ndarray:
        """g on inputs [..., n-1] of symbols: returns symbols [...]."""
        return np.asarray(self.table)[np.asarray(inputs)[..., self.position]]


@dataclass(frozen=True, kw_only=True)
class LinearTask:
    """g(x) = matrix @ x[position] on token vectors (the continuous regime)."""

    position: int
    matrix: np.ndarray = field(repr=False)
    name: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", f"linear@{self.position}")
        m = np.array(self.matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
            raise ValueError(f"task {self.name!r}: the matrix must be square d x d, got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError(f"task {self.name!r}: the matrix has non-finite entries")
        if self.position < 0:
            raise ValueError(f"task {self.name!r}: position must be >= 0, got {self.position}")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    @property
    def vocab_size(self) -> int:
        """The token dimension d (the continuous regime's 'vocabulary' is R^d)."""
        return self.matrix.shape[0]

    def apply(self, inputs: np.ndarray) -> np.ndarray:
        """g on inputs [..., n-1, d]: returns vectors [..., d]."""
        return np.asarray(inputs, dtype=np.float64)[..., self.position, :] @ self.matrix.T

    def __eq__(self, other):
        return (
            isinstance(other, LinearTask)
            and (self.position, self.name) == (other.position, other.name)
            and np.array_equal(self.matrix, other.matrix)
        )

    def __hash__(self):
        return hash((self.position, self.name, self.matrix.tobytes()))


Task = LookupTask | LinearTask


def lookup_task(position: int, table: Sequence[int], *, name: str = "") -> LookupTask:
    """A discrete task: g(x) = table[x[position]], for any map ``table`` on the vocabulary."""
    return LookupTask(position=position, table=tuple(table), name=name)


def retrieval_task(position: int, vocab_size: int, *, name: str = "") -> LookupTask:
    """Copy the input at ``position`` (T = identity)."""
    return lookup_task(position, range(vocab_size), name=name or f"copy@{position}")


def shift_task(position: int, h: int, vocab_size: int, *, name: str = "") -> LookupTask:
    """Add ``h`` modulo the vocabulary size to the input at ``position``."""
    return lookup_task(position, [(v + h) % vocab_size for v in range(vocab_size)], name=name or f"add{h}@{position}")


def continuous_task(position: int, matrix, *, name: str = "") -> LinearTask:
    """A continuous task: g(x) = matrix @ x[position]."""
    return LinearTask(position=position, matrix=np.asarray(matrix), name=name)


def regime_of(tasks: Sequence[Task]) -> str:
    """'discrete' or 'continuous'; raises if the tasks mix regimes or there are none."""
    if not tasks:
        raise ValueError("need at least one task")
    kinds = {type(t) for t in tasks}
    if kinds == {LookupTask}:
        return "discrete"
    if kinds == {LinearTask}:
        return "continuous"
    raise ValueError("tasks mix the discrete (lookup) and continuous (linear) regimes")


def validate_tasks(tasks: Sequence[Task], *, vocab_size: int, example_len: int) -> str:
    """Check the tasks against the vocabulary and example length; return their regime."""
    regime = regime_of(tasks)
    if example_len < 2:
        raise ValueError(f"example_len must be >= 2 (at least one input and the label), got {example_len}")
    for t in tasks:
        if t.position > example_len - 2:
            raise ValueError(
                f"task {t.name!r}: position {t.position} is outside the example's inputs 0..{example_len - 2}"
            )
        if t.vocab_size != vocab_size:
            what = "table has" if regime == "discrete" else "matrix acts on"
            raise ValueError(f"task {t.name!r}: its {what} {t.vocab_size} symbols, but vocab_size={vocab_size}")
    return regime


def tasks_from_json(data: dict) -> tuple[list[LookupTask], int, int]:
    """Parse ``{"vocab_size": V, "example_len": n, "tasks": [{"name", "position", "table"}]}``."""
    ts = TaskSet.from_json(data)
    return list(ts.tasks), ts.vocab_size, ts.example_len


@dataclass(frozen=True, kw_only=True)
class TaskSet:
    """Discrete tasks with their vocabulary and example length: the content of a task file
    (``superpose verify --tasks-file``), shared by the construction and the ``lookup``
    training family so that both read identical prompts. Hashable; ``to_json`` gives the file."""

    vocab_size: int
    example_len: int
    tasks: tuple[LookupTask, ...]

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            raise ValueError("a task set needs at least one task")
        if any(not isinstance(t, LookupTask) for t in self.tasks):
            raise ValueError("a task set holds discrete (lookup) tasks only")
        validate_tasks(self.tasks, vocab_size=self.vocab_size, example_len=self.example_len)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def to_json(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "example_len": self.example_len,
            "tasks": [{"name": t.name, "position": t.position, "table": list(t.table)} for t in self.tasks],
        }

    @classmethod
    def from_json(cls, data: dict) -> "TaskSet":
        """Parse a task file's content; every problem is one ValueError naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"a task file holds a JSON object, got {type(data).__name__}")
        try:
            vocab, n = int(data["vocab_size"]), int(data["example_len"])
            if not isinstance(data["tasks"], list):
                raise TypeError(f"'tasks' must be a list, got {type(data['tasks']).__name__}")
            tasks = [lookup_task(int(t["position"]), t["table"], name=str(t.get("name", ""))) for t in data["tasks"]]
        except KeyError as e:
            raise ValueError(f"task file is missing the field {e.args[0]!r}") from None
        except (TypeError, AttributeError) as e:
            raise ValueError(f"task file is malformed: {e}") from None
        return cls(vocab_size=vocab, example_len=n, tasks=tuple(tasks))


#: The default task set of ``superpose verify`` and of the ``lookup`` training family: two
#: retrievals and one shift on 10 symbols, examples of 4 inputs and a label.
DEFAULT_VOCAB, DEFAULT_EXAMPLE_LEN = 10, 5


def default_tasks(vocab: int = DEFAULT_VOCAB) -> list[LookupTask]:
    return [retrieval_task(0, vocab, name="copy x0"), retrieval_task(2, vocab, name="copy x2"),
            shift_task(1, 3, vocab, name="x1 + 3")]


def default_task_set() -> TaskSet:
    return TaskSet(vocab_size=DEFAULT_VOCAB, example_len=DEFAULT_EXAMPLE_LEN, tasks=tuple(default_tasks()))
