"""Chunk-aligned training reads: which blocks each epoch reads, in which windows, on which rank.

An epoch of chunk-aligned training (:class:`trustml.uq.BlockShuffle`) reads the training
samples in *windows*: each window is a few storage blocks (whole HDF5 chunks, small whole
files; :meth:`trustml.data.BaseDataset.block_boundaries`) read in one go, and every ensemble
member draws its minibatches from its own shuffle of the window. This module holds the parts
that know nothing of models:

- :func:`share_schedule`: how many samples each of ``D`` ranks contributes to every global
  minibatch, so that all ranks take the same number of steps;
- :func:`share_range`: the fixed, contiguous part of the (sorted) training samples a rank reads
  every epoch (what node-local staging copies);
- :func:`epoch_windows`: the blocks of an epoch in a seeded order, packed into windows of at
  most ``buffer`` samples;
- :func:`read_ahead`: a background thread that reads the next windows while the current one
  trains, through a bounded queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import numpy as np

from trustml.utils.seeding import SeedLike, child

__all__ = ["epoch_windows", "read_ahead", "share_range", "share_schedule"]

T = TypeVar("T")
R = TypeVar("R")


def share_schedule(n: int, batch_size: int, parts: int = 1) -> np.ndarray:
    """Samples of every global minibatch taken by each of ``parts`` ranks.

    The global batches are ``batch_size`` samples each, the last one what is left; a last
    batch of fewer than ``parts`` samples joins the one before it, so no rank ever has an empty
    step. Batch ``t`` is cut into ``parts`` nearly equal shares (the first ranks take one more).

    Parameters
    ----------
    n : int
        Training samples of the epoch (>= ``parts``).
    batch_size : int
        Samples of a global minibatch (>= ``parts``).
    parts : int
        Ranks that share every batch (``D`` of ``parallel: {data: D}``).

    Returns
    -------
    numpy.ndarray of shape (S, parts), int64
        Row ``t``: each rank's samples of step ``t``; every rank takes ``S`` steps. With
        ``parts == 1``, batches of ``batch_size`` and a smaller last one, as a plain epoch.

    Raises
    ------
    ValueError
        ``batch_size`` or ``n`` is smaller than ``parts``.
    """
    for name, value in (("n", n), ("batch_size", batch_size), ("parts", parts)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"Expected {name} to be an int >= 1, got {value!r}")
    if batch_size < parts:
        raise ValueError(
            f"batch_size={batch_size} cannot be shared by {parts} ranks: every rank needs at "
            "least one sample of every batch"
        )
    if n < parts:
        raise ValueError(f"{n} training samples cannot be shared by {parts} ranks")
    sizes = [batch_size] * (n // batch_size)
    if n % batch_size:
        sizes.append(n % batch_size)
    if len(sizes) > 1 and sizes[-1] < parts:
        last = sizes.pop()
        sizes[-1] += last
    total = np.asarray(sizes, dtype=np.int64)[:, None]
    rank = np.arange(parts, dtype=np.int64)[None, :]
    return total // parts + (rank < total % parts)


def share_range(schedule: np.ndarray, rank: int) -> tuple[int, int]:
    """Positions ``[lo, hi)`` in the sorted training samples that rank ``rank`` reads.

    Rank ``r`` owns the contiguous run of the sorted training samples that follows ranks
    ``0..r-1``, as long as its column of ``schedule`` adds up to; it reads only those, every
    epoch, in a new order. Contiguous in the sorted samples means contiguous in storage: a rank
    touches about ``1/D`` of the files (what node-local staging copies).
    """
    totals = np.r_[0, np.cumsum(schedule.sum(axis=0))]
    return int(totals[rank]), int(totals[rank + 1])


def epoch_windows(
    boundaries: np.ndarray,
    train_idx: np.ndarray,
    *,
    seed: SeedLike,
    epoch: int,
    buffer: int,
    part: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """The windows one epoch reads: seeded blocks of the training samples, packed.

    The sorted training samples are cut into blocks: a block is the training samples of one
    storage block (``boundaries``, gaps of samples outside the training set allowed), cut into
    pieces of at most ``buffer``. Every block draws a random key from ``seed`` and ``epoch``,
    the same on every rank; a rank keeps the blocks (or the parts of them) inside its ``part``
    and visits them by key. Consecutive blocks fill a window until the next would take it
    past ``buffer`` samples.

    Parameters
    ----------
    boundaries : array of shape (K + 1,)
        ``[0, ..., N]``: storage blocks of the dataset the indices refer to.
    train_idx : array of shape (n,)
        Sorted, distinct training sample indices.
    seed : int or SeedSequence
        The block order's seed (not a member's: the windows do not depend on which members
        share them).
    epoch : int
        The epoch, 0-based: each has its own block order.
    buffer : int
        Most samples of a window.
    part : (lo, hi), optional
        Positions in ``train_idx`` this rank reads (:func:`share_range`); default all.

    Returns
    -------
    list of numpy.ndarray
        The windows in reading order, each the sorted sample indices (int64) it reads; together
        ``train_idx[lo:hi]``, each sample once.
    """
    if isinstance(buffer, bool) or not isinstance(buffer, int | np.integer) or buffer < 1:
        raise ValueError(f"Expected buffer to be an int >= 1 (samples), got {buffer!r}")
    idx = np.asarray(train_idx, dtype=np.int64)
    n = idx.size
    if n == 0:
        return []
    if np.any(np.diff(idx) <= 0):
        raise ValueError("Expected sorted, distinct training indices")
    lo, hi = (0, n) if part is None else part
    block = np.searchsorted(np.asarray(boundaries, dtype=np.int64), idx, side="right") - 1
    starts = np.r_[0, np.flatnonzero(np.diff(block)) + 1].astype(np.int64)
    ends = np.r_[starts[1:], n].astype(np.int64)
    # Blocks longer than a window are cut into pieces of at most ``buffer`` samples.
    pieces = [np.arange(s, e, buffer, dtype=np.int64) for s, e in zip(starts, ends, strict=True)]
    starts = np.concatenate(pieces)
    ends = np.r_[starts[1:], n].astype(np.int64)
    keys = np.random.default_rng(child(seed, f"blocks/epoch/{int(epoch)}")).permutation(starts.size)
    starts, ends = np.maximum(starts, lo), np.minimum(ends, hi)
    keep = np.flatnonzero(starts < ends)
    visit = keep[np.argsort(keys[keep], kind="stable")]
    windows: list[np.ndarray] = []
    current: list[np.ndarray] = []
    filled = 0
    for j in visit.tolist():
        run = idx[starts[j] : ends[j]]
        if filled and filled + run.size > buffer:
            windows.append(np.sort(np.concatenate(current)))
            current, filled = [], 0
        current.append(run)
        filled += run.size
    if current:
        windows.append(np.sort(np.concatenate(current)))
    return windows


def read_ahead(
    read: Callable[[T], R], items: Sequence[T], depth: int = 1
) -> Generator[R, None, None]:
    """``read(item)`` for every item in order, ``depth`` items ahead in a background thread.

    At most ``depth + 1`` results are held at once: the one the caller works on and those read
    ahead (the thread waits for a free slot before reading the next). ``depth=0`` reads in the
    caller's thread, one item per step.

    Parameters
    ----------
    read : callable
        Reads one item (e.g. a window of samples). It runs in another thread: it must not share
        unsynchronised state with the caller's work meanwhile.
    items : sequence
    depth : int
        Items read ahead (0, 1 or 2 are typical).

    Yields
    ------
    The results, in the order of ``items``.

    Raises
    ------
    Exception
        Whatever ``read`` raised, the same object (type, message), at the item that failed.

    Notes
    -----
    Closing the generator early (``break``, an exception in the caller, garbage collection)
    stops the thread: it finishes the read in progress, if any, and reads nothing more; the
    close waits for that read, so nothing reads the data once the generator is closed.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"Expected depth to be an int >= 0, got {depth!r}")
    if depth == 0:
        for item in items:
            yield read(item)
        return
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    slots = threading.Semaphore(depth + 1)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not slots.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                results.put(("item", read(item)))
            results.put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as is
            results.put(("error", exc))

    thread = threading.Thread(target=work, name="trustml-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = results.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
            del value
            slots.release()  # the caller asked for the next one: its last result is done
    finally:
        stop.set()
        thread.join()
