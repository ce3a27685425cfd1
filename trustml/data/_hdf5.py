"""Datasets stored in HDF5 files, read lazily with h5py, and the writer of that layout."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trustml.data._base import BaseDataset
from trustml.data._checks import (
    check_groups,
    check_input_meta,
    check_layout,
    check_mask_meta,
    check_target_meta,
    one_line,
)
from trustml.data._fingerprint import block_bounds, h5_dataset_meta
from trustml.exceptions import DataError

__all__ = ["HDF5Dataset", "check_destination", "write_hdf5"]

#: Chunk cache per open dataset: enough to keep a few compressed chunks across random reads.
_CACHE_BYTES = 16 << 20
_MAX_LISTED = 20


class HDF5Dataset(BaseDataset):
    """A dataset in an HDF5 file, opened lazily and read in chunks.

    The file is checked at construction (then closed) and re-opened on first read in each
    process, so the object can be pickled to :class:`torch.utils.data.DataLoader` workers or
    MPI ranks; each process holds its own read-only handle.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file.
    inputs : str
        Dataset key of the inputs, shape ``(N, C, L)`` or ``(N, T, F)``, ``(N, C, H, W)``,
        ``(N, C, D, H, W)`` or ``(N, C, T, D, H, W)``; float or integer.
    targets : str
        Dataset key of the targets: float ``(N,)`` or ``(N, D)`` for regression, integer ``(N,)``
        class labels for classification.
    groups : str, optional
        Dataset key of ``(N,)`` integer or string group ids (loaded into memory).
    validate : bool
        Also scan every value for NaN/inf (and negative class labels) now, streamed.
    layout : str, optional
        Overrides the ``layout`` attribute of the inputs dataset. Only rank 3 needs it:
        ``"NCL"`` (channels, length) or ``"NTF"`` (time steps, features); undeclared rank-3
        inputs keep ``layout = None`` and the model decides.
    masks : str, optional
        Dataset key of ground-truth masks (e.g. ``"/masks"`` as written by
        :func:`trustml.data.export_builtin`), bool or numeric (non-zero = inside), of shape
        ``(N, *input_shape)`` with any axis 1, or ``(N, *spatial)`` for channel-first inputs;
        read lazily by :meth:`~BaseDataset.read_masks`.

    Attributes
    ----------
    path : pathlib.Path
    keys : dict
        ``{"inputs": ..., "targets": ..., "groups": ..., "masks": ...}`` as given.

    Raises
    ------
    DataError
        One line naming the file and the key: a missing file, a file that is not HDF5 or is
        corrupt or truncated, a missing key (the datasets present are listed), mismatched
        lengths, a wrong dtype or rank, or non-finite values.

    Notes
    -----
    Optional attributes read: ``layout`` on the inputs, ``target_names`` on the targets
    (see :func:`trustml.data.export_builtin` for the full layout it writes).

    Reads: :meth:`read` sorts and de-duplicates the indices, reads them in one pass (a single
    slice when they are contiguous or dense, a point selection on contiguous storage, one
    slice per run of consecutive rows on chunked storage) and restores the requested order.
    Streaming passes read about 8 MB of whole HDF5 chunks at a time; the chunk cache is 16 MB
    per open dataset.

    Examples
    --------
    >>> ds = HDF5Dataset("fields.h5", inputs="/x", targets="/y", groups="/sim_id")
    >>> x, y = ds.read(np.arange(64))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        inputs: str = "/x",
        targets: str = "/y",
        groups: str | None = None,
        *,
        validate: bool = True,
        layout: str | None = None,
        masks: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.keys: dict[str, str | None] = {
            "inputs": inputs, "targets": targets, "groups": groups, "masks": masks
        }  # fmt: skip
        self._x_key, self._y_key = inputs, targets
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._handles: dict[str, h5py.Dataset] = {}
        prefix = str(path)
        xname, yname = _show(inputs), _show(targets)
        with self._open() as f:
            xds, yds = _dataset(f, inputs, prefix), _dataset(f, targets, prefix)
            check_input_meta(xds.shape, xds.dtype, prefix=prefix, name=xname)
            n = xds.shape[0]
            check_target_meta(yds.shape, yds.dtype, n, prefix=prefix, name=yname, input_name=xname)
            g = (
                None
                if groups is None
                else _read_groups(_dataset(f, groups, prefix), n, prefix, _show(groups))
            )
            names = yds.attrs.get("target_names")
            if names is not None:
                names = [
                    v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(names)
                ]
            layout = check_layout(
                layout if layout is not None else xds.attrs.get("layout"),
                xds.ndim,
                prefix=prefix,
                name=xname,
            )
            self._x_chunk = xds.chunks[0] if xds.chunks else 1
            self._chunked = {inputs: xds.chunks is not None, targets: yds.chunks is not None}
            self._init_meta(
                n_samples=n,
                input_shape=xds.shape[1:],
                input_dtype=xds.dtype,
                target_shape=yds.shape[1:],
                target_dtype=yds.dtype,
                groups=g,
                source=f"hdf5:{path}",
                layout=layout,
                names=names,
                prefix=prefix,
                input_name=xname,
                target_name=yname,
            )
            if masks is not None:
                mds = _dataset(f, masks, prefix)
                self.mask_shape = check_mask_meta(
                    mds.shape,
                    mds.dtype,
                    n,
                    self.input_shape,
                    self.layout,
                    prefix=prefix,
                    name=_show(masks),
                )
                self._chunked[masks] = mds.chunks is not None
        if validate:
            self.validate()

    # -- file handling --------------------------------------------------------------------
    def _open(self) -> h5py.File:
        return open_hdf5(self.path)

    def _file(self) -> h5py.File:
        # A handle inherited through fork belongs to the parent: open our own.
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = self._open()
            self._pid = os.getpid()
            self._handles = {}
        return self._h5

    def _dataset(self, key: str) -> h5py.Dataset:
        f = self._file()
        if key not in self._handles:  # name lookups cost more than small reads
            self._handles[key] = f[key]
        return self._handles[key]

    def close(self) -> None:
        """Close this process's file handle (it is re-opened on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = self._pid = None
        self._handles = {}

    def __enter__(self) -> HDF5Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = state["_pid"] = None
        state["_handles"] = {}
        return state

    def relocated(self, path: str | os.PathLike[str]) -> HDF5Dataset:
        """This dataset reading a byte-identical copy of its file (node-local staging).

        Parameters
        ----------
        path : path-like
            The copy; it keeps the file's name (fingerprints hash the name, not the folder).

        Returns
        -------
        HDF5Dataset
            The same samples, ``source`` and fingerprints; nothing is re-checked or re-read.

        Raises
        ------
        DataError
            The copy has another name, is missing, or its size differs from the original's.
        """
        path = Path(path)
        if path.name != self.path.name:
            raise DataError(f"{path}: a copy of {self.path} must keep its name")
        try:
            sizes = path.stat().st_size, self.path.stat().st_size
        except OSError as exc:
            raise DataError(f"{path}: cannot access ({exc.strerror or one_line(exc)})") from None
        if sizes[0] != sizes[1]:
            raise DataError(
                f"{path}: holds {sizes[0]} bytes, and its original {self.path} {sizes[1]}; "
                "not a copy of it"
            )
        new = copy.copy(self)
        new.__dict__.update(self.__getstate__())  # no handle shared with this dataset
        new.path = path
        return new

    # -- reading --------------------------------------------------------------------------
    def _chunk_rows(self) -> int:
        rows = super()._chunk_rows()
        # Whole HDF5 chunks per read, so no chunk is decompressed twice.
        return rows if rows < self._x_chunk else rows - rows % self._x_chunk

    def block_boundaries(self) -> np.ndarray:
        """The HDF5 chunks of the inputs along the sample axis (``(K + 1,)``, int64); for
        contiguous storage, blocks of about 8 MB (see :meth:`BaseDataset.block_boundaries`)."""
        if not self._chunked[self._x_key]:
            return super().block_boundaries()
        return block_bounds(np.array([0, self.n_samples], dtype=np.int64), self._x_chunk)

    # -- fingerprint hooks ------------------------------------------------------------------
    def _fingerprint_structure(self) -> bytes:
        h = hashlib.sha256(super()._fingerprint_structure())
        used = {k: v for k, v in self.keys.items() if v is not None and k != "masks"}
        with self._open() as f:
            h.update(
                _file_structure(f, self.path.name, self.path.stat().st_size, used, str(self.path))
            )
        return h.digest()

    def _fingerprint_bounds(self) -> np.ndarray:
        return block_bounds(
            np.array([0, self.n_samples], dtype=np.int64),
            _whole_chunks(BaseDataset._chunk_rows(self), self._x_chunk),
        )

    def _read(self, key: str, sel: slice | np.ndarray) -> np.ndarray:
        try:
            return self._dataset(key)[sel]
        except DataError:
            raise
        except Exception as exc:
            where = (
                f"samples {sel.start}..{sel.stop - 1}"
                if isinstance(sel, slice)
                else f"{sel.size} samples"
            )
            raise DataError(
                f"{self.path}: cannot read {_show(key)} {where} ({one_line(exc)})"
            ) from None

    def _raw_rows(
        self, idx: np.ndarray, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if hi - lo == idx.size:
            return self._raw_slice(lo, hi, inputs=inputs)
        if hi - lo <= 2 * idx.size:
            # Dense enough: one contiguous read (at most twice the rows) beats point selection.
            x, y = self._raw_slice(lo, hi, inputs=inputs)
            return (None if x is None else x[idx - lo]), y[idx - lo]
        x = self._read_points(self._x_key, idx) if inputs else None
        return x, self._read_points(self._y_key, idx)

    def _read_points(self, key: str, idx: np.ndarray) -> np.ndarray:
        """Sorted, scattered rows of ``key``.

        Contiguous storage: one point selection. Chunked storage: one slice per run of
        consecutive rows, because HDF5 maps a scattered selection onto chunks in time that grows
        with (chunks touched x rows), while per-run reads stay linear (about 2x faster for
        random batches of 512 uncompressed rows, equal when decompression dominates).
        """
        if not self._chunked[key]:
            return self._read(key, idx)
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        firsts, lasts = np.r_[0, breaks], np.r_[breaks, idx.size]
        part = self._read(key, slice(int(idx[0]), int(idx[lasts[0] - 1]) + 1))
        out = np.empty((idx.size, *part.shape[1:]), dtype=part.dtype)
        out[: lasts[0]] = part
        for a, b in zip(firsts[1:].tolist(), lasts[1:].tolist(), strict=True):
            out[a:b] = self._read(key, slice(int(idx[a]), int(idx[b - 1]) + 1))
        return out

    def _raw_mask_rows(self, idx: np.ndarray) -> np.ndarray:
        key = self.keys["masks"]
        assert key is not None
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if hi - lo == idx.size:
            return self._read(key, slice(lo, hi))
        if hi - lo <= 2 * idx.size:
            return self._read(key, slice(lo, hi))[idx - lo]
        return self._read_points(key, idx)

    def _raw_slice(
        self, start: int, stop: int, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        sel = slice(start, stop)
        x = self._read(self._x_key, sel) if inputs else None
        return x, self._read(self._y_key, sel)


def open_hdf5(path: Path, *, cache_bytes: int = _CACHE_BYTES) -> h5py.File:
    """``path`` opened read-only with a chunk cache of ``cache_bytes``; a missing file, a
    directory, a file of another format or a corrupt one is a :class:`DataError` naming it."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an HDF5 file")
    try:
        if not h5py.is_hdf5(path):
            raise DataError(
                f"{path}: not an HDF5 file (no HDF5 signature; corrupt or another format)"
            )
        return h5py.File(path, "r", rdcc_nbytes=cache_bytes)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # h5py raises OSError (or others) for corrupt/truncated files
        raise DataError(
            f"{path}: cannot open as HDF5, the file is corrupt or truncated ({one_line(exc)})"
        ) from None


def _whole_chunks(rows: int, chunk: int) -> int:
    """Rows of a fingerprint block: whole chunks of ``chunk`` rows, about ``rows`` of them."""
    return chunk if rows < chunk else rows - rows % chunk


def _file_structure(
    f: h5py.File, name: str, size: int, keys: Mapping[str, str], prefix: str
) -> bytes:
    """One JSON line for a sampled fingerprint: the file's name and size, the datasets' headers."""
    meta = {role: h5_dataset_meta(_dataset(f, key, prefix)) for role, key in sorted(keys.items())}
    line = {"name": name, "size": int(size), "datasets": meta}
    return json.dumps(line, sort_keys=True).encode() + b"\n"


def _show(key: str) -> str:
    return "'/" + key.lstrip("/") + "'"


def _present(f: h5py.File) -> str:
    names: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            names.append("/" + name)

    with contextlib.suppress(Exception):
        f.visititems(visit)
    more = f" (+{len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return (", ".join(sorted(names)[:_MAX_LISTED]) or "(no datasets)") + more


def _dataset(f: h5py.File, key: str, prefix: str) -> h5py.Dataset:
    try:
        obj = f.get(key)
    except Exception as exc:
        raise DataError(f"{prefix}: cannot access {_show(key)} ({one_line(exc)})") from None
    if obj is None:
        raise DataError(f"{prefix}: dataset {_show(key)} not found; present: {_present(f)}")
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{prefix}: {_show(key)} is a group, not a dataset; present: {_present(f)}")
    return obj


def _read_groups(ds: h5py.Dataset, n: int, prefix: str, name: str) -> np.ndarray:
    if ds.ndim != 1 or ds.shape[0] != n:
        raise DataError(
            f"{prefix}: {name} has shape {ds.shape}; expected [{n}] group ids, one per sample"
        )
    try:
        values = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
    except Exception as exc:
        raise DataError(f"{prefix}: cannot read {name} ({one_line(exc)})") from None
    return check_groups(values, n, prefix=prefix, name=name)


def write_hdf5(
    path: str | os.PathLike[str],
    inputs: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    attrs: Mapping[str, Any] | None = None,
    input_attrs: Mapping[str, Any] | None = None,
    target_attrs: Mapping[str, Any] | None = None,
    group_attrs: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    compression: str | None = None,
    masks: np.ndarray | None = None,
    mask_attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``/x``, ``/y`` (and ``/groups``, ``/masks``) atomically: a temp file, then ``os.replace``.

    Parameters
    ----------
    inputs : array of shape (N, *input_shape)
    targets : array of shape (N,) or (N, D)
    groups : array of shape (N,), optional
        Integer or string ids (strings are stored as UTF-8 variable-length strings).
    masks : array of shape (N, ...), optional
        Ground-truth masks, written as ``/masks`` (bool is stored as HDF5's bool enum and
        read back as bool).
    attrs, input_attrs, target_attrs, group_attrs, mask_attrs : mapping, optional
        HDF5 attributes of the file, ``/x``, ``/y``, ``/groups`` and ``/masks``.
    chunk_rows : int, optional
        Samples per HDF5 chunk (default: contiguous storage unless compressed).
    compression : str, optional
        An h5py filter name (``"gzip"``, ``"lzf"``).
    """
    path = Path(path)
    check_destination(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot write in folder {path.parent} ({exc.strerror or one_line(exc)})"
        ) from None
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(dict(attrs or {}))
            for key, arr, extra in (
                ("x", inputs, input_attrs),
                ("y", targets, target_attrs),
                ("groups", groups, group_attrs),
                ("masks", masks, mask_attrs),
            ):
                if arr is None:
                    continue
                arr = np.asarray(arr)
                kw: dict[str, Any] = {"compression": compression}
                if chunk_rows is not None or compression is not None:
                    kw["chunks"] = (min(chunk_rows or 64, len(arr)), *arr.shape[1:])
                if arr.dtype.kind == "U":
                    arr = arr.astype(object)
                    kw = {"dtype": h5py.string_dtype()}
                ds = f.create_dataset(key, data=arr, **kw)
                ds.attrs.update(dict(extra or {}))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # disk full, the path became a folder meanwhile...
            raise DataError(
                f"{path}: cannot write the HDF5 file ({exc.strerror or one_line(exc)})"
            ) from None
        raise
    return path


def check_destination(path: str | os.PathLike[str]) -> Path:
    """Check that an HDF5 file can be written at ``path`` (nothing is created).

    ``path`` must not be a folder, and its parent folder must exist or be creatable: the
    nearest existing ancestor is a writable folder.

    Raises
    ------
    DataError
        One line naming the path and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give the path of the .h5 file to write")
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor == ancestor.parent:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(
            f"{path}: cannot create folder {path.parent}: {ancestor} is a file, not a folder"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DataError(f"{path}: cannot create it: no permission to write in {ancestor}")
    return path
