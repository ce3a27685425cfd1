"""Reproducible train/calibration/test splits, optionally keeping whole groups together."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml.data._checks import check_groups
from trustml.exceptions import DataError
from trustml.utils.seeding import SeedLike, child

__all__ = ["split_indices"]

_TOLERANCE = 1e-6
_IMPROVE_PASSES = 50  # each move lowers the size error; converges well before this


def split_indices(
    n_samples: int,
    fractions: Mapping[str, float],
    *,
    seed: SeedLike,
    groups: Any = None,
) -> dict[str, np.ndarray]:
    """Split ``range(n_samples)`` into named parts, reproducibly.

    Parameters
    ----------
    n_samples : int
        Number of samples ``N``.
    fractions : mapping of str to float
        E.g. ``{"train": 0.7, "calibration": 0.15, "test": 0.15}``; each > 0, summing to 1
        (tolerance 1e-6).
    seed : int, numpy.random.SeedSequence or None
        The permutation comes from ``child(seed, "split")``.
    groups : array of shape (N,), optional
        Integer or string group ids. Whole groups are assigned: no group appears in two
        splits. Groups are visited in a seeded random order and each goes to the split
        furthest below its target size, then single-group moves that bring the sizes closer
        to ``fractions * N`` are applied; every split gets at least one group.

    Returns
    -------
    dict of str to numpy.ndarray
        Same keys and order as ``fractions``; sorted int64 indices, every index in exactly
        one split. Without groups the sizes are ``fractions * N`` rounded by largest remainder
        (at least 1 each).

    Raises
    ------
    DataError
        (a ``ValueError``) for invalid fractions, ``n_samples`` smaller than the number of
        splits, groups of the wrong length, or fewer groups than splits.

    Examples
    --------
    >>> parts = split_indices(100, {"train": 0.8, "test": 0.2}, seed=0)
    >>> [len(v) for v in parts.values()]
    [80, 20]
    """
    names, frac = _check_fractions(fractions)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise DataError(f"split_indices: n_samples must be a positive int, got {n_samples!r}")
    n, k = int(n_samples), len(names)
    if n < k:
        raise DataError(f"split_indices: {k} splits need at least {k} samples, got {n}")
    rng = np.random.default_rng(child(seed, "split"))
    if groups is None:
        bounds = np.concatenate([[0], np.cumsum(_apportion(n, frac))])
        perm = rng.permutation(n)
        return {
            name: np.sort(perm[bounds[s] : bounds[s + 1]]).astype(np.int64)
            for s, name in enumerate(names)
        }
    g = check_groups(groups, n, prefix="split_indices", name="'groups'")
    _, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if len(counts) < k:
        raise DataError(f"split_indices: {k} splits need at least {k} groups, got {len(counts)}")
    assign = _assign_groups(counts, frac * n, rng)
    of_sample = assign[inverse.ravel()]
    return {name: np.flatnonzero(of_sample == s).astype(np.int64) for s, name in enumerate(names)}


def _check_fractions(fractions: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    if not isinstance(fractions, Mapping) or not fractions:
        raise DataError(
            f"split_indices: fractions must be a non-empty mapping of name to fraction, got {fractions!r}"
        )
    for name, value in fractions.items():
        if not isinstance(name, str) or not name:
            raise DataError(f"split_indices: split names must be non-empty strings, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
            raise DataError(f"split_indices: fraction {name!r} must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise DataError(f"split_indices: fraction {name!r} must be > 0, got {value!r}")
    total = float(sum(fractions.values()))
    if abs(total - 1.0) > _TOLERANCE:
        raise DataError(
            f"split_indices: fractions must sum to 1, got {total:.6g} "
            f"({', '.join(f'{k}={v}' for k, v in fractions.items())})"
        )
    return list(fractions), np.array([float(v) for v in fractions.values()])


def _apportion(n: int, frac: np.ndarray) -> np.ndarray:
    """Integer sizes summing to ``n``, nearest to ``frac * n`` (largest remainder), each >= 1."""
    raw = frac * n
    sizes = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - sizes), kind="stable")
    sizes[order[: n - int(sizes.sum())]] += 1
    while (sizes == 0).any():
        sizes[np.argmax(sizes)] -= 1
        sizes[np.flatnonzero(sizes == 0)[0]] += 1
    return sizes


def _assign_groups(counts: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split index of each group: seeded greedy fill, then size-improving single moves."""
    n_groups, k = len(counts), len(targets)
    sizes = [int(c) for c in counts]
    goal = [float(t) for t in targets]
    filled, members = [0] * k, [0] * k
    assign = [0] * n_groups
    order = rng.permutation(n_groups).tolist()
    for pos, gi in enumerate(order):
        empty = [s for s in range(k) if members[s] == 0]
        candidates = empty if len(empty) >= n_groups - pos else range(k)
        s = max(candidates, key=lambda j: goal[j] - filled[j])
        assign[gi] = s
        filled[s] += sizes[gi]
        members[s] += 1
    for _ in range(_IMPROVE_PASSES):
        moved = False
        for gi in order:
            a, c = assign[gi], sizes[gi]
            if members[a] == 1:
                continue
            keep_a = abs(filled[a] - goal[a]) - abs(filled[a] - c - goal[a])
            best, gain = -1, 1e-9
            for b in range(k):
                if b != a:
                    g = keep_a + abs(filled[b] - goal[b]) - abs(filled[b] + c - goal[b])
                    if g > gain:
                        best, gain = b, g
            if best >= 0:
                assign[gi] = best
                filled[a] -= c
                filled[best] += c
                members[a] -= 1
                members[best] += 1
                moved = True
        if not moved:
            break
    return np.asarray(assign, dtype=np.int64)
