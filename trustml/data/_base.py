"""The dataset interface every trustml dataset implements, and the subset view.

A subclass provides one hook, :meth:`BaseDataset._raw_rows` (rows in their stored dtype for
sorted, unique indices); reading in any order, batching, fingerprints, validation and subsets
are built on it here, streamed so that memory is bounded by the chunk size, not by ``N``.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trustml.data._fingerprint import block_bounds, resolve_mode, sampled_fingerprint
from trustml.exceptions import DataError
from trustml.utils.hashing import sha256_update_array
from trustml.utils.validation import check_positive_int

__all__ = ["BaseDataset"]

_FINGERPRINT_FORMAT = "trustml-data-fingerprint-1"


class BaseDataset(Dataset, abc.ABC):
    """Samples ``(x, y)`` of a scientific dataset, read in chunks.

    Attributes
    ----------
    n_samples : int
        Number of samples ``N`` (also ``len(dataset)``).
    input_shape : tuple of int
        Shape of one input, without the sample axis: ``(C, L)``, ``(C, H, W)``,
        ``(C, D, H, W)``, ``(C, T, D, H, W)`` or ``(T, F)``.
    target_shape : tuple of int
        ``()`` for classification (one integer label per sample), ``(D,)`` for regression.
        Regression targets stored as ``[N]`` are served as ``[N, 1]``.
    task_hint : str
        ``"classification"`` when the targets have an integer dtype, else ``"regression"``.
    groups : numpy.ndarray of shape (N,) or None
        Group ids (integers or strings), e.g. the simulation each sample comes from.
    source : str
        Where the data comes from, e.g. ``"builtin:cosmology2d"`` or ``"hdf5:/path/f.h5"``.
    layout : str or None
        Axis names of the full input array: ``"NCL"``, ``"NTF"``, ``"NCHW"``, ``"NCDHW"``,
        ``"NCTDHW"`` (or ``"NF"`` for tabular in-memory arrays). Rank-3 inputs are ambiguous;
        ``None`` there means the layout was not declared and the model decides.
    target_names : list of str
        One name per target column (regression) or per class ``0..n_classes-1``
        (classification). See :func:`trustml.data.target_names`.
    n_classes : int or None
        ``max label + 1`` for classification (or the number of declared class names), else None.
    mask_shape : tuple of int or None
        Shape of one sample's ground-truth mask as served by :meth:`read_masks` (the rank of
        ``input_shape``, each axis equal to the input's or 1, e.g. ``(1, H, W)`` for one mask
        shared by all channels), or None when the dataset has no masks.
    has_masks : bool
        Whether ground-truth masks are available (``mask_shape is not None``).

    Notes
    -----
    ``dataset[i]`` returns ``(x, y)`` tensors: ``x`` float32 of ``input_shape``, ``y`` float32 of
    shape ``(D,)`` or an int64 scalar. :meth:`read` and :meth:`iter_batches` return numpy arrays
    and are the fast paths (one sorted read per chunk).
    """

    n_samples: int
    input_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    task_hint: str
    groups: np.ndarray | None
    source: str
    layout: str | None
    mask_shape: tuple[int, ...] | None = None

    #: Bytes of raw rows handled at once by streaming passes (fingerprint, validate).
    _stream_bytes: int = 8 << 20

    def _init_meta(
        self,
        *,
        n_samples: int,
        input_shape: Sequence[int],
        input_dtype: np.dtype,
        target_shape: Sequence[int],
        target_dtype: np.dtype,
        groups: np.ndarray | None,
        source: str,
        layout: str | None,
        names: Sequence[str] | None,
        prefix: str,
        input_name: str,
        target_name: str,
    ) -> None:
        self.n_samples = int(n_samples)
        self.input_shape = tuple(int(s) for s in input_shape)
        self._input_dtype = np.dtype(input_dtype)
        self._target_dtype = np.dtype(target_dtype)
        self._raw_target_shape = tuple(int(s) for s in target_shape)
        self.task_hint = "classification" if self._target_dtype.kind in "iu" else "regression"
        self.target_shape = (
            () if self.task_hint == "classification" else (self._raw_target_shape or (1,))
        )
        self.groups = groups
        self.source = source
        self.layout = layout
        self._prefix = prefix
        self._input_name = input_name
        self._target_name = target_name
        self._names = None if names is None else [str(n) for n in names]
        self._n_classes: int | None = None
        if self._names is not None and self.task_hint == "regression":
            if len(self._names) != self.target_shape[0]:
                raise DataError(
                    f"{prefix}: {target_name} declares {len(self._names)} target names for "
                    f"{self.target_shape[0]} target columns"
                )

    def _init_view(
        self,
        parent: BaseDataset,
        *,
        n_samples: int,
        groups: np.ndarray | None,
        source: str,
        input_dtype: np.dtype | None = None,
    ) -> None:
        """Metadata of a dataset that reads through ``parent`` (a subset, a corrupted copy):
        the parent's shapes, dtypes, layout, names and masks."""
        self._init_meta(
            n_samples=n_samples,
            input_shape=parent.input_shape,
            input_dtype=parent._input_dtype if input_dtype is None else input_dtype,
            target_shape=parent._raw_target_shape,
            target_dtype=parent._target_dtype,
            groups=groups,
            source=source,
            layout=parent.layout,
            names=parent._names,
            prefix=parent._prefix,
            input_name=parent._input_name,
            target_name=parent._target_name,
        )
        self._stream_bytes = parent._stream_bytes
        self.mask_shape = parent.mask_shape

    # -- the one hook ---------------------------------------------------------------------
    @abc.abstractmethod
    def _raw_rows(
        self, idx: np.ndarray, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Rows ``idx`` (sorted, unique, in range) in their stored dtype; ``x`` is None unless ``inputs``."""

    def _raw_slice(
        self, start: int, stop: int, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        return self._raw_rows(np.arange(start, stop, dtype=np.int64), inputs=inputs)

    def _chunk_rows(self) -> int:
        """Rows per streaming chunk, about ``_stream_bytes`` of inputs and targets."""
        row = self._input_dtype.itemsize * int(np.prod(self.input_shape, dtype=np.int64))
        row += self._target_dtype.itemsize * int(np.prod(self._raw_target_shape, dtype=np.int64))
        return max(1, self._stream_bytes // max(row, 1))

    def block_boundaries(self) -> np.ndarray:
        """Where the storage's natural read blocks begin and end, along the sample axis.

        Training in chunk-aligned blocks (:class:`trustml.uq.BlockShuffle`) reads whole
        blocks: a block is read at about the cost of any part of it (one HDF5 chunk, one
        small file).

        Returns
        -------
        numpy.ndarray of shape (K + 1,), int64
            ``b_0 = 0 < b_1 < ... < b_K = N``: block ``j`` holds samples ``b_j .. b_{j+1}-1``.
            Here blocks of :meth:`_chunk_rows` rows (about 8 MB); datasets in files override
            it with their storage layout (HDF5 chunks, shard files).
        """
        return block_bounds(np.array([0, self.n_samples], dtype=np.int64), self._chunk_rows())

    # -- reading --------------------------------------------------------------------------
    def _check_indices(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.dtype.kind == "b":
            if idx.shape != (self.n_samples,):
                raise IndexError(
                    f"Expected a boolean mask of shape ({self.n_samples},), got {idx.shape}"
                )
            return np.flatnonzero(idx).astype(np.int64)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise IndexError(
                f"Expected a 1-D array of integer indices, got dtype {idx.dtype} and shape {idx.shape}"
            )
        idx = idx.astype(np.int64, copy=True)
        idx[idx < 0] += self.n_samples
        if idx.min() < 0 or idx.max() >= self.n_samples:
            bad = idx[(idx < 0) | (idx >= self.n_samples)][0]
            raise IndexError(f"Index {bad} is out of range for {self.n_samples} samples")
        return idx

    def _raw(self, idx: np.ndarray, *, inputs: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """Rows ``idx`` (checked, any order, repeats allowed) in their stored dtype."""
        if idx.size == 0:
            x = np.empty((0, *self.input_shape), dtype=self._input_dtype) if inputs else None
            return x, np.empty((0, *self._raw_target_shape), dtype=self._target_dtype)
        steps = np.diff(idx)
        if idx[-1] - idx[0] + 1 == idx.size and np.all(steps == 1):
            return self._raw_slice(int(idx[0]), int(idx[-1]) + 1, inputs=inputs)
        uniq, inverse = np.unique(idx, return_inverse=True)
        x, y = self._raw_rows(uniq, inputs=inputs)
        return (None if x is None else x[inverse]), y[inverse]

    def _convert(self, x: np.ndarray | None, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert x is not None, "inputs were read with inputs=False"  # internal invariant
        x = x.astype(np.float32, copy=False)
        if not x.flags.owndata:  # never hand out a view of stored arrays
            x = x.copy()
        if self.task_hint == "classification":
            y = y.astype(np.int64, copy=True)
        else:
            y = y.astype(np.float32, copy=True).reshape(len(y), *self.target_shape)
        return x, y

    def read(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Read samples in the given order.

        Parameters
        ----------
        indices : array of int of shape (n,), or boolean mask of shape (N,)
            Any order, repeats allowed, negative indices count from the end.

        Returns
        -------
        x : numpy.ndarray of shape (n, *input_shape), float32
        y : numpy.ndarray of shape (n, D) float32 (regression) or (n,) int64 (classification)

        Examples
        --------
        >>> x, y = dataset.read(np.array([5, 0, 5]))
        """
        x, y = self._raw(self._check_indices(indices))
        return self._convert(x, y)

    def iter_batches(
        self, indices: Any = None, batch_size: int = 256
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(x, y, idx)`` batches; memory is bounded by ``batch_size``.

        Parameters
        ----------
        indices : array of int of shape (n,), optional
            Samples to visit, in this order; default all samples in order.
        batch_size : int
            Samples per batch (the last batch may be smaller).

        Yields
        ------
        x : numpy.ndarray of shape (b, *input_shape), float32
        y : numpy.ndarray of shape (b, D) or (b,)
        idx : numpy.ndarray of shape (b,), int64
            The indices of this batch.
        """
        check_positive_int(batch_size, name="batch_size")
        if indices is None:
            for start in range(0, self.n_samples, batch_size):
                stop = min(start + batch_size, self.n_samples)
                x, y = self._convert(*self._raw_slice(start, stop))
                yield x, y, np.arange(start, stop, dtype=np.int64)
            return
        idx = self._check_indices(indices)
        for start in range(0, idx.size, batch_size):
            part = idx[start : start + batch_size]
            x, y = self._convert(*self._raw(part))
            yield x, y, part

    def _stream(
        self, *, inputs: bool = True
    ) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
        """All rows in order as ``(start, x, y)`` raw chunks of about ``_stream_bytes``."""
        step = self._chunk_rows()
        for start in range(0, self.n_samples, step):
            x, y = self._raw_slice(start, min(start + step, self.n_samples), inputs=inputs)
            yield start, x, y

    # -- ground-truth masks -----------------------------------------------------------------
    @property
    def has_masks(self) -> bool:
        """Whether the dataset has ground-truth masks (e.g. where the signal is)."""
        return self.mask_shape is not None

    def _raw_mask_rows(self, idx: np.ndarray) -> np.ndarray:
        """Stored masks of rows ``idx`` (sorted, unique, in range); only called with masks."""
        raise NotImplementedError(f"{type(self).__name__} has no masks")

    def _raw_masks(self, idx: np.ndarray) -> np.ndarray:
        """Stored masks of rows ``idx`` (checked, any order, repeats allowed, non-empty)."""
        if idx[-1] - idx[0] + 1 == idx.size and np.all(np.diff(idx) == 1):
            return self._raw_mask_rows(idx)
        uniq, inverse = np.unique(idx, return_inverse=True)
        return self._raw_mask_rows(uniq)[inverse]

    def read_masks(self, indices: Any) -> np.ndarray | None:
        """Ground-truth masks of the given samples, or None when the dataset has none.

        Parameters
        ----------
        indices : array of int of shape (n,), or boolean mask of shape (N,)
            As for :meth:`read`.

        Returns
        -------
        numpy.ndarray of shape (n, *mask_shape), bool, or None
            True inside the region that carries the signal. ``mask_shape`` has the rank of
            ``input_shape`` with axes of 1 where the mask is shared (``(1, H, W)`` for a
            per-pixel mask of a ``(C, H, W)`` input), so it broadcasts to ``read(indices)[0]``
            and is accepted as is by :func:`trustml.explain.localization`.

        Examples
        --------
        >>> ds = load_builtin("climate", seed=0, n=8)
        >>> ds.read_masks([0, 1]).shape
        (2, 1, 32, 32)
        """
        if self.mask_shape is None:
            return None
        idx = self._check_indices(indices)
        if idx.size == 0:
            return np.zeros((0, *self.mask_shape), dtype=bool)
        m = np.asarray(self._raw_masks(idx))
        return m.reshape(idx.size, *self.mask_shape) != 0

    # -- integrity ------------------------------------------------------------------------
    def fingerprint(self, mode: str = "full", *, seed: int = 0, sample_chunks: int = 64) -> str:
        """A fingerprint of the data: every byte (``"full"``) or its structure and a sample.

        Parameters
        ----------
        mode : {"full", "sampled", "auto"}
            ``"full"``: hex sha256 of inputs, targets and groups with their shapes and dtypes,
            streamed over every row. ``"sampled"``: ``"sampled-v1:"`` + hex sha256 of the
            structure (shapes, dtypes, groups; per HDF5 file its name, size and dataset
            metadata) and of at most ``sample_chunks`` seeded blocks of whole chunks; see
            :mod:`trustml.data._fingerprint` for what it does not detect. ``"auto"``:
            ``"sampled"`` when :meth:`stored_bytes` exceeds 10 GB, else ``"full"``.
        seed : int
            Seed of the sampled blocks (sampled only).
        sample_chunks : int
            Most blocks read (sampled only), whatever the size of the data.

        Returns
        -------
        str
            The two modes never give the same value (the sampled one carries its prefix).

        Notes
        -----
        Ground-truth masks are not part of either (they are what explanations are checked
        against, not what a model sees). The full value depends only on the array values,
        shapes and stored dtypes (canonical little-endian), not on the file, HDF5 chunking,
        compression or byte order, so an :class:`ArrayDataset` and the HDF5 file it was
        exported to hash the same. The sampled value depends on the files' layout too, and
        not on their modification times or folders, so a copy of the files hashes the same.

        Examples
        --------
        >>> ds.fingerprint()  # every byte, as trustml has always done
        >>> ds.fingerprint("auto")  # sampled above 10 GB
        """
        resolved = self.fingerprint_plan(mode, seed=seed, sample_chunks=sample_chunks)["mode"]
        if resolved == "sampled":
            return sampled_fingerprint(self, seed=seed, sample_chunks=sample_chunks)
        return self._full_fingerprint()

    def fingerprint_plan(
        self, mode: str = "full", *, seed: int = 0, sample_chunks: int = 64
    ) -> dict[str, Any]:
        """How :meth:`fingerprint` would hash the data, without reading any values.

        Returns
        -------
        dict
            ``{"mode": "full"}``, or ``{"mode": "sampled", "seed": ..., "chunks": m, "of": K,
            "rows_per_chunk": r}``: ``m`` of the ``K`` blocks of up to ``r`` rows are read.
        """
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"Expected seed to be an int >= 0, got {seed!r}")
        check_positive_int(sample_chunks, name="sample_chunks")
        resolved = resolve_mode(mode, self.stored_bytes())
        if resolved == "full":
            return {"mode": "full"}
        bounds = self._fingerprint_bounds()
        n_blocks = int(bounds.size - 1)
        return {
            "mode": "sampled",
            "seed": seed,
            "chunks": min(sample_chunks, n_blocks),
            "of": n_blocks,
            "rows_per_chunk": int(np.diff(bounds).max(initial=0)),
        }

    def stored_bytes(self) -> int:
        """Bytes of the stored inputs and targets, from shapes and item sizes (nothing read)."""
        row = self._input_dtype.itemsize * int(np.prod(self.input_shape, dtype=np.int64))
        row += self._target_dtype.itemsize * int(np.prod(self._raw_target_shape, dtype=np.int64))
        return self.n_samples * row

    def _fingerprint_header(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "format": _FINGERPRINT_FORMAT,
            "inputs": {
                "shape": [self.n_samples, *self.input_shape],
                "dtype": _canonical(self._input_dtype),
            },
            "targets": {
                "shape": [self.n_samples, *self._raw_target_shape],
                "dtype": _canonical(self._target_dtype),
            },
            "groups": None,
        }
        if self.groups is not None:
            header["groups"] = {
                "shape": [self.n_samples],
                "dtype": "str" if self.groups.dtype.kind == "U" else "int64",
            }
        return header

    def _fingerprint_structure(self) -> bytes:
        """Digest of what a sampled fingerprint hashes besides the sampled rows.

        Here the shapes, dtypes and group ids; file-backed datasets add their files' names,
        sizes and HDF5 metadata.
        """
        h = hashlib.sha256(json.dumps(self._fingerprint_header(), sort_keys=True).encode())
        if self.groups is not None:
            h.update(_hash_groups(self.groups))
        return h.digest()

    def _fingerprint_bounds(self) -> np.ndarray:
        """Boundaries of the blocks a sampled fingerprint draws from: ``[0, ..., N]``."""
        return block_bounds(np.array([0, self.n_samples], dtype=np.int64), self._chunk_rows())

    def _full_fingerprint(self) -> str:
        hx, hy = hashlib.sha256(), hashlib.sha256()
        for _, x, y in self._stream():
            assert x is not None  # streamed with inputs
            sha256_update_array(hx, x)
            sha256_update_array(hy, y)
        h = hashlib.sha256()
        h.update(json.dumps(self._fingerprint_header(), sort_keys=True).encode())
        h.update(hx.digest())
        h.update(hy.digest())
        if self.groups is not None:
            h.update(_hash_groups(self.groups))
        return h.hexdigest()

    def validate(self) -> None:
        """Check every value, streamed: inputs and targets finite, class labels >= 0.

        Class labels must also be below the number of declared ``target_names``, if any.

        Raises
        ------
        DataError
            Naming the array, the number of bad values and the first bad sample, e.g.
            ``"f.h5: '/x' has 3 NaN/inf values, first at sample 17"``.
        """
        x_float = self._input_dtype.kind == "f"
        y_float = self._target_dtype.kind == "f"
        declared = None if (y_float or self._names is None) else len(self._names)
        bad = {"x": [0, -1], "y": [0, -1]}
        for start, x, y in self._stream(inputs=x_float):
            for key, arr, check in (("x", x, x_float), ("y", y, True)):
                if not check or arr is None:
                    continue
                flat = arr.reshape(len(arr), -1)
                if key == "x" or y_float:
                    mask = ~np.isfinite(flat)
                else:
                    mask = (flat < 0) if declared is None else (flat < 0) | (flat >= declared)
                count = int(mask.sum())
                if count:
                    if bad[key][1] < 0:
                        bad[key][1] = start + int(np.flatnonzero(mask.any(axis=1))[0])
                    bad[key][0] += count
        for key, name in (("x", self._input_name), ("y", self._target_name)):
            count, first = bad[key]
            if count:
                if key == "x" or y_float:
                    what = "NaN/inf values"
                elif declared is None:
                    what = "negative class labels"
                else:
                    what = f"class labels outside 0..{declared - 1}"
                raise DataError(
                    f"{self._prefix}: {name} has {count} {what}, first at sample {first}"
                )

    def check_targets_vary(self, indices: Any = None, *, split: str | None = None) -> None:
        """Check that every regression target varies over the samples (streamed, targets only).

        A constant target column cannot be learned or scored: its spread is 0, so standardising
        it, the climatology baseline and every Gaussian score divide by zero. Classification
        datasets, and fewer than two samples, are not checked.

        Parameters
        ----------
        indices : array of int of shape (n,), or boolean mask of shape (N,), optional
            The samples to check (e.g. the training split); default all.
        split : str, optional
            A name for those samples in the message, e.g. ``"train"``.

        Raises
        ------
        DataError
            Naming the file (or source), the targets array, the column and its one value, e.g.
            ``"d.h5: '/y' target 1 ('n') is constant (every sample 3.0); a regression target
            must vary"``.
        """
        if self.task_hint != "regression":
            return
        idx = None if indices is None else np.sort(self._check_indices(indices))
        n = self.n_samples if idx is None else idx.size
        if n < 2:
            return
        row = self._target_dtype.itemsize * int(np.prod(self._raw_target_shape, dtype=np.int64))
        step = max(1, self._stream_bytes // max(row, 1))
        lo: np.ndarray | None = None
        hi: np.ndarray | None = None
        for start in range(0, n, step):
            if idx is None:
                _, y = self._raw_slice(start, min(start + step, n), inputs=False)
            else:
                _, y = self._raw(idx[start : start + step], inputs=False)
            flat = y.reshape(len(y), -1)
            b_lo, b_hi = flat.min(axis=0), flat.max(axis=0)
            lo = b_lo if lo is None else np.minimum(lo, b_lo)
            hi = b_hi if hi is None else np.maximum(hi, b_hi)
        assert lo is not None and hi is not None  # n >= 2 rows were read
        constant = np.flatnonzero(lo == hi)  # NaN never compares equal: validate() names it
        if constant.size == 0:
            return
        j = int(constant[0])
        names = self.target_names
        label = f" ({names[j]!r})" if j < len(names) and names[j] != f"y{j}" else ""
        where = f" in the {split} split ({n} samples)" if split else ""
        value = np.format_float_positional(lo[j], trim="0")
        more = ""
        if constant.size > 1:
            others = ", ".join(str(int(k)) for k in constant[1:])
            plural = constant.size > 2
            more = f" (as {'are targets' if plural else 'is target'} {others})"
        raise DataError(
            f"{self._prefix}: {self._target_name} target {j}{label} is constant{where} "
            f"(every sample {value}){more}; a regression target must vary"
        )

    # -- classes and names ------------------------------------------------------------------
    @property
    def n_classes(self) -> int | None:
        if self.task_hint != "classification":
            return None
        if self._n_classes is None:
            if self._names is not None:
                self._n_classes = len(self._names)
            else:
                top = -1
                for _, _, y in self._stream(inputs=False):
                    top = max(top, int(y.max()))
                self._n_classes = top + 1
        return self._n_classes

    @property
    def target_names(self) -> list[str]:
        if self._names is not None:
            return list(self._names)
        if self.task_hint == "classification":
            return [str(k) for k in range(self.n_classes or 0)]
        return [f"y{k}" for k in range(self.target_shape[0])]

    # -- views and torch protocol -----------------------------------------------------------
    def subset(self, indices: Any) -> BaseDataset:
        """A view of the samples ``indices`` (in that order); nothing is copied or re-opened.

        Parameters
        ----------
        indices : array of int of shape (n,), or boolean mask of shape (N,)

        Returns
        -------
        BaseDataset
            With ``n_samples == n``, the same ``target_names``/``n_classes`` as this dataset and
            ``groups`` and the masks (:meth:`read_masks`) restricted to the subset.
        """
        return _Subset(self, self._check_indices(indices))

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"Expected an integer index, got {type(i).__name__}")
        if not -self.n_samples <= i < self.n_samples:
            raise IndexError(f"Index {i} is out of range for {self.n_samples} samples")
        x, y = self.read(np.array([i]))
        y0 = torch.from_numpy(y[0]) if y.ndim > 1 else torch.tensor(y[0])
        return torch.from_numpy(x[0]), y0

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched fetch used by :class:`torch.utils.data.DataLoader`: one read per batch."""
        x, y = self.read(np.asarray(indices, dtype=np.int64))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        return [(xt[k], yt[k]) for k in range(len(x))]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, n_samples={self.n_samples}, "
            f"input_shape={self.input_shape}, target_shape={self.target_shape}, "
            f"task_hint={self.task_hint!r})"
        )


class _Subset(BaseDataset):
    """Samples ``index`` of ``parent``, read through the parent (one sorted read per chunk)."""

    def __init__(self, parent: BaseDataset, index: np.ndarray) -> None:
        self._parent = parent
        self._index = index
        self._init_view(
            parent,
            n_samples=index.size,
            groups=None if parent.groups is None else parent.groups[index],
            source=f"{parent.source}[{index.size} of {parent.n_samples}]",
        )

    def _raw_mask_rows(self, idx: np.ndarray) -> np.ndarray:
        return self._parent._raw_masks(self._index[idx])

    def _raw_rows(
        self, idx: np.ndarray, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        return self._parent._raw(self._index[idx], inputs=inputs)

    def block_boundaries(self) -> np.ndarray:
        """The parent's blocks seen through the subset: a new block starts wherever the next
        sample lies in another parent block (consecutive samples of one parent block, gaps
        allowed, are read together)."""
        if self.n_samples == 0:
            return np.zeros(1, dtype=np.int64)
        parent = self._parent.block_boundaries()
        block = np.searchsorted(parent, self._index, side="right") - 1
        cuts = np.flatnonzero(np.diff(block)) + 1
        return np.r_[0, cuts, self.n_samples].astype(np.int64)

    def _raw_slice(
        self, start: int, stop: int, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        return self._parent._raw(self._index[start:stop], inputs=inputs)

    @property
    def n_classes(self) -> int | None:
        return self._parent.n_classes

    @property
    def target_names(self) -> list[str]:
        return self._parent.target_names

    def subset(self, indices: Any) -> BaseDataset:
        return _Subset(self._parent, self._index[self._check_indices(indices)])


def _canonical(dtype: np.dtype) -> str:
    return dtype.newbyteorder("<").str if dtype.itemsize > 1 else dtype.str


def _hash_groups(groups: np.ndarray) -> bytes:
    h = hashlib.sha256()
    if groups.dtype.kind == "U":
        for g in groups.tolist():
            b = g.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        sha256_update_array(h, groups.astype(np.int64))
    return h.digest()
