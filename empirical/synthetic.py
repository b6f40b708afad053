"""In-context task families for training from scratch (docs/theory.md section 6, Fig. 3).

Three families, each a plain entry of :data:`FAMILIES`; a task is named ``"family:h"``:

* ``copy:h`` (retrieval, the paper's): x is 8 distinct random lower-case letters,
  y = x[h], h in 0..7; an example is written ``abcdefgh>c`` and a newline.
* ``add:h`` (addition, the paper's): x is a digit 0..9, y = (x + h) mod 10, h in 0..9; an
  example is written ``x>y`` and a newline.
* ``lookup:k`` (the construction's own tasks): task k of a :class:`construction.TaskSet`
  (default: ``construction.default_task_set()``, the task set of ``superpose verify``; or any
  task file), on the construction's token layout: an example is its n-1 input symbols then
  its label, nothing between, so a prompt is exactly what ``construct(...)`` reads
  (``construction.prompts``, ``construction.layout.Layout``).

The character families share the vocabulary :data:`VOCAB` and start every sequence with a
newline (a beginning-of-sequence token, so that every example follows a newline). A
*training sequence* holds ``n_examples`` examples that all share ONE task, drawn per
sequence; the loss covers the answers (and the newlines after them, where the family has
them). A *mixed prompt* holds ``n_examples`` examples whose tasks are drawn i.i.d. from given
proportions, then a query (its inputs, and ``>`` for the character families): the model's
next-token distribution at the last position is read against every task's answer.

Everything takes an explicit :class:`numpy.random.Generator` (:func:`generator` turns an
int seed, a sequence of ints or a ``jax.random`` key into one) and is vectorised over the
batch and the examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from construction.tasks import TaskSet, default_task_set

#: The character vocabulary of the ``copy`` and ``add`` families (token id = index).
VOCAB = "\n>0123456789abcdefghijklmnopqrstuvwxyz"
VOCAB_SIZE = len(VOCAB)
NEWLINE = VOCAB.index("\n")
SEP = VOCAB.index(">")
DIGIT0 = VOCAB.index("0")
LETTER_A = VOCAB.index("a")
_CHAR_TO_ID = {ch: i for i, ch in enumerate(VOCAB)}


def encode(text: str) -> np.ndarray:
    """Token ids of ``text``; raises ValueError naming the first character outside the vocabulary."""
    try:
        return np.array([_CHAR_TO_ID[ch] for ch in text], dtype=np.int32)
    except KeyError as err:
        raise ValueError(f"character {err.args[0]!r} is not in the vocabulary {VOCAB!r}") from None


def decode(tokens) -> str:
    """The text of a 1-D array of character token ids."""
    return "".join(VOCAB[int(t)] for t in np.asarray(tokens).reshape(-1))


def generator(seed) -> np.random.Generator:
    """A numpy Generator from an int, a sequence of ints, a Generator, or a ``jax.random`` key."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) or (isinstance(seed, Sequence) and not isinstance(seed, str)):
        return np.random.default_rng(seed)
    import jax  # only for keys

    if hasattr(seed, "dtype") and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        seed = jax.random.key_data(seed)
    words = np.asarray(seed, dtype=np.uint32).reshape(-1)
    return np.random.default_rng([int(w) for w in words])


# --------------------------------------------------------------------------- the families


def _copy_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # 8 distinct letters per example: the first 8 of a random permutation of the 26 letters.
    keys = rng.random((*shape, 26))
    return (np.argpartition(keys, 8, axis=-1)[..., :8] + LETTER_A).astype(np.int32)


def _copy_answers(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.take_along_axis(x, np.asarray(h)[..., None], axis=-1)[..., 0]


def _add_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.integers(0, 10, size=(*shape, 1)) + DIGIT0).astype(np.int32)


def _add_answers(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    return ((x[..., 0] - DIGIT0 + np.asarray(h)) % 10 + DIGIT0).astype(np.int32)


@dataclass(frozen=True, eq=False)
class Family:
    """A task family: inputs of ``input_len`` tokens, tasks indexed by ``h`` in ``params``.

    An example is its inputs, then ``sep`` (if any), the answer, then ``end`` (if any); a
    sequence starts with ``bos`` (if any). ``task_names`` name the tasks for people.
    """

    name: str
    input_len: int
    params: tuple[int, ...]
    sample_inputs: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
    answers: Callable[[np.ndarray, np.ndarray], np.ndarray]
    description: str
    vocab_size: int = VOCAB_SIZE
    bos: int | None = NEWLINE
    sep: int | None = SEP
    end: int | None = NEWLINE
    task_names: tuple[str, ...] = ()
    #: the task set of a ``lookup`` family (None for the character families).
    task_set: TaskSet | None = field(default=None, repr=False)

    @property
    def example_len(self) -> int:
        """Tokens per example: the inputs, the separator, the answer, the terminator."""
        return self.input_len + (self.sep is not None) + 1 + (self.end is not None)

    @property
    def answer_offset(self) -> int:
        """Offset of the answer inside an example."""
        return self.input_len + (self.sep is not None)

    @property
    def lead(self) -> int:
        """Tokens before the first example (the beginning-of-sequence token, if any)."""
        return int(self.bos is not None)

    @property
    def chars(self) -> bool:
        """True for the character families (their tokens print as text)."""
        return self.task_set is None

    def task(self, h: int) -> str:
        """The canonical name ``family:h`` of task h."""
        return f"{self.name}:{h}"

    def task_label(self, h: int) -> str:
        """A name for people: ``copy:2``, or the lookup task's own name (``lookup:0 (copy x0)``)."""
        names = dict(zip(self.params, self.task_names))
        return f"{self.task(h)} ({names[h]})" if h in names else self.task(h)

    def render(self, tokens) -> str:
        """Tokens as text (character families) or as space-separated symbols (lookup)."""
        if self.chars:
            return decode(tokens)
        return " ".join(str(int(t)) for t in np.asarray(tokens).reshape(-1))

    def restrict(self, params: Sequence[int]) -> "Family":
        """The same family with only the tasks ``params`` (a training curriculum's stage)."""
        params = tuple(int(h) for h in params)
        unknown = [h for h in params if h not in self.params]
        if unknown or not params:
            raise ValueError(f"{self.name}: tasks must be a non-empty subset of {list(self.params)}, got {list(params)}")
        return _replace(self, params=params)

    def __eq__(self, other):
        return isinstance(other, Family) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    @cached_property
    def _key(self):
        return (self.name, self.params, self.task_set)


def _replace(fam: Family, **changes) -> Family:
    from dataclasses import replace

    return replace(fam, **changes)


def lookup_family(task_set: TaskSet | None = None, name: str = "lookup") -> Family:
    """The family of a construction :class:`~construction.TaskSet` on the construction's layout.

    Task k is ``task_set.tasks[k]``; inputs are n-1 uniform symbols of the task set's
    vocabulary; an example is the inputs then the label, with no separator, terminator or
    beginning-of-sequence token, exactly as ``construction.sample_prompts`` lays them out.
    """
    ts = default_task_set() if task_set is None else task_set
    tables = np.array([t.table for t in ts.tasks], dtype=np.int32)  # [K, V]
    positions = np.array([t.position for t in ts.tasks], dtype=np.int64)  # [K]
    n_in = ts.example_len - 1

    def sample_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(0, ts.vocab_size, size=(*shape, n_in)).astype(np.int32)

    def answers(x: np.ndarray, h: np.ndarray) -> np.ndarray:
        h = np.broadcast_to(np.asarray(h), x.shape[:-1])
        read = np.take_along_axis(x, positions[h][..., None], axis=-1)[..., 0]
        return tables[h, read].astype(np.int32)

    return Family(
        name=name,
        input_len=n_in,
        params=tuple(range(len(ts.tasks))),
        sample_inputs=sample_inputs,
        answers=answers,
        description=f"the construction's tasks {list(ts.names)} on {ts.vocab_size} symbols, examples of "
        f"{n_in} inputs and a label",
        vocab_size=ts.vocab_size,
        bos=None,
        sep=None,
        end=None,
        task_names=ts.names,
        task_set=ts,
    )


#: The task registry: family name -> :class:`Family`. A task is named ``"family:h"``.
FAMILIES: dict[str, Family] = {
    "copy": Family(
        name="copy",
        input_len=8,
        params=tuple(range(8)),
        sample_inputs=_copy_inputs,
        answers=_copy_answers,
        description="x = 8 distinct random letters, y = x[h]; e.g. 'abcdefgh>c' for h=2",
    ),
    "add": Family(
        name="add",
        input_len=1,
        params=tuple(range(10)),
        sample_inputs=_add_inputs,
        answers=_add_answers,
        description="x in 0..9, y = (x + h) mod 10; e.g. '7>0' for h=3",
    ),
    "lookup": lookup_family(),
}


def family(name: str, task_set: TaskSet | None = None) -> Family:
    """The family ``name``; for ``lookup``, ``task_set`` replaces the default task set."""
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; known: {', '.join(FAMILIES)}")
    if task_set is not None:
        if name != "lookup":
            raise ValueError(f"only the lookup family takes a task set, not {name!r}")
        return lookup_family(task_set)
    return FAMILIES[name]


def parse_task(name: str, task_set: TaskSet | None = None) -> tuple[Family, int]:
    """``"copy:2"`` -> (the copy family, 2); raises ValueError with one clear line otherwise."""
    fam_name, sep, h_text = name.strip().partition(":")
    fam = family(fam_name, task_set if fam_name == "lookup" else None)
    if not sep or not h_text.strip().lstrip("-").isdigit():
        raise ValueError(f"task {name!r} is not of the form family:h (e.g. copy:2)")
    h = int(h_text)
    if h not in fam.params:
        raise ValueError(f"task {name!r}: h must be one of {list(fam.params)}")
    return fam, h


def parse_tasks(text: str | Sequence[str], task_set: TaskSet | None = None) -> tuple[Family, list[int]]:
    """``"copy:2,copy:6"`` -> (copy family, [2, 6]); all tasks must share one family and differ."""
    names = [t for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if len(names) < 2:
        raise ValueError(f"need at least two tasks separated by commas, got {text!r}")
    parsed = [parse_task(n, task_set) for n in names]
    fams = {f.name for f, _ in parsed}
    if len(fams) != 1:
        raise ValueError(f"tasks must share one family, got {sorted(fams)}")
    hs = [h for _, h in parsed]
    if len(set(hs)) != len(hs):
        raise ValueError(f"tasks must be distinct, got {names}")
    return parsed[0][0], hs


# --------------------------------------------------------------------------- sequences


def _write_examples(fam: Family, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[..., m, input_len] inputs and [..., m] answers -> [..., m * example_len] tokens."""
    lead = x.shape[:-1]
    parts = [x]
    if fam.sep is not None:
        parts.append(np.full((*lead, 1), fam.sep, np.int32))
    parts.append(y[..., None].astype(np.int32))
    if fam.end is not None:
        parts.append(np.full((*lead, 1), fam.end, np.int32))
    ex = np.concatenate(parts, axis=-1).astype(np.int32)
    return ex.reshape(*lead[:-1], lead[-1] * fam.example_len)


def _with_bos(fam: Family, body: np.ndarray) -> np.ndarray:
    if fam.bos is None:
        return body
    return np.concatenate([np.full((body.shape[0], 1), fam.bos, np.int32), body], axis=1)


def sequence_length(fam: Family, n_examples: int) -> int:
    """Tokens of a training sequence: the beginning-of-sequence token (if any) and the examples."""
    return fam.lead + n_examples * fam.example_len


def prompt_length(fam: Family, n_examples: int) -> int:
    """Tokens of a prompt: the leading token, ``n_examples`` examples, the query up to its answer."""
    return fam.lead + n_examples * fam.example_len + fam.answer_offset


def answer_positions(fam: Family, n_examples: int) -> np.ndarray:
    """[n_examples] positions in a training sequence's *targets* (``tokens[:, 1:]``) of each
    example's answer, i.e. the positions whose prediction is that answer."""
    return fam.lead - 1 + np.arange(n_examples) * fam.example_len + fam.answer_offset


@dataclass(frozen=True, kw_only=True)
class Mixing:
    """How training sequences mix tasks (docs/theory.md section 7); the default is one task per sequence.

    ``p_mix``: the share of sequences that mix tasks. A mixed sequence draws ``k`` tasks
    (uniform in ``tasks[0]..tasks[1]``, at most the tasks available) without replacement,
    weights ``w ~ Dirichlet(concentration)`` over them, and each example's task from ``w``.
    ``label_noise``: the share of the single-task sequences' labels replaced by a random answer
    (the answer of a random task to a random input: uniform over the family's answers).
    ``soft``: also return soft targets, the Dirichlet-multinomial posterior predictive of each
    answer given the examples before it, ``(n_k + a) / (i + k a)`` over the sequence's tasks,
    spread over those tasks' answers to the example's input (a single-task sequence: one-hot).
    """

    p_mix: float = 0.0
    concentration: float = 1.0
    tasks: tuple[int, int] = (2, 2)
    label_noise: float = 0.0
    soft: bool = False

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(int(t) for t in self.tasks))
        problems = []
        if not 0.0 <= self.p_mix <= 1.0:
            problems.append(f"p_mix must lie in [0, 1], got {self.p_mix}")
        if not self.concentration > 0:
            problems.append(f"the Dirichlet concentration must be > 0, got {self.concentration}")
        if len(self.tasks) != 2 or not 1 <= self.tasks[0] <= self.tasks[1]:
            problems.append(f"tasks per mixed sequence must be a range (lo, hi) with 1 <= lo <= hi, got {self.tasks}")
        if not 0.0 <= self.label_noise < 1.0:
            problems.append(f"label_noise must lie in [0, 1), got {self.label_noise}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def plain(self) -> bool:
        """True when batches are exactly the one-task-per-sequence batches."""
        return self.p_mix == 0 and self.label_noise == 0 and not self.soft


def _layout_masks(fam: Family, length: int) -> tuple[np.ndarray, np.ndarray]:
    """[T] flags of a training sequence's answers and of the terminators after them."""
    offset = (np.arange(length) - fam.lead) % fam.example_len
    body = np.arange(length) >= fam.lead
    is_answer = body & (offset == fam.answer_offset)
    is_end = body & (offset == fam.answer_offset + 1) & (fam.end is not None)
    return is_answer, is_end


def _mixed_tasks(fam: Family, rng: np.random.Generator, rows: int, n_examples: int,
                 mixing: Mixing) -> tuple[np.ndarray, np.ndarray]:
    """Per-example tasks [rows, m] of mixed sequences and each row's task subset [rows, K]
    (-1 beyond the row's ``k`` tasks)."""
    params = np.asarray(fam.params)
    hi = min(mixing.tasks[1], len(params))
    lo = min(mixing.tasks[0], hi)
    k = rng.integers(lo, hi + 1, size=rows)
    order = np.argsort(rng.random((rows, len(params))), axis=1)  # a random subset: the first k of a permutation
    subset = np.where(np.arange(len(params)) < k[:, None], params[order], -1)
    gamma = rng.standard_gamma(mixing.concentration, size=(rows, len(params)))
    gamma = np.where(subset >= 0, gamma, 0.0)
    total = gamma.sum(axis=1, keepdims=True)
    w = np.where(total > 0, gamma / np.where(total > 0, total, 1.0), (subset >= 0) / k[:, None])
    u = rng.random((rows, n_examples, 1))
    pick = (u > np.cumsum(w, axis=1)[:, None, :-1]).sum(axis=-1)  # inverse CDF per example
    pick = np.minimum(pick, k[:, None] - 1)  # rounding must not reach past the row's k tasks
    return np.take_along_axis(subset, pick, axis=1), subset


def _soft_answers(fam: Family, x: np.ndarray, example_task: np.ndarray, subset: np.ndarray,
                  concentration: float) -> np.ndarray:
    """[B, m, V] posterior predictive of each example's answer given the examples before it."""
    rows, m = example_task.shape
    valid = subset >= 0  # [B, K]
    counts = np.cumsum(example_task[:, :, None] == subset[:, None, :], axis=1)  # [B, m, K] up to and incl. i
    before = counts - (example_task[:, :, None] == subset[:, None, :])
    k = valid.sum(axis=1)[:, None, None]
    share = np.where(valid[:, None, :], before + concentration, 0.0) / (np.arange(m)[None, :, None] + k * concentration)
    soft = np.zeros((rows, m, fam.vocab_size), np.float32)
    b_idx, i_idx = np.meshgrid(np.arange(rows), np.arange(m), indexing="ij")
    for j in range(subset.shape[1]):
        h = np.where(valid[:, j], subset[:, j], fam.params[0])[:, None].repeat(m, axis=1)
        np.add.at(soft, (b_idx, i_idx, fam.answers(x, h)), share[:, :, j].astype(np.float32))
    return soft


def training_batch(fam: Family, rng: np.random.Generator, batch: int, n_examples: int,
                   mixing: Mixing | None = None) -> dict[str, np.ndarray]:
    """``batch`` training sequences of ``n_examples`` examples, each sharing one task (or, with
    ``mixing``, a share of them mixing tasks: :class:`Mixing`).

    Returns ``tokens`` [B, T] (T = :func:`sequence_length`), ``mask`` [B, T] (1 on the tokens
    the loss covers: answers, and the terminators after them), ``answer_mask`` [B, T] (1 on
    answers only), ``task`` [B] (h; -1 for a mixed sequence) and ``example_task`` [B, m] (each
    example's task); with ``mixing.soft`` also ``soft`` [B, T, V] (the target distribution of
    every position: one-hot but at the answers). The model reads ``tokens[:, :-1]`` and
    predicts ``tokens[:, 1:]`` where ``mask[:, 1:]``. Without mixing (or ``Mixing()``) the
    random draws, and so the batches, are those of one task per sequence.
    """
    mixing = mixing or Mixing()
    h = rng.choice(np.asarray(fam.params), size=batch)
    x = fam.sample_inputs(rng, (batch, n_examples))
    example_task = np.repeat(h[:, None], n_examples, axis=1)
    subset = np.full((batch, len(fam.params)), -1)
    subset[:, 0] = h
    if mixing.p_mix > 0:
        mixed = rng.random(batch) < mixing.p_mix
        if mixed.any():
            example_task[mixed], subset[mixed] = _mixed_tasks(fam, rng, int(mixed.sum()), n_examples, mixing)
            h = np.where(mixed, -1, h)
    y = fam.answers(x, example_task)
    if mixing.label_noise > 0:
        noisy = (rng.random((batch, n_examples)) < mixing.label_noise) & (h[:, None] >= 0)
        random = fam.answers(fam.sample_inputs(rng, (batch, n_examples)),
                             rng.choice(np.asarray(fam.params), size=(batch, n_examples)))
        y = np.where(noisy, random, y)
    tokens = _with_bos(fam, _write_examples(fam, x, y))
    is_answer, is_end = _layout_masks(fam, tokens.shape[1])
    mask = np.broadcast_to(is_answer | is_end, tokens.shape).astype(np.float32)
    answer_mask = np.broadcast_to(is_answer, tokens.shape).astype(np.float32)
    out = {"tokens": tokens, "mask": mask, "answer_mask": answer_mask, "task": h.astype(np.int32),
           "example_task": example_task.astype(np.int32)}
    if mixing.soft:
        soft = np.eye(fam.vocab_size, dtype=np.float32)[tokens]
        soft[:, is_answer] = _soft_answers(fam, x, example_task, subset, mixing.concentration)
        out["soft"] = soft
    return out


def draw_queries(fam: Family, rng: np.random.Generator, tasks: Sequence[int], n: int, *,
                 max_tries: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``n`` queries [n, input_len] whose answers under ``tasks`` all differ, and those answers
    [n, K] (a query is redrawn until they do; the authors' ``force_unique_prompts``)."""
    tasks = np.asarray(tasks, dtype=np.int64)
    query = fam.sample_inputs(rng, (n,))
    for _ in range(max_tries):
        answers = np.stack([fam.answers(query, np.full(n, h)) for h in tasks], axis=1)
        srt = np.sort(answers, axis=1)
        clash = np.any(srt[:, 1:] == srt[:, :-1], axis=1)
        if not clash.any():
            return query, answers.astype(np.int32)
        query[clash] = fam.sample_inputs(rng, (int(clash.sum()),))
    raise ValueError(f"tasks {[fam.task(int(h)) for h in tasks]} give the same answer to every query tried")


def mixed_prompts(
    fam: Family,
    rng: np.random.Generator,
    n_prompts: int,
    n_examples: int,
    tasks: Sequence[int],
    proportions: Sequence[float],
    *,
    max_tries: int = 1000,
) -> dict[str, np.ndarray]:
    """Evaluation prompts whose examples' tasks are drawn i.i.d. with the given proportions.

    Each prompt is the leading token, ``n_examples`` examples, then the query's inputs (and
    ``>``), :func:`prompt_length` tokens; the prediction is read at the last position. The
    query is redrawn until the tasks' answers to it are all different (so that each answer
    belongs to one task; the authors' ``force_unique_prompts``). Returns ``tokens`` [P, L],
    ``example_task`` [P, m] (indices into ``tasks``), ``answers`` [P, K] (every task's answer
    to the query, in the order of ``tasks``) and ``query`` [P, input_len].
    """
    tasks = np.asarray(tasks, dtype=np.int64)
    p = np.asarray(proportions, dtype=np.float64)
    if p.shape != tasks.shape or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"proportions {list(p)} must be non-negative, sum to 1 and match the {len(tasks)} tasks")
    if n_examples < 0 or n_prompts < 1:
        raise ValueError(f"need n_prompts >= 1 and n_examples >= 0, got {n_prompts} and {n_examples}")
    which = rng.choice(len(tasks), size=(n_prompts, n_examples), p=p / p.sum())
    x = fam.sample_inputs(rng, (n_prompts, n_examples))
    y = fam.answers(x, tasks[which])
    query, answers = draw_queries(fam, rng, tasks, n_prompts, max_tries=max_tries)
    parts = [_with_bos(fam, _write_examples(fam, x, y)), query]
    if fam.sep is not None:
        parts.append(np.full((n_prompts, 1), fam.sep, np.int32))
    tokens = np.concatenate(parts, axis=1).astype(np.int32)
    return {"tokens": tokens, "example_task": which.astype(np.int32), "answers": answers.astype(np.int32), "query": query}
