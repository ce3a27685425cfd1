"""Predictions of a split written to an HDF5 file as they are made, never held whole.

:func:`predict_to_h5` is the streaming twin of
:func:`~trustml.protocol._parallel.predict_sharded`: each rank predicts its share of the
batches (the same batch boundaries a single process uses, so the numbers are bitwise those
of one process), one bounded block at a time, and the ranks write their rows into the one
file in turn: rank 0 creates the datasets at their full shape, then in every round each rank
in turn opens the file, writes its block and closes it, with a barrier between turns. The
predictions are gathered by writing, not by sending arrays to rank 0 (h5py here is serial
HDF5, so turns, not parallel writes). :class:`StagedPredictions` reads them back in chunks
of samples as :class:`~trustml.uq.Predictive` objects.

The file holds, per member array of the predictive, one ``float64`` dataset of shape
``(K, N, W)`` chunked along the samples: ``means`` and ``stds`` (regression) or ``probs``
and, when the model gives them, ``logits`` (classification).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trustml.data import BaseDataset
from trustml.distributed import Comm, block_range
from trustml.uq import Predictive

__all__ = ["BLOCK_BYTES", "StagedPredictions", "create_staged", "member_arrays", "predict_to_h5"]

#: Member predictions a rank holds at once before writing them (one round's block).
BLOCK_BYTES = 64 << 20
#: Bytes of one HDF5 chunk of a staged dataset (whole members, a run of samples).
_CHUNK_BYTES = 1 << 20
_TASK_ATTR = "trustml_task"


def member_arrays(pred: Predictive) -> dict[str, np.ndarray]:
    """The member arrays of ``pred`` that define it, by their staged dataset names."""
    if pred.task == "regression":
        assert pred.member_means is not None and pred.member_stds is not None
        return {"means": pred.member_means, "stds": pred.member_stds}
    assert pred.member_probs is not None
    out = {"probs": pred.member_probs}
    if pred.member_logits is not None:
        out["logits"] = pred.member_logits
    return out


@dataclass(frozen=True)
class StagedPredictions:
    """Member predictions of ``n`` samples in the HDF5 file at ``path``.

    Attributes
    ----------
    path : Path
    task : {"regression", "classification"}
    n : int
        Samples (rows along axis 1 of every dataset).
    n_members : int
        ``K``.
    width : int
        Targets ``D`` or classes ``C``.
    keys : tuple of str
        The datasets: ``("means", "stds")``, ``("probs",)`` or ``("probs", "logits")``.
    keep : object, optional
        Kept alive with these predictions (what removes their staging folder once unused).
    """

    path: Path
    task: str
    n: int
    n_members: int
    width: int
    keys: tuple[str, ...]
    keep: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> StagedPredictions:
        """The staged predictions in a file :func:`predict_to_h5` wrote."""
        with h5py.File(path, "r") as f:
            task = str(f.attrs[_TASK_ATTR])
            keys = ("means", "stds") if task == "regression" else ("probs",)
            if task == "classification" and "logits" in f:
                keys = ("probs", "logits")
            k, n, w = f[keys[0]].shape
        return cls(Path(path), task, int(n), int(k), int(w), keys)

    @property
    def nbytes(self) -> int:
        """Bytes of all member predictions (as float64 in memory)."""
        return 8 * self.n_members * self.n * self.width * len(self.keys)

    def rows_per_chunk(self, budget: int) -> int:
        """Samples whose member predictions take about ``budget`` bytes (at least one)."""
        return max(1, budget // max(1, self.nbytes // self.n))

    def chunks(self, budget: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` row ranges of about ``budget`` bytes of predictions each."""
        rows = self.rows_per_chunk(budget)
        for start in range(0, self.n, rows):
            yield start, min(start + rows, self.n)

    def read(self, start: int, stop: int) -> Predictive:
        """The raw predictive of rows ``start .. stop``."""
        with h5py.File(self.path, "r") as f:
            a = {key: f[key][:, start:stop] for key in self.keys}
        if self.task == "regression":
            return Predictive.regression(a["means"], a["stds"])
        return Predictive.classification(a["probs"], member_logits=a.get("logits"))

    def write(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Write member arrays ``(K, rows, W)`` (by dataset name) at rows ``start ..``."""
        with h5py.File(self.path, "r+") as f:
            for key, value in arrays.items():
                f[key][:, start : start + value.shape[1]] = value

    def first(self, n: int) -> Predictive:
        """The raw predictive of the first ``n`` rows (or all when fewer)."""
        return self.read(0, min(n, self.n))


def _layout(arrays: dict[str, np.ndarray] | None) -> tuple[str, int, int, tuple[str, ...]] | None:
    """``(task, K, W, dataset names)`` of a block of member arrays."""
    if arrays is None:
        return None
    k, _, w = next(iter(arrays.values())).shape
    return "regression" if "means" in arrays else "classification", int(k), int(w), tuple(arrays)


def create_staged(
    path: str | Path, task: str, n: int, n_members: int, width: int, keys: tuple[str, ...]
) -> StagedPredictions:
    """An empty staged-predictions file: datasets ``(K, N, W)`` of ``keys``, to fill by rows."""
    rows = max(1, min(n, _CHUNK_BYTES // (8 * n_members * width)))
    with h5py.File(path, "w") as f:
        f.attrs[_TASK_ATTR] = task
        for key in keys:
            f.create_dataset(
                key, shape=(n_members, n, width), dtype="f8", chunks=(n_members, rows, width),
                track_times=False,
            )  # fmt: skip
    return StagedPredictions(Path(path), task, n, n_members, width, keys)


def predict_to_h5(
    model: Any,
    ds: BaseDataset,
    indices: np.ndarray,
    path: str | Path,
    *,
    comm: Comm,
    batch_size: int = 256,
    block_bytes: int = BLOCK_BYTES,
    keep: Any = None,
    **predict_options: Any,
) -> StagedPredictions:
    """Predict ``indices`` of ``ds`` into the HDF5 file ``path``; every rank must call this.

    Row ``i`` of the file is the prediction of ``indices[i]``. Each rank predicts the whole
    batches :func:`~trustml.distributed.shard_batches` gives it, a block of about
    ``block_bytes`` of member predictions at a time (rounded to whole batches), and writes
    each block in its turn. ``path`` must be on a file system every rank sees. ``keep`` is
    kept alive with the returned predictions.

    Returns
    -------
    StagedPredictions
        On every rank, once the file is complete.
    """
    indices = np.asarray(indices)
    n = len(indices)
    if n == 0:
        raise ValueError("predict_to_h5: expected at least one sample to predict, got 0")
    path = Path(path)
    n_batches = -(-n // batch_size)
    mine = block_range(n_batches, comm.size, comm.rank)
    offset = mine.start * batch_size
    my_rows = min(mine.stop * batch_size, n) - offset

    def predict(a: int, b: int) -> dict[str, np.ndarray]:
        sub = ds.subset(indices[offset + a : offset + b])
        return member_arrays(model.predict(sub, batch_size=batch_size, **predict_options))

    # The first batch of every rank tells the layout (members, width, which arrays).
    first = predict(0, min(batch_size, my_rows)) if my_rows > 0 else None
    layouts = [lay for lay in comm.allgather(_layout(first)) if lay is not None]
    layout = layouts[0]
    if any(lay != layout for lay in layouts):
        raise RuntimeError(f"predict_to_h5: the ranks' predictions differ in layout: {layouts}")
    task, k, w, keys = layout
    staged = StagedPredictions(path, task, n, k, w, keys, keep)
    if comm.rank == 0:
        create_staged(path, task, n, k, w, keys)
    comm.barrier()
    per_row = 8 * k * w * len(keys)
    block = max(1, block_bytes // (per_row * batch_size)) * batch_size
    most_rows = min(block_range(n_batches, comm.size, 0).stop * batch_size, n)  # rank 0's share
    for r in range(-(-most_rows // block)):
        a, b = r * block, min((r + 1) * block, my_rows)
        part: dict[str, np.ndarray] | None = None
        if a < b:
            if r == 0 and first is not None:
                done = next(iter(first.values())).shape[1]
                rest = predict(done, b) if b > done else None
                part = (
                    first
                    if rest is None
                    else {key: np.concatenate([first[key], rest[key]], axis=1) for key in first}
                )
                first = None
            else:
                part = predict(a, b)
        for turn in range(comm.size):
            if turn == comm.rank and part is not None:
                staged.write(offset + a, part)
            comm.barrier()
        del part
    return staged
