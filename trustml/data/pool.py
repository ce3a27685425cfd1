"""An unlabeled pool in an HDF5 file: inputs only, streamed in chunk-aligned blocks."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trustml.data._checks import check_input_meta, one_line
from trustml.data._hdf5 import _dataset, _show
from trustml.exceptions import DataError

__all__ = ["PoolReader"]


class PoolReader:
    """The inputs of an unlabeled pool (no targets needed), read block by block.

    The file is checked at construction (it exists, is HDF5, holds ``inputs`` as a numeric
    array of at least one sample) and kept open read-only until :meth:`close`.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file, e.g. as written by ``trustml data export``.
    inputs : str, default "/x"
        Dataset key of the inputs, shape ``(N, *input_shape)``.

    Raises
    ------
    DataError
        One line naming the file and the key.

    Examples
    --------
    >>> pool = PoolReader("pool.h5")
    >>> for start, x in pool.blocks(0, pool.n_samples, 4096):
    ...     pass
    """

    def __init__(self, path: str | os.PathLike[str], inputs: str = "/x") -> None:
        self.path = Path(path)
        self.key = inputs
        prefix = str(self.path)
        if not self.path.exists():
            raise DataError(f"{prefix}: pool file not found")
        if self.path.is_dir():
            raise DataError(f"{prefix}: is a directory, not an HDF5 pool file")
        try:
            if not h5py.is_hdf5(self.path):
                raise DataError(f"{prefix}: not an HDF5 file (no HDF5 signature)")
            self._f = h5py.File(self.path, "r")
        except DataError:
            raise
        except Exception as exc:  # corrupt or truncated
            raise DataError(f"{prefix}: cannot open as HDF5 ({one_line(exc)})") from None
        try:
            self._x = _dataset(self._f, inputs, prefix)
            check_input_meta(
                self._x.shape, self._x.dtype, prefix=prefix, name=_show(inputs), min_rank=2
            )
            self._stat = os.stat(self.path)
        except BaseException:
            self._f.close()
            raise
        self.n_samples = int(self._x.shape[0])
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in self._x.shape[1:])
        self.chunk_rows = int(self._x.chunks[0]) if self._x.chunks else 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as float32; non-finite values raise :class:`DataError`."""
        try:
            x = np.asarray(self._x[start:stop], dtype=np.float32)
        except Exception as exc:
            raise DataError(
                f"{self.path}: cannot read {_show(self.key)} samples {start}..{stop - 1} "
                f"({one_line(exc)})"
            ) from None
        if not np.isfinite(x).all():
            bad = start + int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))[0])
            raise DataError(f"{self.path}: {_show(self.key)} sample {bad} holds NaN or inf")
        return x

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The rows at ``indices`` (distinct, in any order) as float32, in the order given.

        One read in increasing index order (what h5py's fancy indexing needs), reordered in
        memory; meant for a few rows (the picks shown on a page), not for streaming.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        order = np.argsort(idx, kind="stable")
        ordered = idx[order]
        if ordered.size and (
            ordered[0] < 0 or ordered[-1] >= self.n_samples or np.any(np.diff(ordered) == 0)
        ):
            raise ValueError(f"take: indices must be distinct and in 0..{self.n_samples - 1}")
        if ordered.size == 0:
            return np.empty((0, *self.input_shape), dtype=np.float32)
        try:
            x = np.asarray(self._x[ordered], dtype=np.float32)
        except Exception as exc:
            raise DataError(
                f"{self.path}: cannot read {_show(self.key)} samples {ordered.tolist()[:5]}"
                f"{'...' if ordered.size > 5 else ''} ({one_line(exc)})"
            ) from None
        out = np.empty_like(x)
        out[order] = x
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the pool file, from its metadata alone (nothing is read).

        ``sha256`` hashes the file's size and modification time (as seen when it was opened)
        and the inputs dataset's key, shape and dtype: rewriting the file changes it, moving or
        renaming it does not. It is not a hash of the values (that would read the whole pool
        once more), so a copy with the same values but another mtime fingerprints differently.
        """
        fields: dict[str, Any] = {
            "inputs": self.key,
            "shape": [self.n_samples, *self.input_shape],
            "dtype": self._x.dtype.newbyteorder("<").str
            if self._x.dtype.itemsize > 1
            else self._x.dtype.str,
            "size_bytes": int(self._stat.st_size),
            "mtime_ns": int(self._stat.st_mtime_ns),
        }
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()
        return {"path": str(self.path.resolve()), **fields, "sha256": digest}

    def aligned(self, rows: int) -> int:
        """``rows`` rounded down to whole HDF5 chunks (at least one chunk)."""
        rows = max(1, int(rows))
        return rows if rows < self.chunk_rows else rows - rows % self.chunk_rows

    def blocks(self, start: int, stop: int, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, inputs)`` for consecutive blocks of ``rows`` rows in ``[start, stop)``."""
        for a in range(start, stop, rows):
            yield a, self.read(a, min(a + rows, stop))
