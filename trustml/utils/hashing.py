"""Streaming sha256 over files and arrays."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

__all__ = ["sha256_file", "sha256_update_array"]


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def sha256_update_array(h: hashlib._Hash, arr: np.ndarray) -> None:
    """Feed an array chunk into ``h`` in a layout-independent way (C order, little endian)."""
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    h.update(a.tobytes())
