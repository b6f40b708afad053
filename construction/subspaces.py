"""Named subspaces: the residual stream (and every head and hidden layer) as a direct sum of blocks.

Weight matrices are built "from action": a :class:`Map` between two :class:`Subspaces` is
filled block by block (``put("token", "G_0", table)``), never by index arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class Subspaces:
    """An ordered direct sum of named blocks ``(name, size)``."""

    def __init__(self, blocks: Iterable[tuple[str, int]]):
        self.blocks = tuple((str(name), int(size)) for name, size in blocks)
        names = [name for name, _ in self.blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate block names in {names}")
        self._slices, start = {}, 0
        for name, size in self.blocks:
            if size < 0:
                raise ValueError(f"block {name!r} has negative size {size}")
            self._slices[name] = slice(start, start + size)
            start += size
        self.dim = start

    def __getitem__(self, name: str) -> slice:
        try:
            return self._slices[name]
        except KeyError:
            raise KeyError(f"no block {name!r}; blocks are {list(self._slices)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._slices

    def __iter__(self):
        return iter(self.blocks)

    def __repr__(self):
        return f"Subspaces({', '.join(f'{n}:{s}' for n, s in self.blocks)}; dim={self.dim})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.blocks)

    def labels(self) -> tuple[str, ...]:
        """One label per dimension: the block name, with ``[j]`` for blocks wider than one."""
        return tuple(name if size == 1 else f"{name}[{j}]" for name, size in self.blocks for j in range(size))

    def zeros(self, *lead: int) -> np.ndarray:
        return np.zeros((*lead, self.dim))


class Map:
    """A linear map ``src -> dst`` (a matrix [src.dim, dst.dim]) filled by named blocks."""

    def __init__(self, src: Subspaces, dst: Subspaces):
        self.src, self.dst = src, dst
        self.matrix = np.zeros((src.dim, dst.dim))

    def put(self, src_block: str, dst_block: str, value) -> "Map":
        """Set the block from ``src_block`` to ``dst_block`` (a scalar broadcasts)."""
        block = self.matrix[self.src[src_block], self.dst[dst_block]]
        block[...] = np.broadcast_to(np.asarray(value, dtype=np.float64), block.shape)
        return self


def vector(space: Subspaces, **values) -> np.ndarray:
    """A vector of ``space`` with the named blocks set (e.g. a bias)."""
    v = space.zeros()
    for name, value in values.items():
        v[space[name]] = value
    return v
