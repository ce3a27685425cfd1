"""Which rank does what: balanced contiguous blocks, independent of anything but (n, size)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

__all__ = ["block_range", "my_block", "shard_batches"]

T = TypeVar("T")


def block_range(n_items: int, size: int, rank: int) -> range:
    """The contiguous block of ``range(n_items)`` owned by ``rank`` of ``size``.

    Blocks differ in length by at most one; the first ``n_items % size`` ranks get the longer
    ones. A rank may own nothing when ``size > n_items``.

    Examples
    --------
    >>> [list(block_range(8, 3, r)) for r in range(3)]
    [[0, 1, 2], [3, 4, 5], [6, 7]]
    """
    if n_items < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(
            f"Expected n_items >= 0 and 0 <= rank < size, got {n_items}, {rank}, {size}"
        )
    base, extra = divmod(n_items, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def my_block(items: Sequence[T], size: int, rank: int) -> list[T]:
    """``items`` restricted to :func:`block_range` of ``rank``."""
    r = block_range(len(items), size, rank)
    return list(items[r.start : r.stop])


def shard_batches(indices: np.ndarray, batch_size: int, size: int, rank: int) -> np.ndarray:
    """This rank's share of ``indices``, cut at multiples of ``batch_size``.

    Cutting on the serial run's batch boundaries means every batch a rank evaluates is a batch
    the single-process run evaluates too, so batched kernels see the same inputs and the
    gathered predictions are bitwise those of one process.
    """
    n_batches = -(-len(indices) // batch_size)
    b = block_range(n_batches, size, rank)
    return indices[b.start * batch_size : min(b.stop * batch_size, len(indices))]
