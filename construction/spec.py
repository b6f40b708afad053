"""What a construction is built from, and the named spaces it lays out.

:class:`ConstructionSpec` is the frozen configuration of Theorem 1's transformer; everything
else (the residual subspaces, head spaces, hidden spaces, the width formula) derives from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from construction.layout import code_bits
from construction.subspaces import Subspaces
from construction.tasks import LinearTask, Task, validate_tasks

#: The seven layers' roles, in order (docs/theory.md section 4).
ROLES = ("task heads", "error", "indicator", "averaging", "query heads", "weighting", "readout")
NUM_LAYERS = len(ROLES)

DEFAULT_BETA = 30.0


def width_formula(num_tasks: int, vocab_size: int, max_examples: int, example_len: int, regime: str) -> int:
    """D(K, V or d, M, n): the residual width of the construction.

    Discrete: ``(2K + 3) V + 3K + b + n + 3``; continuous: ``(2K + 2) d + 3K + b + n + 3``, with
    ``b = ceil(log2(M + 1))`` code bits. The blocks: token (V), one, code (b), offset (n),
    is_label, is_query_last, G_k (V each), E_k, C_k, S_k (1 each), Q_k (V each), OUT (V) and,
    in the discrete regime only, LOGITS (V).
    """
    extra = 3 if regime == "discrete" else 2
    return (2 * num_tasks + extra) * vocab_size + 3 * num_tasks + code_bits(max_examples) + example_len + 3


@dataclass(frozen=True, kw_only=True)
class ConstructionSpec:
    """The configuration of a Theorem 1 construction (see :func:`construction.construct`)."""

    tasks: tuple[Task, ...]
    vocab_size: int
    example_len: int
    max_examples: int
    beta: float = DEFAULT_BETA
    regime: str = "discrete"
    delta: float = 1.0
    token_bound: float = 1.0
    product_pieces: int = 64
    log_floor: float = 1e-4
    log_pieces: int = 64
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.regime not in ("discrete", "continuous"):
            raise ValueError(f"regime must be 'discrete' or 'continuous', got {self.regime!r}")
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {self.vocab_size}")
        found = validate_tasks(self.tasks, vocab_size=self.vocab_size, example_len=self.example_len)
        if found != self.regime:
            raise ValueError(f"regime={self.regime!r} but the tasks are {found}")
        if self.max_examples < 1:
            raise ValueError(f"max_examples must be >= 1, got {self.max_examples}")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta (attention sharpness) must be positive and finite, got {self.beta}")
        if self.regime == "continuous":
            if not self.delta > 0:
                raise ValueError(f"the margin delta must be > 0, got {self.delta}")
            if not self.token_bound > 0:
                raise ValueError(f"token_bound B must be > 0, got {self.token_bound}")
            if self.product_pieces < 1:
                raise ValueError(f"product_pieces must be >= 1, got {self.product_pieces}")
        else:
            if self.delta != 1.0:
                raise ValueError("delta is the continuous regime's margin; the discrete regime uses 1")
            if not 0 < self.log_floor <= 1.0 / self.max_examples:
                raise ValueError(
                    f"log_floor must lie in (0, 1/max_examples] = (0, {1.0 / self.max_examples:g}] so that every "
                    f"task weight is above it, got {self.log_floor}"
                )
            if self.log_pieces < 1:
                raise ValueError(f"log_pieces must be >= 1, got {self.log_pieces}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    # ----- derived sizes -------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def code_bits(self) -> int:
        return code_bits(self.max_examples)

    @property
    def discrete(self) -> bool:
        return self.regime == "discrete"

    @property
    def width(self) -> int:
        return width_formula(self.num_tasks, self.vocab_size, self.max_examples, self.example_len, self.regime)

    @cached_property
    def value_bounds(self) -> np.ndarray:
        """R_k: a bound on every entry of g_k(x) (1 for tables; B * max row-sum of |A_k|)."""
        if self.discrete:
            return np.ones(self.num_tasks)
        r = np.array([self.token_bound * np.abs(t.matrix).sum(axis=1).max() for t in self.tasks])
        return np.where(r > 0, r, 1.0)

    @property
    def log_ceiling(self) -> float:
        """Top of the readout's log range: y_hat entries are at most sum_k alpha_k <= K."""
        return float(max(self.num_tasks, 1))

    # ----- named spaces --------------------------------------------------------------------
    @cached_property
    def residual(self) -> Subspaces:
        V, K = self.vocab_size, range(self.num_tasks)
        blocks = [
            ("token", V),
            ("one", 1),
            ("code", self.code_bits),
            ("offset", self.example_len),
            ("is_label", 1),
            ("is_query_last", 1),
        ]
        blocks += [(f"G_{k}", V) for k in K]
        blocks += [(f"{role}_{k}", 1) for role in "ECS" for k in K]
        blocks += [(f"Q_{k}", V) for k in K]
        blocks += [("OUT", V)]
        if self.discrete:
            blocks += [("LOGITS", V)]
        space = Subspaces(blocks)
        assert space.dim == self.width, (space.dim, self.width)
        return space

    @cached_property
    def features(self) -> Subspaces:
        """The structured position features (:meth:`construction.layout.Layout.features`)."""
        return Subspaces(
            [("one", 1), ("code", self.code_bits), ("offset", self.example_len), ("is_label", 1), ("is_query_last", 1)]
        )

    @property
    def qk_dim(self) -> int:
        return self.code_bits + self.example_len

    @cached_property
    def task_head_space(self) -> Subspaces:
        """Query/key space of the task heads: the example code and the offset."""
        return Subspaces([("code", self.code_bits), ("offset", self.example_len)])

    @cached_property
    def averaging_head_space(self) -> Subspaces:
        return Subspaces([("label", 1), ("unused", self.qk_dim - 1)])

    @cached_property
    def value_space(self) -> Subspaces:
        return Subspaces([("value", self.vocab_size)])

    @cached_property
    def hidden_spaces(self) -> tuple[Subspaces, ...]:
        """The hidden layer of each of the seven MLPs (empty where a role uses no MLP)."""
        V, K, N = self.vocab_size, range(self.num_tasks), self.product_pieces
        if self.discrete:
            error = [(f"match_{k}", V) for k in K]
            weighting = [(f"product_{k}", V) for k in K]
            readout = [(f"log_{j}", self.log_pieces) for j in range(V)]
        else:
            error = [(f"{sign}_{k}", V) for sign in ("above", "below") for k in K]
            weighting = [(f"square{sign}_{k}_{j}", N) for k in K for j in range(V) for sign in "+-"]
            readout = []
        indicator = [(f"clip_{edge}_{k}", 1) for edge in ("low", "high") for k in K]
        return tuple(Subspaces(b) for b in ([], error, indicator, [], [], weighting, readout))

    def to_dict(self) -> dict:
        """JSON-ready description (tasks as tables or matrices)."""
        tasks = [
            {"name": t.name, "position": t.position, "matrix": t.matrix.tolist()}
            if isinstance(t, LinearTask)
            else {"name": t.name, "position": t.position, "table": list(t.table)}
            for t in self.tasks
        ]
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "tasks"}
        return {"tasks": tasks, **fields, "width": self.width, "code_bits": self.code_bits}
