"""Datasets spread over many HDF5 files (shards), read as one index."""

from __future__ import annotations

import contextlib
import copy
import glob
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trustml.data._base import BaseDataset
from trustml.data._checks import (
    check_groups,
    check_input_meta,
    check_layout,
    check_target_meta,
    one_line,
)
from trustml.data._fingerprint import block_bounds
from trustml.data._hdf5 import (
    _dataset,
    _file_structure,
    _read_groups,
    _show,
    _whole_chunks,
    open_hdf5,
)
from trustml.exceptions import DataError

__all__ = ["ShardedHDF5Dataset"]

#: Version 2 records each file's chunk rows (the blocks of chunk-aligned training reads).
_INDEX_FORMAT = "trustml-shard-index-2"
#: Samples at least this large, asked for in a new order, are read one by one straight into
#: place (a shuffled window of 4 MiB volumes), instead of read in order and then reordered.
_SCATTER_ROW_BYTES = 1 << 18

#: Chunk cache per open dataset; smaller than HDF5Dataset's because many files may be open.
_CACHE_BYTES = 4 << 20


class ShardedHDF5Dataset(BaseDataset):
    """A dataset spread over many HDF5 files with the same layout, read as one index.

    Files are taken in sorted order (of their paths) and concatenated: sample ``i`` is row
    ``i - start[k]`` of file ``k``, where ``start`` holds the cumulative file lengths. Each file
    holds from one sample to many; the arrays of every file must have the shapes (apart from
    the sample axis) and dtypes of the first file's.

    Start-up opens each file once to read its arrays' lengths, shapes and dtypes (and the
    group ids); with ``index_cache`` that index is saved as JSON, keyed by the files' paths,
    sizes and modification times, and a later construction over unchanged files opens none.
    Files are opened lazily on read, in each process, and at most ``max_open`` stay open (the
    least recently used is closed), so thousands of shards do not exhaust file descriptors.
    Handles are dropped on pickling, as for :class:`HDF5Dataset`.

    Parameters
    ----------
    files : str, path-like or sequence of them
        A glob pattern (``"shards/*.h5"``, expanded and sorted), one file, or a list of files
        (sorted too).
    inputs, targets : str
        Dataset keys of the inputs ``(N_k, *input_shape)`` and targets ``(N_k,)`` or
        ``(N_k, D)`` in each file, as for :class:`HDF5Dataset`.
    groups : str, optional
        Dataset key of ``(N_k,)`` integer or string group ids in each file, concatenated.
    index_cache : path-like, optional
        JSON file for the index (e.g. ``OUT/checkpoints/data_index.json``); rebuilt when the
        set of files, a size or a modification time differs, or the keys changed.
    write_index : bool
        Write a rebuilt index to ``index_cache`` (default). ``False`` only reads a fresh cache;
        :meth:`save_index` writes it later (e.g. once an output folder is claimed).
    validate : bool
        Also scan every value for NaN/inf (and negative class labels) now, streamed (about
        8 MB at a time: one read of the data). A fresh ``index_cache`` written after a
        validation records it, and the files are not scanned again while unchanged.
    max_open : int
        Most files kept open at once per process.

    Attributes
    ----------
    files : list of pathlib.Path
        The shards in index order.
    lengths : numpy.ndarray of shape (n_files,), int64
        Samples per file.
    keys : dict
        ``{"inputs": ..., "targets": ..., "groups": ...}`` as given.

    Raises
    ------
    DataError
        One line naming the file: no file matches, a missing file, a file that is not HDF5 or
        is corrupt, a missing key, or arrays whose shape or dtype differ from the first file's.

    Notes
    -----
    Ground-truth masks are not supported for sharded data. A read groups the sorted indices by
    file and reads each file's rows at once (one slice when they are dense, else one point
    selection).

    Examples
    --------
    >>> ds = ShardedHDF5Dataset("shards/*.h5", inputs="/x", targets="/y", groups="/run")
    >>> x, y = ds.read(np.arange(64))
    """

    def __init__(
        self,
        files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        inputs: str = "/x",
        targets: str = "/y",
        groups: str | None = None,
        index_cache: str | os.PathLike[str] | None = None,
        *,
        validate: bool = True,
        max_open: int = 32,
        write_index: bool = True,
    ) -> None:
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise ValueError(f"Expected max_open >= 1, got {max_open!r}")
        self.files, described = _expand(files)
        self.keys: dict[str, str | None] = {"inputs": inputs, "targets": targets, "groups": groups}
        self._max_open = max_open
        self._open_files: OrderedDict[int, tuple[h5py.File, dict[str, h5py.Dataset]]]
        self._open_files = OrderedDict()
        self._pid: int | None = None
        cache = None if index_cache is None else Path(index_cache)
        _check_vanished(cache, self.files, self.keys)
        stats = [_stat(p) for p in self.files]
        index = _load_index(cache, self.files, stats, self.keys)
        #: Whether the index came from ``index_cache`` (no file was opened for it).
        self.index_cached = index is not None
        if index is None:
            index = self._build_index(stats)
        self._index = index
        #: The files as first given: names in sampled fingerprints (see :meth:`relocated`).
        self._origin = list(self.files)
        self.lengths = np.array([f["n"] for f in index["files"]], dtype=np.int64)
        self._chunk_rows_of: list[int | None] = [f["chunk_rows"] for f in index["files"]]
        self._starts = np.r_[0, np.cumsum(self.lengths)].astype(np.int64)
        n = int(self._starts[-1])
        g = None
        if groups is not None:
            g = check_groups(
                np.concatenate([np.asarray(v) for v in index["groups"]]),
                n,
                prefix=described,
                name=_show(groups),
            )
        self._init_meta(
            n_samples=n,
            input_shape=index["input_shape"],
            input_dtype=np.dtype(index["input_dtype"]),
            target_shape=index["target_shape"],
            target_dtype=np.dtype(index["target_dtype"]),
            groups=g,
            source=f"hdf5:{described}",
            layout=index["layout"],
            names=index["target_names"],
            prefix=described,
            input_name=_show(inputs),
            target_name=_show(targets),
        )
        scanned = validate and not index.get("validated")
        if scanned:
            self.validate()
            index["validated"] = True
        if cache is not None and write_index and (scanned or not self.index_cached):
            _save_index(cache, index)

    # -- the index ----------------------------------------------------------------------------
    def _build_index(self, stats: list[tuple[int, int]]) -> dict[str, Any]:
        xkey, ykey, gkey = self.keys["inputs"], self.keys["targets"], self.keys["groups"]
        assert xkey is not None and ykey is not None
        xname, yname = _show(xkey), _show(ykey)
        entries: list[dict[str, Any]] = []
        group_lists: list[list[Any]] = []
        first: dict[str, Any] = {}
        layout: str | None = None
        names: list[str] | None = None
        for path, (size, mtime) in zip(self.files, stats, strict=True):
            prefix = str(path)
            with _open_h5(path) as f:
                xds, yds = _dataset(f, xkey, prefix), _dataset(f, ykey, prefix)
                check_input_meta(xds.shape, xds.dtype, prefix=prefix, name=xname)
                n = int(xds.shape[0])
                check_target_meta(
                    yds.shape, yds.dtype, n, prefix=prefix, name=yname, input_name=xname
                )
                meta = {
                    "input_shape": [int(s) for s in xds.shape[1:]],
                    "input_dtype": xds.dtype.str,
                    "target_shape": [int(s) for s in yds.shape[1:]],
                    "target_dtype": yds.dtype.str,
                }
                if not first:
                    first = dict(meta, file=prefix)
                    layout = check_layout(
                        xds.attrs.get("layout"), xds.ndim, prefix=prefix, name=xname
                    )
                    declared = yds.attrs.get("target_names")
                    if declared is not None:
                        names = [
                            v.decode() if isinstance(v, bytes) else str(v)
                            for v in np.atleast_1d(declared)
                        ]
                else:
                    _same_layout(prefix, meta, first, xname, yname)
                if gkey is not None:
                    g = _read_groups(_dataset(f, gkey, prefix), n, prefix, _show(gkey))
                    if group_lists and (g.dtype.kind == "U") != (first["groups_kind"] == "U"):
                        raise DataError(
                            f"{prefix}: {_show(gkey)} holds {_kind(g)} group ids; the first file "
                            f"{first['file']} holds {_kind_name(first['groups_kind'])} ones"
                        )
                    first.setdefault("groups_kind", g.dtype.kind)
                    group_lists.append(g.tolist())
                chunk = int(xds.chunks[0]) if xds.chunks else None
            entries.append(
                {"path": str(path), "size": size, "mtime_ns": mtime, "n": n, "chunk_rows": chunk}
            )
        return {
            "format": _INDEX_FORMAT,
            "keys": self.keys,
            "files": entries,
            "input_shape": first["input_shape"],
            "input_dtype": first["input_dtype"],
            "target_shape": first["target_shape"],
            "target_dtype": first["target_dtype"],
            "layout": layout,
            "target_names": names,
            "groups": group_lists if gkey is not None else None,
        }

    # -- file handling --------------------------------------------------------------------------
    def _dataset(self, k: int, key: str) -> h5py.Dataset:
        if self._pid != os.getpid():  # handles inherited through fork belong to the parent
            self._open_files = OrderedDict()
            self._pid = os.getpid()
        entry = self._open_files.get(k)
        if entry is None:
            while len(self._open_files) >= self._max_open:
                _, (old, _) = self._open_files.popitem(last=False)
                with contextlib.suppress(Exception):
                    old.close()
            entry = (_open_h5(self.files[k]), {})
            self._open_files[k] = entry
        else:
            self._open_files.move_to_end(k)
        f, handles = entry
        if key not in handles:
            handles[key] = _dataset(f, key, str(self.files[k]))
        return handles[key]

    def close(self) -> None:
        """Close this process's open files (they are re-opened on the next read)."""
        if self._pid == os.getpid():
            for f, _ in self._open_files.values():
                with contextlib.suppress(Exception):
                    f.close()
        self._open_files = OrderedDict()
        self._pid = None

    def __enter__(self) -> ShardedHDF5Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open_files"] = OrderedDict()
        state["_pid"] = None
        return state

    # -- fingerprint hooks ----------------------------------------------------------------------
    def _fingerprint_structure(self) -> bytes:
        # Every file's header, read once (no values): names relative to the files' common
        # folder, so a staged or moved copy of the shards hashes the same.
        h = hashlib.sha256(super()._fingerprint_structure())
        used = {k: v for k, v in self.keys.items() if v is not None}
        # Names come from the files as first given: a relocated dataset (some files staged
        # elsewhere) hashes as the original.
        root = Path(os.path.commonpath([p.parent.resolve() for p in self._origin]))
        for path, origin in zip(self.files, self._origin, strict=True):
            size, _ = _stat(path)
            name = os.path.relpath(origin.resolve(), root)
            with _open_h5(path) as f:
                h.update(_file_structure(f, name, size, used, str(path)))
        return h.digest()

    def _fingerprint_bounds(self) -> np.ndarray:
        xkey = self.keys["inputs"]
        assert xkey is not None
        chunks = self._dataset(0, xkey).chunks
        step = _whole_chunks(BaseDataset._chunk_rows(self), chunks[0] if chunks else 1)
        return block_bounds(self._starts, step)

    # -- blocks, files and copies ---------------------------------------------------------------
    def block_boundaries(self) -> np.ndarray:
        """Whole HDF5 chunks of the inputs within each file, never across two files: a file
        shorter than its chunk (or contiguous and under about 8 MB) is one block.

        Returns
        -------
        numpy.ndarray of shape (K + 1,), int64
            ``[0, ..., N]``, as :meth:`BaseDataset.block_boundaries`.
        """
        default = BaseDataset._chunk_rows(self)
        parts = [
            np.arange(self._starts[k], self._starts[k + 1], chunk or default, dtype=np.int64)
            for k, chunk in enumerate(self._chunk_rows_of)
        ]
        return np.r_[np.concatenate(parts), self._starts[-1]].astype(np.int64)

    def file_indices(self, indices: Any) -> np.ndarray:
        """The files that hold samples ``indices``: sorted positions in :attr:`files`, shape
        ``(m,)``, int64."""
        idx = self._check_indices(indices)
        return np.unique(np.searchsorted(self._starts, idx, side="right") - 1).astype(np.int64)

    def relocated(self, copies: Mapping[int, str | os.PathLike[str]]) -> ShardedHDF5Dataset:
        """This dataset reading some files from copies (node-local staging), nothing re-scanned.

        Parameters
        ----------
        copies : mapping of int to path
            File position in :attr:`files` -> a byte-identical copy of that file.

        Returns
        -------
        ShardedHDF5Dataset
            The same samples, index, ``source`` and fingerprints; reads of file ``k`` go to
            ``copies[k]``.

        Raises
        ------
        DataError
            A copy is missing or its size differs from the original's.
        """
        new = copy.copy(self)
        new.__dict__.update(self.__getstate__())  # no handles shared with this dataset
        files = list(self.files)
        for k, path in copies.items():
            size, _ = _stat(Path(path))
            if size != self._index["files"][k]["size"]:
                raise DataError(
                    f"{path}: holds {size} bytes, and its original {self.files[k]} "
                    f"{self._index['files'][k]['size']}; not a copy of it"
                )
            files[k] = Path(path)
        new.files = files
        return new

    def save_index(self, path: str | os.PathLike[str]) -> None:
        """Write the index (files, sizes, modification times, lengths, group ids) as JSON to
        ``path``, atomically; a later construction with ``index_cache=path`` opens no file
        while they are unchanged. A write that fails is ignored (the cache is an optimisation).
        """
        _save_index(Path(path), self._index)

    # -- reading --------------------------------------------------------------------------------
    def _read_file(self, k: int, key: str, local: np.ndarray, out: np.ndarray, at: slice) -> None:
        """Rows ``local`` (sorted, distinct) of file ``k``'s ``key`` into ``out[at]``."""
        lo, hi = int(local[0]), int(local[-1]) + 1
        breaks = np.flatnonzero(np.diff(local) != 1) + 1
        try:
            ds = self._dataset(k, key)
            if out.flags.c_contiguous and 4 * (breaks.size + 1) <= local.size:
                # Runs of at least 4 rows on average (whole blocks): each read straight into
                # place, one copy of the bytes.
                first = int(at.start)
                starts, stops = np.r_[0, breaks].tolist(), np.r_[breaks, local.size].tolist()
                for a, b in zip(starts, stops, strict=True):
                    rows = np.s_[int(local[a]) : int(local[b - 1]) + 1]
                    ds.read_direct(out, rows, np.s_[first + a : first + b])
            elif hi - lo == local.size:
                out[at] = ds[lo:hi]
            elif hi - lo <= 2 * local.size:  # dense: one contiguous read beats a point selection
                out[at] = np.asarray(ds[lo:hi])[local - lo]
            else:
                out[at] = ds[local]
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"{self.files[k]}: cannot read {_show(key)} ({local.size} samples) ({one_line(exc)})"
            ) from None

    def _raw(self, idx: np.ndarray, *, inputs: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """Rows ``idx`` in their stored dtype. Large samples asked for in a new order (a
        shuffled window) are each read straight to their place: no reordering copy."""
        row = self._input_dtype.itemsize * int(np.prod(self.input_shape, dtype=np.int64))
        if not inputs or idx.size < 2 or row < _SCATTER_ROW_BYTES:
            return super()._raw(idx, inputs=inputs)
        order = np.argsort(idx, kind="stable")
        rows = idx[order]
        if np.any(np.diff(rows) == 0) or np.all(np.diff(order) == 1):
            return super()._raw(idx, inputs=inputs)  # repeats, or already in storage order
        _, y_sorted = self._raw_rows(rows, inputs=False)
        y = np.empty_like(y_sorted)
        y[order] = y_sorted
        x = np.empty((idx.size, *self.input_shape), dtype=self._input_dtype)
        file_of = np.searchsorted(self._starts, rows, side="right") - 1
        xkey = self.keys["inputs"]
        assert xkey is not None
        k = -1
        try:
            for j, (r, f) in enumerate(zip(rows.tolist(), file_of.tolist(), strict=True)):
                k = int(f)
                local = r - int(self._starts[k])
                dest = int(order[j])
                self._dataset(k, xkey).read_direct(
                    x, np.s_[local : local + 1], np.s_[dest : dest + 1]
                )
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"{self.files[k]}: cannot read {_show(xkey)} ({one_line(exc)})"
            ) from None
        return x, y

    def _raw_rows(
        self, idx: np.ndarray, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        file_of = np.searchsorted(self._starts, idx, side="right") - 1
        cuts = np.r_[0, np.flatnonzero(np.diff(file_of)) + 1, idx.size]
        x = np.empty((idx.size, *self.input_shape), dtype=self._input_dtype) if inputs else None
        y = np.empty((idx.size, *self._raw_target_shape), dtype=self._target_dtype)
        xkey, ykey = self.keys["inputs"], self.keys["targets"]
        assert xkey is not None and ykey is not None
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
            k = int(file_of[a])
            local = idx[a:b] - self._starts[k]
            if x is not None:
                self._read_file(k, xkey, local, x, np.s_[a:b])
            self._read_file(k, ykey, local, y, np.s_[a:b])
        return x, y


def _expand(files: Any) -> tuple[list[Path], str]:
    """The sorted shard paths and how to name them in messages (the pattern or the folder)."""
    if isinstance(files, str | os.PathLike):
        text = os.fspath(files)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise DataError(f"{text}: no files match this pattern")
            return [Path(p) for p in matches], text
        return [Path(text)], text
    if not isinstance(files, Sequence) or not files:
        raise TypeError(
            "Expected files to be a glob pattern, a path or a non-empty list of paths, "
            f"got {files!r}"
        )
    for p in files:
        if not isinstance(p, str | os.PathLike):
            raise TypeError(f"Expected each file to be a path, got {p!r}")
    paths = sorted(Path(p) for p in files)
    for a, b in zip(paths, paths[1:], strict=False):
        if a == b:
            raise DataError(f"{a}: listed twice in files")
    shown = str(paths[0]) if len(paths) == 1 else f"{paths[0]} .. {paths[-1]} ({len(paths)} files)"
    return paths, shown


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot access ({exc.strerror or one_line(exc)})") from None
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an HDF5 file")
    return int(st.st_size), int(st.st_mtime_ns)


def _open_h5(path: Path) -> h5py.File:
    # A small chunk cache per file: many shards may be open at once.
    return open_hdf5(path, cache_bytes=_CACHE_BYTES)


def _same_layout(
    prefix: str, meta: dict[str, Any], first: dict[str, Any], xname: str, yname: str
) -> None:
    for what, name in (("input", xname), ("target", yname)):
        shape, dtype = meta[f"{what}_shape"], np.dtype(meta[f"{what}_dtype"])
        shape0, dtype0 = first[f"{what}_shape"], np.dtype(first[f"{what}_dtype"])
        if shape != shape0 or dtype != dtype0:
            raise DataError(
                f"{prefix}: {name} has samples of shape {shape} and dtype {dtype}; the first "
                f"file {first['file']} has shape {shape0} and dtype {dtype0}"
            )


def _kind(g: np.ndarray) -> str:
    return _kind_name(g.dtype.kind)


def _kind_name(kind: str) -> str:
    return "string" if kind == "U" else "integer"


def _check_vanished(cache: Path | None, files: list[Path], keys: dict[str, Any]) -> None:
    """A file the cached index (an earlier run's, same keys) lists that no longer exists is an
    error naming it: a glob would otherwise match one file fewer and the data would silently
    shrink between two runs."""
    if cache is None or not cache.is_file():
        return
    try:
        index = json.loads(cache.read_text(encoding="utf-8"))
        if index.get("keys") != keys:
            return
        listed = [Path(e["path"]) for e in index["files"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # an unreadable or foreign cache is rebuilt, never trusted
    now = set(files)
    for path in listed:
        if path not in now and not path.exists():
            raise DataError(
                f"{path}: file not found (it was part of this dataset in the earlier run "
                f"indexed in {cache}; delete that index to run without it)"
            )


def _load_index(
    cache: Path | None, files: list[Path], stats: list[tuple[int, int]], keys: dict[str, Any]
) -> dict[str, Any] | None:
    """The cached index when it matches the files (paths, sizes, mtimes) and keys, else None."""
    if cache is None or not cache.is_file():
        return None
    try:
        index = json.loads(cache.read_text(encoding="utf-8"))
        entries = index["files"]
        fresh = (
            index.get("format") == _INDEX_FORMAT
            and index.get("keys") == keys
            and len(entries) == len(files)
            and all(
                e["path"] == str(p) and e["size"] == s and e["mtime_ns"] == m
                for e, p, (s, m) in zip(entries, files, stats, strict=True)
            )
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable or foreign cache is rebuilt, never trusted
    return index if fresh else None


def _save_index(cache: Path, index: dict[str, Any]) -> None:
    # Written atomically so concurrent ranks never read half a file; a cache that cannot be
    # written only costs the next start-up a re-scan, so it is not an error.
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(index, out)
            os.replace(tmp, cache)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
