"""Chunk-aligned training order: read whole storage blocks in windows, shuffle within them.

:class:`BlockShuffle` is a :class:`~trustml.uq._fit_loop.BatchOrder` for data too large to be
read one random sample at a time. Each epoch:

1. the training samples are cut into blocks aligned with the storage
   (:meth:`trustml.data.BaseDataset.block_boundaries`: whole HDF5 chunks, small whole files);
2. the blocks are visited in an order drawn from the order's own seed and the epoch, and
   packed into *windows* of at most ``buffer`` samples (:func:`trustml.data._blocks.epoch_windows`);
3. each window is read in one go, by a background thread ``prefetch`` windows ahead
   (:func:`trustml.data._blocks.read_ahead`), so reading overlaps training;
4. every member draws its minibatches from its own shuffle of the window (its own generator),
   so the members share one read: reading does not grow with the number of members.

Minibatches are ``batch_size`` samples (the last of the epoch smaller), as in
:class:`~trustml.uq._fit_loop.RandomOrder`; a minibatch may take the end of one window and the
start of the next. Memory: about ``prefetch + 1`` windows plus one stacked minibatch.

With a :class:`~trustml.uq._fit_loop.DataShare` of ``D`` ranks, every rank owns a fixed,
contiguous part of the sorted training samples (:func:`trustml.data._blocks.share_range`: about
``1/D`` of the files, what node-local staging copies) and reads only that part, in windows
of its own blocks; every global minibatch is cut into ``D`` shares by
:func:`trustml.data._blocks.share_schedule`, so all ranks take the same number of steps and
their shares of a step add up to one global batch.

Determinism: the windows depend on the order's seed, the epoch, ``buffer``, the data's blocks
and ``D`` only, never on which members share them; member ``k``'s order within the windows
comes from its own generator. So member ``k``'s numbers do not depend on the other members
(or the number of ranks), as with :class:`RandomOrder`. A different ``D`` gives other windows
(each rank shuffles its own part) and so other numbers, which agree within their bootstrap
confidence intervals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from trustml.data import epoch_windows, read_ahead, share_range, share_schedule
from trustml.uq._fit_loop import DataShare, RandomOrder
from trustml.uq._source import Source
from trustml.utils.seeding import SeedLike, as_seed_sequence

__all__ = ["DEFAULT_BLOCK_BYTES", "DEFAULT_BUFFER_BYTES", "BlockShuffle"]

#: Bytes of one window when ``buffer`` is not given (at least one minibatch is read at once).
DEFAULT_BUFFER_BYTES = 256 << 20
#: Bytes a block of consecutive storage blocks is merged up to (fewer, longer reads).
DEFAULT_BLOCK_BYTES = 16 << 20


class BlockShuffle:
    """Chunk-aligned, windowed training order with a background reader (see the module).

    Parameters
    ----------
    seed : int or SeedSequence
        Seed of the block order (the same for every member; derive it from the ensemble's
        seed, e.g. ``trustml.utils.seeding.child(seed, "blocks")``).
    buffer : int, optional
        Most samples of a window. Default: as many as fit in ``buffer_bytes`` (as float32),
        and at least one minibatch.
    buffer_bytes : int
        Bytes of a window when ``buffer`` is not given.
    block_bytes : int
        Consecutive storage blocks are read as one block of about this many bytes (as
        float32; at most 1/8 of a window): HDF5 chunks of one small sample become reads of
        several megabytes, and a window touches fewer files. 0 reads the storage blocks as
        they are.
    prefetch : int
        Windows read ahead by a background thread; 0 reads in the training thread.
    boundaries : array of shape (K + 1,), optional
        Storage blocks ``[0, ..., N]`` of the training data; default the dataset's own
        (:meth:`~trustml.data.BaseDataset.block_boundaries`), or one sample per block for
        arrays and torch datasets.

    Attributes
    ----------
    last_windows : list of numpy.ndarray
        The windows of the latest epoch (sorted sample indices of each, this rank's).

    Examples
    --------
    >>> order = BlockShuffle(seed=0, buffer=4096)
    >>> part = DeepEnsemble(make_net, members=4)._fit_members(range(4), ds, order=order)
    """

    def __init__(
        self,
        seed: SeedLike = 0,
        *,
        buffer: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        prefetch: int = 1,
        boundaries: np.ndarray | None = None,
    ) -> None:
        for name, value, low in (
            ("buffer", buffer, 1),
            ("buffer_bytes", buffer_bytes, 1),
            ("block_bytes", block_bytes, 0),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise ValueError(f"Expected {name} to be an int >= {low}, got {value!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"Expected prefetch to be an int >= 0, got {prefetch!r}")
        self.seed = as_seed_sequence(seed)
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        self.block_bytes = block_bytes
        self.prefetch = prefetch
        self.boundaries = None if boundaries is None else np.asarray(boundaries, dtype=np.int64)
        self.last_windows: list[np.ndarray] = []
        self._rngs: list[np.random.Generator] | None = None
        self._epoch = 0

    def __repr__(self) -> str:
        return (
            f"BlockShuffle(buffer={self.buffer}, buffer_bytes={self.buffer_bytes}, "
            f"prefetch={self.prefetch})"
        )

    def epoch(
        self,
        source: Source,
        train_idx: np.ndarray,
        rngs: list[np.random.Generator],
        batch_size: int,
        device: torch.device,
        share: DataShare,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of stacked lane minibatches ``(x (L, b, ...), y (L, b, ...))``.

        Every rank of a share yields ``S`` minibatches (:func:`share_schedule`); ``b`` is this
        rank's share of global batch ``t``. Calls with the same ``rngs`` list are consecutive
        epochs of one training (epoch 0, 1, ...); a new list starts again at epoch 0.
        """
        if source.kind == "loader":  # a DataLoader batches and orders itself
            return RandomOrder().epoch(source, train_idx, rngs, batch_size, device, share)
        if rngs is not self._rngs:
            self._rngs, self._epoch = rngs, 0
        epoch, self._epoch = self._epoch, self._epoch + 1
        idx = np.sort(np.asarray(train_idx, dtype=np.int64))
        schedule = share_schedule(int(idx.size), int(batch_size), share.size)
        row = 1 if self.buffer is not None and not self.block_bytes else _sample_bytes(source, idx)
        window = self.window_samples(row, batch_size)
        # Merged blocks stay under 1/8 of a window, so that every window mixes several.
        bounds = _merged(self._block_boundaries(source), min(self.block_bytes // row, window // 8))
        windows = epoch_windows(
            bounds,
            idx,
            seed=self.seed,
            epoch=epoch,
            buffer=window,
            part=share_range(schedule, share.rank),
        )
        self.last_windows = windows
        return _lane_batches(source, windows, rngs, schedule[:, share.rank], device, self.prefetch)

    def window_samples(self, sample_bytes: int, batch_size: int) -> int:
        """Samples of a window: ``buffer``, or what fits in ``buffer_bytes`` at
        ``sample_bytes`` a sample, at least ``batch_size``."""
        if self.buffer is not None:
            return self.buffer
        return max(int(batch_size), self.buffer_bytes // max(1, sample_bytes), 1)

    def _block_boundaries(self, source: Source) -> np.ndarray:
        if self.boundaries is not None:
            bounds = self.boundaries
        else:
            data: Any = getattr(source, "_ds", None)
            if source.kind == "dataset" and hasattr(data, "block_boundaries"):
                bounds = np.asarray(data.block_boundaries(), dtype=np.int64)
            else:  # in memory: no storage blocks, every sample its own
                bounds = np.arange(source.n + 1, dtype=np.int64)
        if (
            bounds.ndim != 1
            or bounds[0] != 0
            or bounds[-1] != source.n
            or np.any(np.diff(bounds) <= 0)
        ):
            raise ValueError(
                f"Expected block boundaries [0, ..., {source.n}] increasing, got "
                f"{bounds.size} values from {bounds[0] if bounds.size else None} to "
                f"{bounds[-1] if bounds.size else None}"
            )
        return bounds


def _sample_bytes(source: Source, idx: np.ndarray) -> int:
    """Bytes of one training input as float32: from a dataset's ``input_shape``, else from
    one sample read to see its shape."""
    shape = getattr(getattr(source, "_ds", None), "input_shape", None)
    if shape is None:
        shape = tuple(source.read(idx[:1])[0].shape[1:])
    return max(1, 4 * int(np.prod(tuple(shape), dtype=np.int64)))


def _merged(bounds: np.ndarray, rows: int) -> np.ndarray:
    """Storage blocks merged into runs of about ``rows`` samples (never split): the first
    boundary of every stretch of ``rows`` samples is kept."""
    if rows <= 1 or bounds.size <= 2:
        return bounds
    keep = np.r_[True, np.diff(bounds // rows) > 0]
    keep[-1] = True
    return bounds[keep]


def _lane_batches(
    source: Source,
    windows: list[np.ndarray],
    rngs: list[np.random.Generator],
    steps: np.ndarray,
    device: torch.device,
    prefetch: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches of ``steps[t]`` samples per lane, drawn from each lane's shuffle of every
    window in turn (a minibatch may end in the next window)."""
    lanes = len(rngs)
    first = rngs[0]

    def read(window: np.ndarray) -> tuple[np.ndarray, Any, Any]:
        # Lane 0's shuffle of the window is drawn here, in the reader thread (the only user of
        # its generator during the epoch, one draw per window in order, as the other lanes'),
        # and the window is read in that order: lane 0's batches are then slices, no copy.
        order = first.permutation(len(window))
        x, y = source.read(window[order])
        return order, x, y

    reader = read_ahead(read, windows, prefetch)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    t, have = 0, 0
    try:
        for _ in range(len(windows)):
            order, x_win, y_win = next(reader)
            if y_win is None:
                raise TypeError(f"Expected training targets, got inputs only (from {source.kind})")
            width = len(x_win)
            where = np.empty(width, dtype=np.int64)  # window position -> row of x_win
            where[order] = np.arange(width)
            perms = [where[rng.permutation(width)] for rng in rngs[1:]]  # (L - 1) x (w,)
            pos = 0
            while pos < width:
                take = min(int(steps[t]) - have, width - pos)
                if lanes == 1:
                    xb, yb = x_win[pos : pos + take], y_win[pos : pos + take]
                else:
                    rows = np.concatenate(
                        [np.arange(pos, pos + take), *(p[pos : pos + take] for p in perms)]
                    )
                    xb, yb = x_win[rows], y_win[rows]
                xt, yt = source.labelled(xb, yb, device)
                xs.append(xt.reshape(lanes, take, *xt.shape[1:]))
                ys.append(yt.reshape(lanes, take, *yt.shape[1:]))
                pos, have = pos + take, have + take
                if have == steps[t]:
                    x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
                    y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)
                    xs, ys, t, have = [], [], t + 1, 0
                    yield x, y
            del (
                x_win,
                y_win,
                perms,
                order,
                where,
            )  # before the next window is asked for: bounded memory
    finally:
        reader.close()
    if t != len(steps) or have:  # internal invariant: the windows hold this rank's samples
        raise RuntimeError(f"block order: {t} steps made of {len(steps)}")
