"""Character-level in-context tasks for training from scratch (THEORY.md section 6, Fig. 3).

Two task families, each a plain entry of :data:`FAMILIES`:

* ``copy:h`` (retrieval): x is 8 distinct random lower-case letters, y = x[h], h in 0..7;
  an example is written ``abcdefgh>c`` and a newline.
* ``add:h`` (addition): x is a digit 0..9, y = (x + h) mod 10, h in 0..9; an example is
  written ``x>y`` and a newline.

Every sequence starts with a newline (it plays the role of a beginning-of-sequence token, so
that every example, the first included, follows a newline). A *training sequence* holds
``n_examples`` examples that all share ONE task, drawn per sequence; the loss covers the
answer characters and the newlines only. A *mixed prompt* holds ``n_examples`` examples whose
tasks are drawn i.i.d. from given proportions, then a query ``x>``: the model's next-token
distribution at the final ``>`` is read against every task's answer.

Everything takes an explicit :class:`numpy.random.Generator` (:func:`generator` turns an
int seed, a sequence of ints or a ``jax.random`` key into one) and is vectorised over the
batch and the examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: The fixed character vocabulary shared by every family (token id = index in this string).
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
    """The text of a 1-D array of token ids."""
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


@dataclass(frozen=True)
class Family:
    """A task family: inputs of ``input_len`` characters, tasks indexed by ``h`` in ``params``."""

    name: str
    input_len: int
    params: tuple[int, ...]
    sample_inputs: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
    answers: Callable[[np.ndarray, np.ndarray], np.ndarray]
    description: str

    @property
    def example_len(self) -> int:
        """Characters per example: the inputs, ``>``, the answer, the newline."""
        return self.input_len + 3


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
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def parse_task(name: str) -> tuple[Family, int]:
    """``"copy:2"`` -> (the copy family, 2); raises ValueError with one clear line otherwise."""
    fam_name, sep, h_text = name.strip().partition(":")
    fam = family(fam_name)
    if not sep or not h_text.strip().lstrip("-").isdigit():
        raise ValueError(f"task {name!r} is not of the form family:h (e.g. copy:2)")
    h = int(h_text)
    if h not in fam.params:
        raise ValueError(f"task {name!r}: h must be one of {list(fam.params)}")
    return fam, h


def parse_tasks(text: str | Sequence[str]) -> tuple[Family, list[int]]:
    """``"copy:2,copy:6"`` -> (copy family, [2, 6]); all tasks must share one family and differ."""
    names = [t for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if len(names) < 2:
        raise ValueError(f"need at least two tasks separated by commas, got {text!r}")
    parsed = [parse_task(n) for n in names]
    fams = {f.name for f, _ in parsed}
    if len(fams) != 1:
        raise ValueError(f"tasks must share one family, got {sorted(fams)}")
    hs = [h for _, h in parsed]
    if len(set(hs)) != len(hs):
        raise ValueError(f"tasks must be distinct, got {names}")
    return parsed[0][0], hs


# --------------------------------------------------------------------------- sequences


def _write_examples(fam: Family, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[..., m, input_len] inputs and [..., m] answers -> [..., m * example_len] characters."""
    lead = x.shape[:-1]
    parts = [
        x,
        np.full((*lead, 1), SEP, np.int32),
        y[..., None].astype(np.int32),
        np.full((*lead, 1), NEWLINE, np.int32),
    ]
    ex = np.concatenate(parts, axis=-1)
    return ex.reshape(*lead[:-1], lead[-1] * fam.example_len)


def sequence_length(fam: Family, n_examples: int) -> int:
    """Tokens of a training sequence: the leading newline plus ``n_examples`` examples."""
    return 1 + n_examples * fam.example_len


def answer_offsets(fam: Family) -> np.ndarray:
    """Offsets inside an example of the characters the loss covers: the answer and the newline."""
    return np.array([fam.input_len + 1, fam.input_len + 2])


def training_batch(fam: Family, rng: np.random.Generator, batch: int, n_examples: int) -> dict[str, np.ndarray]:
    """``batch`` training sequences, each of ``n_examples`` examples sharing one task.

    Returns ``tokens`` [B, T] (T = 1 + n_examples * example_len, a leading newline), ``mask``
    [B, T] (1 on answer characters and newlines after the first, the characters the loss
    covers), ``answer_mask`` [B, T] (1 on answer characters only) and ``task`` [B] (h).
    The model reads ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]`` where ``mask[:, 1:]``.
    """
    h = rng.choice(np.asarray(fam.params), size=batch)
    x = fam.sample_inputs(rng, (batch, n_examples))
    y = fam.answers(x, h[:, None])
    body = _write_examples(fam, x, y)
    tokens = np.concatenate([np.full((batch, 1), NEWLINE, np.int32), body], axis=1)
    offset = np.arange(tokens.shape[1] - 1) % fam.example_len
    is_answer = np.concatenate([[False], offset == fam.input_len + 1])
    is_newline = np.concatenate([[False], offset == fam.input_len + 2])
    mask = np.broadcast_to(is_answer | is_newline, tokens.shape).astype(np.float32)
    answer_mask = np.broadcast_to(is_answer, tokens.shape).astype(np.float32)
    return {"tokens": tokens, "mask": mask, "answer_mask": answer_mask, "task": h.astype(np.int32)}


def mixed_prompts(
    fam: Family,
    rng: np.random.Generator,
    n_prompts: int,
    n_examples: int,
    tasks: Sequence[int],
    proportions: Sequence[float],
) -> dict[str, np.ndarray]:
    """Evaluation prompts whose examples' tasks are drawn i.i.d. with the given proportions.

    Each prompt is a newline, ``n_examples`` examples, then the query inputs and ``>``
    (length ``1 + n_examples * example_len + input_len + 1``); the prediction is read at the
    last position. Returns ``tokens`` [P, L], ``example_task`` [P, m] (indices into
    ``tasks``), ``answers`` [P, K] (token id of every task's answer to the query, in the
    order of ``tasks``) and ``query`` [P, input_len].
    """
    tasks = np.asarray(tasks, dtype=np.int64)
    p = np.asarray(proportions, dtype=np.float64)
    if p.shape != tasks.shape or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"proportions {list(p)} must be non-negative, sum to 1 and match the {len(tasks)} tasks")
    which = rng.choice(len(tasks), size=(n_prompts, n_examples), p=p / p.sum())
    x = fam.sample_inputs(rng, (n_prompts, n_examples + 1))
    y = fam.answers(x[:, :n_examples], tasks[which])
    query = x[:, n_examples]
    answers = np.stack([fam.answers(query, np.full(n_prompts, h)) for h in tasks], axis=1)
    body = _write_examples(fam, x[:, :n_examples], y)
    tokens = np.concatenate(
        [np.full((n_prompts, 1), NEWLINE, np.int32), body, query, np.full((n_prompts, 1), SEP, np.int32)], axis=1
    )
    return {"tokens": tokens, "example_task": which.astype(np.int32), "answers": answers.astype(np.int32), "query": query}
