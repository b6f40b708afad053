"""The prompt layout: m examples of n tokens, then the n-1 query tokens.

Example i occupies positions ``i*n .. i*n + n-1``: its n-1 inputs, then its label at offset
n-1. The query (example index m) follows with its n-1 inputs; the prediction is read at the
very last position, the query's last input token.

Positions carry, besides the token, structured features that the constructed model reads
(docs/theory.md section 4): a constant 1, the example index as a +-1 binary code, the offset
inside the example (one-hot), and the flags "is a label" and "is the query's last token".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: Names of the structured position features, in the order :func:`Layout.features` lays them out.
FEATURE_BLOCKS = ("one", "code", "offset", "is_label", "is_query_last")


def code_bits(max_examples: int) -> int:
    """Bits of the example code: indices 0..max_examples (the query is index m <= M)."""
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, got {max_examples}")
    return max(1, math.ceil(math.log2(max_examples + 1)))


def binary_code(index: np.ndarray, bits: int) -> np.ndarray:
    """The +-1 binary code of each index: shape ``index.shape + (bits,)``.

    Two codes have inner product ``bits - 2 * hamming``: equal codes score ``bits``, unequal
    ones at least 2 less (docs/theory.md, lemma 2).
    """
    index = np.asarray(index)
    if np.any(index < 0) or np.any(index >= 2**bits):
        raise ValueError(f"indices must lie in [0, {2**bits}) for a {bits}-bit code")
    bit = (index[..., None] >> np.arange(bits)) & 1
    return (2.0 * bit - 1.0).astype(np.float64)


@dataclass(frozen=True)
class Layout:
    """Where every token of a prompt sits. ``example_len`` is n (n-1 inputs + 1 label)."""

    example_len: int
    n_examples: int

    def __post_init__(self):
        if self.example_len < 2:
            raise ValueError(f"example_len must be >= 2 (at least one input and the label), got {self.example_len}")
        if self.n_examples < 0:
            raise ValueError(f"n_examples must be >= 0, got {self.n_examples}")

    @classmethod
    def from_length(cls, length: int, example_len: int) -> "Layout":
        """The layout of a prompt of ``length`` tokens; raises if no whole number of examples fits."""
        m, rest = divmod(length - (example_len - 1), example_len)
        if rest or m < 0:
            raise ValueError(
                f"a prompt of {length} tokens is not m*{example_len} + {example_len - 1} tokens for any whole m"
            )
        return cls(example_len, m)

    @property
    def length(self) -> int:
        return self.n_examples * self.example_len + self.example_len - 1

    @cached_property
    def example_index(self) -> np.ndarray:
        """[L] example index of every position; the query has index m."""
        return np.arange(self.length) // self.example_len

    @cached_property
    def offset(self) -> np.ndarray:
        """[L] offset of every position inside its example (the label sits at n-1)."""
        return np.arange(self.length) % self.example_len

    @cached_property
    def is_label(self) -> np.ndarray:
        return self.offset == self.example_len - 1

    @cached_property
    def is_query_last(self) -> np.ndarray:
        return np.arange(self.length) == self.length - 1

    @property
    def label_positions(self) -> np.ndarray:
        return np.flatnonzero(self.is_label)

    def input_position(self, example: int, position: int) -> int:
        """Sequence position of input ``position`` (0..n-2) of ``example`` (m is the query)."""
        return example * self.example_len + position

    def features(self, bits: int) -> np.ndarray:
        """[L, 1 + bits + n + 2] structured features in the order of :data:`FEATURE_BLOCKS`."""
        onehot = np.eye(self.example_len)[self.offset]
        return np.concatenate(
            [
                np.ones((self.length, 1)),
                binary_code(self.example_index, bits),
                onehot,
                self.is_label[:, None].astype(np.float64),
                self.is_query_last[:, None].astype(np.float64),
            ],
            axis=1,
        )

    def split(self, tokens, *, vector: bool = False):
        """Split prompts into (inputs [..., m, n-1], labels [..., m], query [..., n-1]).

        ``tokens`` is [..., L] of symbols, or [..., L, d] of vectors when ``vector`` is true
        (then every returned array keeps the trailing d).
        """
        t = np.asarray(tokens)
        if not vector:
            t = t[..., None]
        if t.shape[-2] != self.length:
            raise ValueError(f"prompts have {t.shape[-2]} tokens; this layout has {self.length}")
        n, m = self.example_len, self.n_examples
        body = t[..., : m * n, :].reshape(*t.shape[:-2], m, n, t.shape[-1])
        parts = body[..., : n - 1, :], body[..., n - 1, :], t[..., m * n :, :]
        return parts if vector else tuple(part[..., 0] for part in parts)


def structured_features(length: int, example_len: int, bits: int) -> np.ndarray:
    """Features of :meth:`Layout.features` for a prompt of ``length`` tokens."""
    return Layout.from_length(length, example_len).features(bits)
