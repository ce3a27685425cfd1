"""Chunk-aligned training reads (trustml.data._blocks): storage blocks, epoch windows, rank
shares, the background reader; and the datasets' block boundaries, copies and index cache."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from trustml.data import HDF5Dataset, ShardedHDF5Dataset
from trustml.data._blocks import epoch_windows, read_ahead, share_range, share_schedule
from trustml.data._hdf5 import write_hdf5
from trustml.exceptions import DataError


# -- the schedule of shares -------------------------------------------------------------------
def test_one_rank_takes_plain_batches() -> None:
    np.testing.assert_array_equal(share_schedule(10, 4), [[4], [4], [2]])
    np.testing.assert_array_equal(share_schedule(8, 4), [[4], [4]])
    np.testing.assert_array_equal(share_schedule(3, 8), [[3]])


def test_shares_add_up_to_global_batches_and_never_leave_a_rank_empty() -> None:
    # 9 samples in batches of 4: 4, 4, 1; the last one has fewer samples than ranks and
    # joins the one before it.
    np.testing.assert_array_equal(share_schedule(9, 4, 2), [[2, 2], [3, 2]])
    np.testing.assert_array_equal(share_schedule(6, 3, 2), [[2, 1], [2, 1]])
    for n, b, d in [(101, 8, 3), (64, 64, 4), (1000, 37, 5), (7, 7, 7)]:
        s = share_schedule(n, b, d)
        assert s.sum() == n
        assert s.min() >= 1
        totals = s.sum(axis=1)
        assert np.all(totals[:-1] == b) or len(totals) == 1 or totals[-2] > b
        assert np.all(s.max(axis=1) - s.min(axis=1) <= 1)


def test_rank_ranges_tile_the_training_samples() -> None:
    s = share_schedule(103, 10, 4)
    ranges = [share_range(s, r) for r in range(4)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 103
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert [hi - lo for lo, hi in ranges] == s.sum(axis=0).tolist()


def test_schedule_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="batch_size=2 cannot be shared by 3 ranks"):
        share_schedule(10, 2, 3)
    with pytest.raises(ValueError, match="2 training samples cannot be shared by 3 ranks"):
        share_schedule(2, 4, 3)
    with pytest.raises(ValueError, match="batch_size"):
        share_schedule(10, 0)


# -- epoch windows ----------------------------------------------------------------------------
BOUNDS = np.arange(0, 101, 10)  # 10 storage blocks of 10 samples
TRAIN = np.setdiff1d(np.arange(100), [3, 4, 27, 55, 56, 57, 90])  # a split minus validation


def test_windows_hold_every_training_sample_once_in_whole_blocks() -> None:
    windows = epoch_windows(BOUNDS, TRAIN, seed=1, epoch=0, buffer=25)
    np.testing.assert_array_equal(np.sort(np.concatenate(windows)), TRAIN)
    block_of = np.searchsorted(BOUNDS, TRAIN, side="right") - 1
    for w in windows:
        assert 0 < w.size <= 25
        blocks = np.unique(np.searchsorted(BOUNDS, w, side="right") - 1)
        # whole blocks: every training sample of each block it touches
        np.testing.assert_array_equal(np.sort(w), TRAIN[np.isin(block_of, blocks)])


def test_windows_are_seeded_by_seed_and_epoch() -> None:
    a = epoch_windows(BOUNDS, TRAIN, seed=1, epoch=0, buffer=25)
    b = epoch_windows(BOUNDS, TRAIN, seed=1, epoch=0, buffer=25)
    c = epoch_windows(BOUNDS, TRAIN, seed=1, epoch=1, buffer=25)
    d = epoch_windows(BOUNDS, TRAIN, seed=2, epoch=0, buffer=25)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    flat = [np.concatenate(w).tolist() for w in (a, c, d)]
    assert flat[0] != flat[1] and flat[0] != flat[2]


def test_a_block_larger_than_the_buffer_is_cut() -> None:
    windows = epoch_windows(np.array([0, 100]), np.arange(100), seed=0, epoch=0, buffer=30)
    assert [w.size for w in sorted(windows, key=lambda w: w[0])] == [30, 30, 30, 10]
    assert all(np.all(np.diff(w) == 1) for w in windows)  # each a run of one block


def test_rank_parts_are_disjoint_and_cover_the_epoch() -> None:
    s = share_schedule(TRAIN.size, 8, 3)
    parts = [
        epoch_windows(BOUNDS, TRAIN, seed=4, epoch=2, buffer=20, part=share_range(s, r))
        for r in range(3)
    ]
    seen = np.concatenate([np.concatenate(p) for p in parts])
    np.testing.assert_array_equal(np.sort(seen), TRAIN)
    for r, p in enumerate(parts):
        lo, hi = share_range(s, r)
        np.testing.assert_array_equal(np.sort(np.concatenate(p)), TRAIN[lo:hi])


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="buffer"):
        epoch_windows(BOUNDS, TRAIN, seed=0, epoch=0, buffer=0)
    with pytest.raises(ValueError, match="sorted, distinct"):
        epoch_windows(BOUNDS, TRAIN[::-1], seed=0, epoch=0, buffer=5)
    assert epoch_windows(BOUNDS, np.zeros(0, np.int64), seed=0, epoch=0, buffer=5) == []


# -- the background reader --------------------------------------------------------------------
def test_read_ahead_keeps_order_and_bounds_what_it_holds() -> None:
    started: list[int] = []

    def read(i: int) -> int:
        started.append(i)
        return i * i

    for depth in (0, 1, 2):
        started.clear()
        got = []
        for k, value in enumerate(read_ahead(read, list(range(12)), depth)):
            # the caller holds item k: at most `depth` more were read (or are being read)
            assert len(started) <= k + 1 + depth
            got.append(value)
        assert got == [i * i for i in range(12)]
        assert started == list(range(12))


def test_a_read_error_reaches_the_caller_with_its_message() -> None:
    def read(i: int) -> int:
        if i == 3:
            raise DataError(f"shard{i}.h5: cannot read '/x' (truncated)")
        return i

    before = threading.active_count()
    got = []
    with pytest.raises(DataError, match=r"^shard3.h5: cannot read '/x' \(truncated\)$"):
        for value in read_ahead(read, list(range(6)), 2):
            got.append(value)
    assert got == [0, 1, 2]
    assert threading.active_count() == before  # the thread is gone


def test_closing_early_stops_the_reader() -> None:
    started: list[int] = []

    def read(i: int) -> int:
        started.append(i)
        return i

    before = threading.active_count()
    gen = read_ahead(read, list(range(100)), 1)
    assert next(gen) == 0
    gen.close()
    assert threading.active_count() == before
    assert len(started) <= 3  # nothing more is read once closed


# -- block boundaries of the datasets ---------------------------------------------------------
def _x(n: int, start: int = 0) -> np.ndarray:
    """Inputs whose every value is the sample's global index."""
    return np.broadcast_to(
        np.arange(start, start + n, dtype=np.float32)[:, None, None], (n, 1, 3)
    ).copy()


def test_hdf5_blocks_are_its_chunks(tmp_path: Path) -> None:
    path = write_hdf5(tmp_path / "c.h5", _x(23), np.arange(23.0), chunk_rows=5)
    ds = HDF5Dataset(path)
    np.testing.assert_array_equal(ds.block_boundaries(), [0, 5, 10, 15, 20, 23])
    contiguous = HDF5Dataset(write_hdf5(tmp_path / "d.h5", _x(23), np.arange(23.0)))
    np.testing.assert_array_equal(contiguous.block_boundaries(), [0, 23])  # 23 rows < 8 MB


def test_a_subset_sees_the_parent_blocks(tmp_path: Path) -> None:
    ds = HDF5Dataset(write_hdf5(tmp_path / "c.h5", _x(20), np.arange(20.0), chunk_rows=5))
    sub = ds.subset(np.array([1, 2, 6, 8, 9, 12, 19]))
    # parent blocks 0 | 1 | 1 1 ... : [1, 2] [6, 8, 9] [12] [19]
    np.testing.assert_array_equal(sub.block_boundaries(), [0, 2, 5, 6, 7])


def _shards(folder: Path, lengths: list[int], chunk: int | None) -> list[Path]:
    paths, start = [], 0
    for k, n in enumerate(lengths):
        x = _x(n, start)
        paths.append(
            write_hdf5(folder / f"s{k:02d}.h5", x, x[:, 0, 0].astype(np.float64), chunk_rows=chunk)
        )
        start += n
    return paths


def test_sharded_blocks_are_chunks_within_files(tmp_path: Path) -> None:
    ds = ShardedHDF5Dataset(_shards(tmp_path, [7, 3, 10], 4))
    np.testing.assert_array_equal(ds.block_boundaries(), [0, 4, 7, 10, 14, 18, 20])
    small = ShardedHDF5Dataset(_shards(tmp_path / "small", [7, 3, 10], None))
    np.testing.assert_array_equal(small.block_boundaries(), [0, 7, 10, 20])  # whole files
    np.testing.assert_array_equal(ds.file_indices(np.array([12, 0, 1])), [0, 2])


def test_a_relocated_copy_reads_and_fingerprints_the_same(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "orig", [7, 3, 10], 4)
    ds = ShardedHDF5Dataset(paths)
    copies = {}
    for k in (0, 2):
        (tmp_path / "stage").mkdir(exist_ok=True)
        copies[k] = tmp_path / "stage" / f"{k}-{paths[k].name}"
        shutil.copyfile(paths[k], copies[k])
    moved = ds.relocated(copies)
    assert moved.files[1] == paths[1] and moved.files[2] == copies[2]
    assert moved.source == ds.source
    np.testing.assert_array_equal(moved.read(np.arange(20))[0], ds.read(np.arange(20))[0])
    assert moved.fingerprint("sampled") == ds.fingerprint("sampled")
    assert moved.fingerprint("full") == ds.fingerprint("full")
    paths[2].unlink()  # the copy is what is read now
    np.testing.assert_array_equal(moved.read(np.array([19]))[0][0, 0, 0], 19.0)
    moved.close()
    with h5py.File(copies[0], "a") as f:
        f.attrs["grown"] = np.zeros(1000)
    with pytest.raises(DataError, match="not a copy of it"):
        ds.relocated({0: copies[0]})


def test_one_file_relocated(tmp_path: Path) -> None:
    path = write_hdf5(tmp_path / "a" / "f.h5", _x(9), np.arange(9.0), chunk_rows=4)
    ds = HDF5Dataset(path)
    (tmp_path / "b").mkdir()
    copy = Path(shutil.copyfile(path, tmp_path / "b" / "f.h5"))
    moved = ds.relocated(copy)
    assert moved.path == copy and moved.source == ds.source
    assert moved.fingerprint("sampled") == ds.fingerprint("sampled")
    np.testing.assert_array_equal(moved.read(np.arange(9))[0], ds.read(np.arange(9))[0])
    with pytest.raises(DataError, match="must keep its name"):
        ds.relocated(shutil.copyfile(path, tmp_path / "b" / "g.h5"))


def test_the_index_cache_records_validation(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "s", [3, 4], 2)
    cache = tmp_path / "index.json"
    ds = ShardedHDF5Dataset(paths, index_cache=cache, write_index=False)
    assert not cache.exists()  # not written until asked
    ds.save_index(cache)
    assert json.loads(cache.read_text())["validated"] is True  # ds scanned every value
    again = ShardedHDF5Dataset(paths, index_cache=cache)
    assert again.index_cached
    np.testing.assert_array_equal(again.block_boundaries(), ds.block_boundaries())
    # A NaN written in place (same size) changes the mtime: the cache is stale, and the
    # file is scanned again.
    again.close()
    ds.close()
    with h5py.File(paths[1], "r+") as f:
        f["x"][1, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN/inf values, first at sample 4"):
        ShardedHDF5Dataset(paths, index_cache=cache)
