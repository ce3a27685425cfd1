"""What scoring reads from the splits: targets, input digests, last time steps; and what the
report says about the splits from them (duplicates across splits, target statistics)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SplitScan", "duplicates", "scan_split", "target_stats"]


@dataclass(frozen=True)
class SplitScan:
    """One split, read once.

    Attributes
    ----------
    y : ndarray
        Class labels ``(n,)`` int64, or regression targets ``(n, D)`` float64.
    hashes : list of bytes
        A digest of every sample's input values (exact duplicates have equal digests).
    last : ndarray of shape (n, F) or None
        The last time step of sequence inputs ``(n, T, F)``, when asked for.
    """

    y: np.ndarray
    hashes: list[bytes]
    last: np.ndarray | None


def scan_split(
    ds: Any, indices: np.ndarray, task: str, *, last_step: bool = False, batch_size: int = 1024
) -> SplitScan:
    """One streamed pass over a split: what scoring needs from its samples."""
    ys: list[np.ndarray] = []
    hashes: list[bytes] = []
    lasts: list[np.ndarray] = []
    for start in range(0, len(indices), batch_size):
        x, y = ds.read(indices[start : start + batch_size])
        x = np.ascontiguousarray(x)
        hashes.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x)
        ys.append(y)
        if last_step:
            lasts.append(x[:, -1, :])
    y = np.concatenate(ys)
    y = y.astype(np.int64) if task == "classification" else y.astype(np.float64).reshape(len(y), -1)
    return SplitScan(y, hashes, np.concatenate(lasts) if last_step else None)


def duplicates(hashes: Mapping[str, list[bytes]]) -> dict[str, int]:
    """Samples of the later split whose inputs also occur in the earlier one, per pair."""
    sets = {k: set(v) for k, v in hashes.items()}
    order = [k for k in ("train", "validation", "calibration", "test") if k in hashes]
    out = {}
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            out[f"{a}_{b}"] = int(sum(h in sets[a] for h in hashes[b]))
    return out


def target_stats(
    ys: Mapping[str, np.ndarray], task: str, names: list[str], n_classes: int
) -> dict[str, Any]:
    """Per split: mean/std/min/max of each target, or class counts."""
    out: dict[str, Any] = {}
    for split, y in ys.items():
        if task == "classification":
            out[split] = {"class_counts": np.bincount(y, minlength=n_classes).tolist()}
            continue
        out[split] = {
            name: {
                "mean": float(y[:, j].mean()),
                "std": float(y[:, j].std(ddof=1)) if len(y) > 1 else 0.0,
                "min": float(y[:, j].min()),
                "max": float(y[:, j].max()),
            }
            for j, name in enumerate(names)
        }
    return out
