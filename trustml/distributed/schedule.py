"""Which rank does what: balanced contiguous blocks, or owners balanced by weight.

Both depend on nothing but their arguments, so every rank computes the same plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

__all__ = ["block_range", "greedy_owners", "my_block", "shard_batches"]

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


def greedy_owners(
    weights: Sequence[float], size: int, *, preload: Sequence[float] | None = None
) -> list[int]:
    """The rank that owns each item, balancing the summed ``weights`` per rank.

    Longest processing time first: items in decreasing weight (ties in list order) go one by
    one to the least-loaded rank, ties to the highest rank, so rank 0, which usually has serial
    work of its own, is loaded last. ``preload`` is each rank's load before the items.

    Examples
    --------
    >>> greedy_owners([3, 1, 1, 1, 1, 1, 1], 2, preload=[0.5, 0])
    [1, 0, 0, 0, 1, 0, 1]
    """
    if size < 1:
        raise ValueError(f"Expected size >= 1, got {size}")
    load = [float(x) for x in (preload if preload is not None else [0.0] * size)]
    if len(load) != size:
        raise ValueError(f"preload has {len(load)} entries for {size} ranks")
    owners = [0] * len(weights)
    for i in sorted(range(len(weights)), key=lambda i: -float(weights[i])):
        rank = min(range(size), key=lambda r: (load[r], -r))
        owners[i] = rank
        load[rank] += float(weights[i])
    return owners
