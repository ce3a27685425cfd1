"""Reproducible train/calibration/test splits: random (optionally keeping whole groups
together) or temporal (contiguous blocks in sample order, with a gap between them)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml.data._checks import check_groups
from trustml.exceptions import DataError
from trustml.utils.seeding import SeedLike, child

__all__ = ["split_indices", "temporal_split_indices"]

_TOLERANCE = 1e-6
_IMPROVE_PASSES = 50  # each move lowers the size error; converges well before this


def split_indices(
    n_samples: int,
    fractions: Mapping[str, float],
    *,
    seed: SeedLike,
    groups: Any = None,
    order: str = "random",
    gap: int = 0,
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
    order : {"random", "temporal"}, default "random"
        ``"temporal"``: contiguous blocks in sample order, the first split (in the order of
        ``fractions``) the earliest; see :func:`temporal_split_indices` (``seed`` is unused).
    gap : int, default 0
        Temporal order only: samples dropped at each boundary between two splits.

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
        splits, groups of the wrong length, or fewer groups than splits, an unknown ``order``,
        or ``gap`` other than 0 with ``order="random"``.

    Examples
    --------
    >>> parts = split_indices(100, {"train": 0.8, "test": 0.2}, seed=0)
    >>> [len(v) for v in parts.values()]
    [80, 20]
    """
    if order == "temporal":
        return temporal_split_indices(n_samples, fractions, gap=gap, groups=groups)
    if order != "random":
        raise DataError(f"split_indices: order must be 'random' or 'temporal', got {order!r}")
    if gap != 0:
        raise DataError(
            f"split_indices: gap={gap!r} applies only to order='temporal' (random splits "
            "have no boundaries in time)"
        )
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


def temporal_split_indices(
    n_samples: int,
    fractions: Mapping[str, float],
    *,
    gap: int = 0,
    groups: Any = None,
) -> dict[str, np.ndarray]:
    """Split samples in time order into contiguous blocks, with ``gap`` samples between them.

    Sample index is taken as time order (as in the ``enso`` builtin). The first split in the
    order of ``fractions`` gets the earliest samples, the next one the following block, and so
    on: ``{"train": .7, "calibration": .15, "test": .15}`` trains on the past and tests on the
    most recent samples. ``gap`` samples are dropped at each boundary, so that inputs built from
    sliding windows of ``gap + 1`` time steps (targets included) never overlap across splits:
    for windows of ``w`` inputs and a next-step target, ``gap = w`` keeps every time step of a
    later split out of the earlier split's windows and targets.

    Parameters
    ----------
    n_samples : int
        Number of samples ``N``, in time order.
    fractions : mapping of str to float
        Each > 0, summing to 1; applied to the ``N - gap * (k - 1)`` samples kept (``k``
        splits), sizes rounded by largest remainder (at least 1 each).
    gap : int, default 0
        Samples dropped between consecutive splits (they belong to no split).
    groups : array of shape (N,), optional
        Group ids whose samples are consecutive in time (e.g. the year of each sample). Each
        boundary is moved to the nearest change of group, so no group is in two splits.

    Returns
    -------
    dict of str to numpy.ndarray
        Same keys and order as ``fractions``; sorted int64 indices forming consecutive
        blocks, ``parts[a].max() + gap < parts[b].min()`` for ``a`` before ``b`` (equal to
        ``gap + 1`` without groups).

    Raises
    ------
    DataError
        For invalid fractions or ``gap``, too few samples (``N < k + gap * (k - 1)``), groups of
        the wrong length, groups that are not consecutive runs, or too few group boundaries.

    Examples
    --------
    >>> parts = temporal_split_indices(100, {"train": 0.6, "calibration": 0.2, "test": 0.2}, gap=5)
    >>> [(int(v[0]), int(v[-1])) for v in parts.values()]
    [(0, 53), (59, 76), (82, 99)]
    """
    names, frac = _check_fractions(fractions)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise DataError(
            f"temporal_split_indices: n_samples must be a positive int, got {n_samples!r}"
        )
    if isinstance(gap, bool) or not isinstance(gap, int | np.integer) or gap < 0:
        raise DataError(f"temporal_split_indices: gap must be an int >= 0, got {gap!r}")
    n, k, gap = int(n_samples), len(names), int(gap)
    usable = n - gap * (k - 1)
    if usable < k:
        raise DataError(
            f"temporal_split_indices: {k} splits with gap {gap} need at least "
            f"{k + gap * (k - 1)} samples, got {n}"
        )
    if groups is None:
        sizes = _apportion(usable, frac)
        starts = np.concatenate([[0], np.cumsum(sizes[:-1] + gap)])
        return {
            name: np.arange(starts[s], starts[s] + sizes[s], dtype=np.int64)
            for s, name in enumerate(names)
        }
    g = check_groups(groups, n, prefix="temporal_split_indices", name="'groups'")
    changes = np.flatnonzero(g[1:] != g[:-1]) + 1  # first sample of each new run
    run_ids = g[np.r_[0, changes]]
    if len(np.unique(run_ids)) != len(run_ids):
        values, counts = np.unique(run_ids, return_counts=True)
        bad = values[np.argmax(counts)].item()
        raise DataError(
            "temporal_split_indices: 'groups' must be consecutive in time order for a temporal "
            f"split; group {bad!r} appears in {int(counts.max())} separate runs"
        )
    ideal_ends = np.cumsum(frac)[:-1] * usable + gap * np.arange(k - 1)
    parts: dict[str, np.ndarray] = {}
    start = 0
    for s, name in enumerate(names[:-1]):
        room = n - (k - 1 - s) * (gap + 1)  # later splits need a gap and a sample each
        cand = changes[(changes > start) & (changes <= room)]
        if cand.size == 0:
            raise DataError(
                f"temporal_split_indices: too few group boundaries for {k} splits with gap "
                f"{gap} ({len(run_ids)} groups in {n} samples)"
            )
        end = int(cand[np.argmin(np.abs(cand - ideal_ends[s]))])
        parts[name] = np.arange(start, end, dtype=np.int64)
        start = end + gap
    parts[names[-1]] = np.arange(start, n, dtype=np.int64)
    return parts


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
