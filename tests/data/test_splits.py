"""split_indices: determinism, exact partitions, whole groups, fraction checks; temporal
splits: blocks in time order with gaps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustml.data import DataError, split_indices, temporal_split_indices

FRACTIONS = {"train": 0.7, "calibration": 0.15, "test": 0.15}


def _assert_partition(parts: dict[str, np.ndarray], n: int) -> None:
    for idx in parts.values():
        assert idx.dtype == np.int64 and len(idx) > 0
        assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(n))


def test_same_seed_same_splits_different_seed_different():
    a = split_indices(1000, FRACTIONS, seed=42)
    b = split_indices(1000, FRACTIONS, seed=42)
    c = split_indices(1000, FRACTIONS, seed=43)
    assert list(a) == ["train", "calibration", "test"]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    groups = np.arange(1000) // 10
    ga = split_indices(1000, FRACTIONS, seed=42, groups=groups)
    assert all(
        np.array_equal(ga[k], split_indices(1000, FRACTIONS, seed=42, groups=groups)[k]) for k in ga
    )
    assert not np.array_equal(
        ga["test"], split_indices(1000, FRACTIONS, seed=43, groups=groups)["test"]
    )


def test_seed_sequence_is_accepted_and_not_consumed():
    ss = np.random.SeedSequence(9)
    a = split_indices(50, {"a": 0.5, "b": 0.5}, seed=ss)
    b = split_indices(50, {"a": 0.5, "b": 0.5}, seed=ss)
    assert np.array_equal(a["a"], b["a"])
    assert np.array_equal(a["a"], split_indices(50, {"a": 0.5, "b": 0.5}, seed=9)["a"])


@pytest.mark.parametrize(
    ("n", "fractions", "sizes"),
    [
        (1000, FRACTIONS, [700, 150, 150]),
        (101, FRACTIONS, [71, 15, 15]),
        (10, {"a": 0.9, "b": 0.05, "c": 0.05}, [8, 1, 1]),  # every split gets a sample
        (3, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, [1, 1, 1]),
        (7, {"all": 1.0}, [7]),
    ],
)
def test_exact_partition_and_sizes(n, fractions, sizes):
    parts = split_indices(n, fractions, seed=0)
    _assert_partition(parts, n)
    assert [len(v) for v in parts.values()] == sizes


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"train": 0.7, "test": 0.2}, "must sum to 1, got 0.9"),
        ({"train": 0.7, "test": 0.3 + 2e-6}, "must sum to 1"),
        ({"train": 1.0, "test": 0.0}, "'test' must be > 0"),
        ({"train": 1.2, "test": -0.2}, "'test' must be > 0"),
        ({"train": float("nan"), "test": 0.5}, "'train' must be > 0"),
        ({"train": "0.5", "test": 0.5}, "'train' must be a number"),
        ({}, "non-empty mapping"),
        ([0.5, 0.5], "non-empty mapping"),
    ],
)
def test_invalid_fractions(fractions, message):
    with pytest.raises(DataError, match=message) as e:
        split_indices(100, fractions, seed=0)
    assert isinstance(e.value, ValueError)


def test_fraction_tolerance_and_sizes_checks():
    parts = split_indices(100, {"train": 0.7, "test": 0.3 + 5e-7}, seed=0)
    assert [len(v) for v in parts.values()] == [70, 30]
    with pytest.raises(DataError, match="3 splits need at least 3 samples, got 2"):
        split_indices(2, FRACTIONS, seed=0)
    with pytest.raises(DataError, match="positive int"):
        split_indices(0, FRACTIONS, seed=0)


def test_group_errors():
    with pytest.raises(DataError, match="3 splits need at least 3 groups, got 2"):
        split_indices(10, FRACTIONS, seed=0, groups=np.arange(10) % 2)
    with pytest.raises(DataError, match="'groups' has 9 entries"):
        split_indices(10, FRACTIONS, seed=0, groups=np.arange(9))


def test_groups_with_many_small_groups_match_fractions():
    groups = np.random.default_rng(3).integers(0, 400, size=5000)
    parts = split_indices(5000, FRACTIONS, seed=1, groups=groups)
    _assert_partition(parts, 5000)
    largest = np.bincount(groups).max()
    for name, idx in parts.items():
        assert abs(len(idx) - FRACTIONS[name] * 5000) <= largest


def test_string_groups():
    groups = np.array([f"sim{i % 12}" for i in range(120)])
    parts = split_indices(120, FRACTIONS, seed=5, groups=groups)
    _assert_partition(parts, 120)
    seen = [set(groups[idx]) for idx in parts.values()]
    assert sum(len(s) for s in seen) == 12 and len(set.union(*seen)) == 12


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.integers(min_value=0, max_value=30), min_size=3, max_size=300),
    fractions=st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=4),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_groups_never_straddle_splits(groups, fractions, seed):
    g = np.asarray(groups)
    total = sum(fractions)
    frac = {f"s{i}": w / total for i, w in enumerate(fractions)}
    if len(np.unique(g)) < len(frac):
        with pytest.raises(DataError, match="splits need at least"):
            split_indices(len(g), frac, seed=seed, groups=g)
        return
    parts = split_indices(len(g), frac, seed=seed, groups=g)
    _assert_partition(parts, len(g))
    members = [set(g[idx].tolist()) for idx in parts.values()]
    assert sum(len(m) for m in members) == len(set(groups))  # each group in exactly one split
    # No single-group move between two splits would bring both sizes closer to their targets.
    sizes = {name: len(idx) for name, idx in parts.items()}
    targets = {name: f * len(g) for name, f in frac.items()}
    counts = np.bincount(g)
    for a, idx in parts.items():
        if len(members[list(parts).index(a)]) == 1:
            continue
        for group in set(g[idx].tolist()):
            c = counts[group]
            for b in parts:
                if b == a:
                    continue
                before = abs(sizes[a] - targets[a]) + abs(sizes[b] - targets[b])
                after = abs(sizes[a] - c - targets[a]) + abs(sizes[b] + c - targets[b])
                assert after >= before - 1e-6


# -- temporal splits ----------------------------------------------------------------------------
def test_temporal_blocks_in_order_with_gaps():
    parts = temporal_split_indices(100, FRACTIONS, gap=5)
    assert list(parts) == ["train", "calibration", "test"]
    train, cal, test = parts.values()
    # 90 samples kept, apportioned 63/13.5/13.5 -> 63/14/13 by largest remainder (ties: first).
    assert [len(train), len(cal), len(test)] == [63, 14, 13]
    np.testing.assert_array_equal(train, np.arange(0, 63))
    np.testing.assert_array_equal(cal, np.arange(68, 82))
    np.testing.assert_array_equal(test, np.arange(87, 100))
    assert all(v.dtype == np.int64 for v in parts.values())
    # The order of the mapping is the order in time; the seed plays no part.
    rev = split_indices(100, {"test": 0.15, "train": 0.85}, seed=1, order="temporal")
    assert rev["test"].max() < rev["train"].min()
    same = split_indices(100, FRACTIONS, seed=7, order="temporal", gap=5)
    assert all(np.array_equal(same[k], parts[k]) for k in parts)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=500),
    gap=st.integers(min_value=0, max_value=30),
    weights=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=4),
)
def test_temporal_split_properties(n, gap, weights):
    frac = {f"s{i}": w / sum(weights) for i, w in enumerate(weights)}
    k = len(frac)
    if n < k + gap * (k - 1):
        with pytest.raises(DataError, match="need at least"):
            temporal_split_indices(n, frac, gap=gap)
        return
    parts = list(temporal_split_indices(n, frac, gap=gap).values())
    assert parts[0][0] == 0 and parts[-1][-1] == n - 1
    for idx in parts:
        assert len(idx) >= 1 and np.all(np.diff(idx) == 1)  # contiguous blocks
    for a, b in zip(parts, parts[1:], strict=False):
        assert b[0] - a[-1] == gap + 1  # exactly `gap` samples dropped between
    kept = n - gap * (k - 1)
    for idx, f in zip(parts, frac.values(), strict=True):
        assert abs(len(idx) - f * kept) < k  # largest remainder, nudged to >= 1


def test_temporal_split_with_groups_cuts_between_groups():
    years = np.repeat(np.arange(1951, 2011), 12)  # 720 monthly samples, grouped by year
    parts = temporal_split_indices(720, FRACTIONS, gap=12, groups=years)
    sets = [set(years[idx].tolist()) for idx in parts.values()]
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2]) and not (sets[0] & sets[2])
    train, cal, test = parts.values()
    assert train[0] == 0 and test[-1] == 719
    assert (train[-1] + 1) % 12 == 0  # the training block ends with a whole year
    assert cal[0] - train[-1] == 13 and test[0] - cal[-1] == 13
    assert abs(len(train) - 0.7 * 696) <= 12 and abs(len(test) - 0.15 * 696) <= 12
    # Groups that recur later in time cannot be split in time.
    with pytest.raises(DataError, match="group 0 appears in 2 separate runs"):
        temporal_split_indices(
            30, FRACTIONS, groups=np.r_[np.zeros(10), np.ones(10), np.zeros(10)].astype(int)
        )
    with pytest.raises(DataError, match="too few group boundaries for 3 splits"):
        temporal_split_indices(30, FRACTIONS, groups=np.repeat([0, 1], 15))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: temporal_split_indices(10, FRACTIONS, gap=-1), "gap must be an int >= 0, got -1"),
        (lambda: temporal_split_indices(10, FRACTIONS, gap=2.5), "gap must be an int >= 0"),
        (lambda: temporal_split_indices(6, FRACTIONS, gap=2), "need at least 7 samples, got 6"),
        (lambda: temporal_split_indices(0, FRACTIONS), "n_samples must be a positive int"),
        (lambda: temporal_split_indices(10, {"a": 0.5}), "must sum to 1"),
        (
            lambda: split_indices(10, FRACTIONS, seed=0, gap=3),
            "gap=3 applies only to order='temporal'",
        ),
        (
            lambda: split_indices(10, FRACTIONS, seed=0, order="time"),
            "order must be 'random' or 'temporal'",
        ),
    ],
)
def test_temporal_split_errors(call, message):
    with pytest.raises(DataError, match=message):
        call()
