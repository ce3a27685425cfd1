"""Arrays too large to load: read from their HDF5 file in parts, never whole.

A :class:`StoredArray` stands in a :class:`~trustml.report.RunResults`' ``arrays`` for an
array that lives in an HDF5 file: the per-sample predictions of a test split scored in
chunks (:mod:`trustml.protocol._stream_eval`), or a large dataset of a loaded ``arrays.h5``.
Writing the results copies it into ``arrays.h5`` a block of rows at a time.

The report never reads a large array whole: its sections see :func:`bounded_view` of the
arrays, in which any array of more than :data:`REPORT_ROWS` rows (stored or in memory) is
replaced by every ``s``-th row (the same rows for every array of that length, so targets and
predictions stay paired). Figures and the per-sample tables of such a report describe that
subsample, and the page says so; the metrics are always those of every sample. Arrays of at
most :data:`REPORT_ROWS` rows pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "COPY_BYTES",
    "LAZY_ROWS",
    "REPORT_ROWS",
    "StoredArray",
    "bounded_view",
    "row_stride",
    "subsampled",
]

#: Rows of a stored array the report reads at most (every ``s``-th row above this).
REPORT_ROWS = 100_000
#: A dataset of ``arrays.h5`` with more rows than this is loaded as a :class:`StoredArray`
#: (the report reads a subsample of it, as it did of the array when the run wrote it).
LAZY_ROWS = REPORT_ROWS
#: Bytes copied at a time when a stored array is written into ``arrays.h5``.
COPY_BYTES = 32 << 20


class StoredArray:
    """The dataset ``key`` of the HDF5 file ``path``, read in parts.

    Parameters
    ----------
    path : path
        The HDF5 file; it must stay in place while the array is used.
    key : str
        The dataset's path inside it.
    keep : object, optional
        Kept alive as long as this array is (e.g. what removes a staging folder when the
        last array in it is gone).

    Attributes
    ----------
    shape, dtype, ndim, size, nbytes
        As a numpy array's, read from the file's metadata.
    """

    def __init__(self, path: str | Path, key: str, *, keep: Any = None) -> None:
        self.path = Path(path)
        self.key = key
        self.keep = keep
        with h5py.File(self.path, "r") as f:
            ds = f[key]
            if not isinstance(ds, h5py.Dataset):
                raise KeyError(f"{self.path}: {key!r} is not a dataset")
            self.shape: tuple[int, ...] = tuple(int(s) for s in ds.shape)
            self.dtype = np.dtype(ds.dtype)

    def __repr__(self) -> str:
        return (
            f"StoredArray({str(self.path)!r}, {self.key!r}, shape={self.shape}, dtype={self.dtype})"
        )

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a scalar StoredArray")
        return self.shape[0]

    def __getitem__(self, selection: Any) -> np.ndarray:
        """``array[selection]`` read from the file (h5py's selections: slices, steps, lists)."""
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.key][selection])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole array, read (for small arrays; the report never asks for a large one)."""
        out = self[()]
        return out if dtype is None else out.astype(dtype)

    def row_blocks(self, budget: int = COPY_BYTES) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` row ranges of about ``budget`` bytes each."""
        if not self.shape:
            yield 0, 0
            return
        n = self.shape[0]
        row = max(1, self.nbytes // max(n, 1))
        step = max(1, budget // row)
        for start in range(0, n, step):
            yield start, min(start + step, n)

    def every(self, stride: int) -> np.ndarray:
        """Rows ``0, stride, 2 * stride, ...``, read without the others."""
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.key][::stride])


def row_stride(n_rows: int, limit: int = REPORT_ROWS) -> int:
    """The step that leaves at most ``limit`` of ``n_rows`` rows (1: all of them)."""
    return max(1, -(-n_rows // limit))


def _rows(value: Any) -> int:
    shape: tuple[int, ...] = tuple(getattr(value, "shape", ()))
    return int(shape[0]) if shape else 0


class _Bounded(Mapping[str, Any]):
    """``arrays`` with every array of more than ``limit`` rows cut to :func:`row_stride`
    rows, and every stored array read, once."""

    def __init__(self, arrays: Mapping[str, Any], limit: int) -> None:
        self._arrays = arrays
        self._limit = limit
        self._read: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        value = self._arrays[key]
        rows = _rows(value)
        if rows <= self._limit and not isinstance(value, StoredArray):
            return value
        if key not in self._read:
            stride = row_stride(rows, self._limit)
            if isinstance(value, StoredArray):
                self._read[key] = value.every(stride) if rows > self._limit else value[()]
            else:
                self._read[key] = value[::stride]
        return self._read[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


def bounded_view(arrays: Mapping[str, Any], limit: int = REPORT_ROWS) -> Mapping[str, Any]:
    """``arrays`` as the report's sections read them: ``arrays`` itself when no array has
    more than ``limit`` rows and none is stored; else a mapping that reads each array of
    ``n > limit`` rows as its rows ``0, s, 2s, ...`` (``s = ceil(n / limit)``; the same rows
    for every array of ``n`` rows, so targets and predictions stay paired) and each smaller
    stored array whole, on first use."""
    if not any(isinstance(v, StoredArray) or _rows(v) > limit for v in arrays.values()):
        return arrays
    return _Bounded(arrays, limit)


def subsampled(arrays: Mapping[str, Any], limit: int = REPORT_ROWS) -> dict[str, tuple[int, int]]:
    """Arrays the report reads a subsample of: key -> ``(rows read, rows)``."""
    out = {}
    for key, value in arrays.items():
        n = _rows(value)
        if n > limit:
            out[key] = (len(range(0, n, row_stride(n, limit))), n)
    return out
