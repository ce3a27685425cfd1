"""Sampled dataset fingerprints: the structure of the data plus a seeded sample of whole chunks.

A full fingerprint reads every byte, which takes hours for a dataset of many terabytes. A
*sampled* fingerprint (``"sampled-v1:<sha256>"``) hashes instead

- the structure: the shapes and stored dtypes of inputs and targets, the group ids (already held
  in memory) and, for datasets in HDF5 files, per file its name (relative to the common folder
  of the files), its size in bytes and the metadata of the datasets used (shape, dtype,
  chunking, filters, attributes), over every file;
- the bytes of at most ``sample_chunks`` blocks of rows spread over the data: the rows are cut
  into blocks of whole HDF5 chunks (along the sample axis, about 8 MB, never across two files),
  the blocks into ``sample_chunks`` equal strata, and one block is drawn from each stratum with
  ``numpy.random.default_rng(seed)``; with fewer blocks than that, every block is read.

What it does not detect, by construction: a change of values inside a block that was not
sampled, when the file keeps its size and its metadata (an in-place edit of a few values of an
uncompressed file, for instance). Modification times and folders are *not* hashed, on purpose:
a copy of the data (node-local staging, another site, ``rsync`` without ``-t``) fingerprints the
same, so ``trustml verify`` works on it. A full fingerprint has none of these gaps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml.utils.hashing import sha256_update_array

__all__ = [
    "FINGERPRINT_MODES",
    "SAMPLED_ABOVE_BYTES",
    "SAMPLED_PREFIX",
    "block_bounds",
    "h5_dataset_meta",
    "sample_blocks",
    "sampled_fingerprint",
]

#: The values of ``mode``; ``"auto"`` is ``"sampled"`` above :data:`SAMPLED_ABOVE_BYTES`.
FINGERPRINT_MODES = ("auto", "full", "sampled")
#: Stored bytes (inputs and targets, from shapes and item sizes) above which ``auto`` samples.
SAMPLED_ABOVE_BYTES = 10 * 1000**3
#: Every sampled fingerprint starts with this, so it can never equal a full one.
SAMPLED_PREFIX = "sampled-v1:"
_FORMAT = "trustml-data-fingerprint-sampled-1"


def resolve_mode(mode: str, stored_bytes: int) -> str:
    """``"full"`` or ``"sampled"``; ``"auto"`` samples above :data:`SAMPLED_ABOVE_BYTES`."""
    if mode not in FINGERPRINT_MODES:
        raise ValueError(
            "The 'mode' parameter of fingerprint must be one of "
            f"{{{', '.join(repr(m) for m in FINGERPRINT_MODES)}}}. Got {mode!r} instead."
        )
    if mode == "auto":
        return "sampled" if stored_bytes > SAMPLED_ABOVE_BYTES else "full"
    return mode


def block_bounds(starts: np.ndarray, step: int) -> np.ndarray:
    """Boundaries ``b_0 = 0 < ... < b_K = N`` of blocks of ``step`` rows within each file.

    ``starts`` holds the first row of each file and ``N`` last (``[0, N]`` for one file).
    """
    parts = [
        np.arange(a, b, step, dtype=np.int64)
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True)
        if b > a
    ]
    return np.r_[np.concatenate(parts) if parts else np.zeros(0, np.int64), starts[-1]].astype(
        np.int64
    )


def sample_blocks(n_blocks: int, *, seed: int, sample_chunks: int) -> np.ndarray:
    """Sorted indices of the sampled blocks: one per stratum of ``n_blocks / sample_chunks``."""
    m = min(sample_chunks, n_blocks)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    edges = (np.arange(m + 1, dtype=np.int64) * n_blocks) // m
    rng = np.random.default_rng(seed)
    return rng.integers(edges[:-1], edges[1:]).astype(np.int64)


def sampled_fingerprint(ds: Any, *, seed: int, sample_chunks: int) -> str:
    """``"sampled-v1:"`` + hex sha256 of the structure of ``ds`` and its sampled blocks."""
    bounds = ds._fingerprint_bounds()
    picks = sample_blocks(bounds.size - 1, seed=seed, sample_chunks=sample_chunks)
    header = {
        "format": _FORMAT,
        "seed": seed,
        "sample_chunks": sample_chunks,
        "n_blocks": int(bounds.size - 1),
        "blocks": [[int(bounds[i]), int(bounds[i + 1])] for i in picks.tolist()],
    }
    h = hashlib.sha256()
    h.update(json.dumps(header, sort_keys=True).encode())
    h.update(ds._fingerprint_structure())
    for i in picks.tolist():
        x, y = ds._raw_slice(int(bounds[i]), int(bounds[i + 1]))
        assert x is not None  # read with inputs
        sha256_update_array(h, x)
        sha256_update_array(h, y)
    return SAMPLED_PREFIX + h.hexdigest()


def h5_dataset_meta(ds: Any) -> dict[str, Any]:
    """What an HDF5 dataset's header says: shape, dtype, chunking, filters and attributes."""
    return {
        "shape": [int(s) for s in ds.shape],
        "dtype": str(ds.dtype),
        "chunks": None if ds.chunks is None else [int(c) for c in ds.chunks],
        "compression": ds.compression,
        "compression_opts": _jsonable(ds.compression_opts),
        "shuffle": bool(ds.shuffle),
        "fletcher32": bool(ds.fletcher32),
        "scaleoffset": _jsonable(ds.scaleoffset),
        "attrs": {str(k): _jsonable(v) for k, v in sorted(ds.attrs.items())},
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
