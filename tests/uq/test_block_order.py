"""BlockShuffle: the chunk-aligned, windowed training order with a background reader."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from trustml.data import HDF5Dataset, ShardedHDF5Dataset
from trustml.data._hdf5 import write_hdf5
from trustml.exceptions import DataError
from trustml.uq import DeepEnsemble
from trustml.uq._block_order import BlockShuffle
from trustml.uq._fit_loop import DataShare
from trustml.uq._source import Source

CPU = torch.device("cpu")


class Recording(HDF5Dataset):
    """An HDF5 dataset that records the indices of every read (and can fail on one)."""

    def __init__(self, *args: Any, fail_on: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[np.ndarray] = []
        self.fail_on = fail_on

    def read(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        self.reads.append(np.asarray(indices).copy())
        if self.fail_on is not None and len(self.reads) == self.fail_on:
            raise DataError(f"{self.path}: cannot read '/x' samples 40..49 (truncated file)")
        return super().read(indices)


def _data(tmp_path: Path, n: int = 100, chunk: int = 8) -> Path:
    """Inputs (n, 1, 2) whose values are the sample's index; class labels i % 3."""
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None, None], 2, axis=2)
    return write_hdf5(tmp_path / "d.h5", x, np.arange(n) % 3, chunk_rows=chunk)


def _source(ds: Any) -> Source:
    source = Source(ds)
    source.task = "classification"
    return source


def _epochs(
    order: BlockShuffle,
    source: Source,
    train: np.ndarray,
    seeds: list[int],
    batch: int,
    epochs: int = 2,
    share: DataShare | None = None,
) -> list[list[np.ndarray]]:
    """Per epoch, the sample indices of every step, shape (L, b) each."""
    rngs = [np.random.default_rng(s) for s in seeds]
    out = []
    for _ in range(epochs):
        steps = []
        for x, y in order.epoch(source, train, rngs, batch, CPU, share or DataShare()):
            ids = x[:, :, 0, 0].numpy().astype(np.int64)
            np.testing.assert_array_equal(y.numpy(), ids % 3)  # targets travel with inputs
            steps.append(ids)
        out.append(steps)
    return out


TRAIN = np.setdiff1d(np.arange(100), [5, 6, 7, 30, 31, 77])


def test_same_seed_same_batches_and_each_member_sees_every_sample_once(tmp_path: Path) -> None:
    ds = HDF5Dataset(_data(tmp_path))
    a = _epochs(BlockShuffle(3, buffer=20), _source(ds), TRAIN, [10, 11, 12], batch=16)
    b = _epochs(BlockShuffle(3, buffer=20), _source(ds), TRAIN, [10, 11, 12], batch=16)
    for ea, eb in zip(a, b, strict=True):
        assert all(np.array_equal(sa, sb) for sa, sb in zip(ea, eb, strict=True))
    for steps in a:
        assert [s.shape[1] for s in steps] == [16] * 5 + [TRAIN.size - 80]
        lanes = np.concatenate(steps, axis=1)  # (L, n)
        for lane in lanes:
            np.testing.assert_array_equal(np.sort(lane), TRAIN)
        assert not np.array_equal(lanes[0], lanes[1])  # members shuffle on their own
    assert not np.array_equal(np.concatenate(a[0], 1), np.concatenate(a[1], 1))


def test_reads_are_whole_chunks_bounded_and_shared_by_the_members(tmp_path: Path) -> None:
    path = _data(tmp_path)
    one, four = Recording(path), Recording(path)
    order1 = BlockShuffle(3, buffer=20, prefetch=0, block_bytes=0)
    order4 = BlockShuffle(3, buffer=20, prefetch=0, block_bytes=0)
    _epochs(order1, _source(one), TRAIN, [10], batch=16, epochs=1)
    _epochs(order4, _source(four), TRAIN, [10, 11, 12, 13], batch=16, epochs=1)
    reads = one.reads
    # members share every read: four members read exactly what one reads
    assert len(four.reads) == len(one.reads)
    assert all(np.array_equal(a, b) for a, b in zip(one.reads, four.reads, strict=True))
    chunk_of = TRAIN // 8
    for r in reads:
        assert r.size <= 20
        touched = np.unique(r // 8)
        # whole chunks, read in lane 0's shuffled order
        np.testing.assert_array_equal(np.sort(r), TRAIN[np.isin(chunk_of, touched)])
    np.testing.assert_array_equal(np.sort(np.concatenate(reads)), TRAIN)
    assert [w.size for w in order1.last_windows] == [r.size for r in reads]


def test_members_numbers_do_not_depend_on_the_other_members(tmp_path: Path) -> None:
    ds = HDF5Dataset(_data(tmp_path, n=60))

    def make() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(2, 3))

    def fit(members: list[int]) -> dict[str, Any]:
        ens = DeepEnsemble(make, members=3, task="classification", seed=5, vectorize=False)
        order = BlockShuffle(7, buffer=12)
        return ens._fit_members(members, ds, epochs=2, batch_size=8, lr=1e-2, order=order)

    both, alone = fit([0, 2]), fit([2])
    for name, t in alone["state_dicts"][0].items():
        assert torch.equal(t, both["state_dicts"][1][name]), name
    assert alone["history"]["loss"][0] == both["history"]["loss"][1]
    assert fit([2])["history"] == alone["history"]  # and it reproduces


def test_shares_split_every_global_batch_and_take_equal_steps(tmp_path: Path) -> None:
    ds = HDF5Dataset(_data(tmp_path))
    d = 3
    per_rank = [
        _epochs(BlockShuffle(3, buffer=10), _source(ds), TRAIN, [10, 11], 16, 1, DataShare(r, d))
        for r in range(d)
    ]
    steps = [len(p[0]) for p in per_rank]
    assert steps == [6, 6, 6]  # ceil(94 / 16) steps on every rank
    for t in range(6):
        sizes = [p[0][t].shape[1] for p in per_rank]
        assert sum(sizes) == (16 if t < 5 else TRAIN.size - 80)
        assert max(sizes) - min(sizes) <= 1
    for lane in range(2):
        seen = np.concatenate([np.concatenate(p[0], 1)[lane] for p in per_rank])
        np.testing.assert_array_equal(np.sort(seen), TRAIN)  # each sample once over the ranks
    # each rank reads only its own contiguous part of the training samples
    parts = [np.sort(np.concatenate(p[0], 1)[0]) for p in per_rank]
    assert parts[0].max() < parts[1].min() and parts[1].max() < parts[2].min()


def test_a_read_error_reaches_training_and_the_reader_stops(tmp_path: Path) -> None:
    ds = Recording(_data(tmp_path), fail_on=3)
    before = threading.active_count()
    with pytest.raises(DataError, match=r"cannot read '/x' samples 40..49 \(truncated file\)$"):
        _epochs(BlockShuffle(1, buffer=20, prefetch=2), _source(ds), TRAIN, [1], 16, 1)
    assert threading.active_count() == before


def test_sharded_data_reads_whole_small_files(tmp_path: Path) -> None:
    paths = []
    for k in range(10):
        x = np.repeat(np.arange(10 * k, 10 * k + 10, dtype=np.float32)[:, None, None], 2, 2)
        paths.append(write_hdf5(tmp_path / f"s{k}.h5", x, np.arange(10 * k, 10 * k + 10) % 3))
    ds = ShardedHDF5Dataset(paths)
    order = BlockShuffle(2, buffer=25, block_bytes=0)
    (steps,) = _epochs(order, _source(ds), np.arange(100), [4], batch=16, epochs=1)
    np.testing.assert_array_equal(np.sort(np.concatenate(steps, 1)[0]), np.arange(100))
    for w in order.last_windows:  # two whole files per window
        assert w.size == 20 and len(np.unique(w // 10)) == 2


def test_small_chunks_are_merged_into_longer_reads(tmp_path: Path) -> None:
    ds = Recording(_data(tmp_path, n=192, chunk=4))  # 8 bytes a sample, chunks of 4
    order = BlockShuffle(0, buffer=96, prefetch=0, block_bytes=8 * 12)  # about 12 samples
    _epochs(order, _source(ds), np.arange(192), [1], batch=8, epochs=1)
    assert [r.size for r in ds.reads] == [96, 96]
    for r in map(np.sort, ds.reads):  # read in lane 0's shuffled order
        runs = np.split(r, np.flatnonzero(np.diff(r) != 1) + 1)
        # whole blocks of three chunks (12 samples, adjacent ones read as one run)
        assert all(run.size % 12 == 0 and run[0] % 12 == 0 for run in runs), runs
        assert len(runs) > 1
    # merged blocks stay under 1/8 of a window: a window of 24 mixes single chunks
    small = BlockShuffle(0, buffer=24, prefetch=0, block_bytes=8 * 12)
    _epochs(small, _source(ds), np.arange(192), [1], batch=8, epochs=1)
    assert all(len(np.unique(w // 4)) == 6 for w in small.last_windows)


def test_arrays_and_default_buffer(tmp_path: Path) -> None:
    x = np.repeat(np.arange(50, dtype=np.float32)[:, None, None], 2, 2)
    source = Source(x, np.arange(50) % 3)
    source.task = "classification"
    order = BlockShuffle(0, buffer_bytes=8 * 10)  # 10 samples of 8 bytes, at least a batch
    (steps,) = _epochs(order, source, np.arange(50), [1], batch=4, epochs=1)
    assert [w.size for w in order.last_windows] == [10] * 5
    assert sum(s.shape[1] for s in steps) == 50


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="buffer"):
        BlockShuffle(buffer=0)
    with pytest.raises(ValueError, match="prefetch"):
        BlockShuffle(prefetch=-1)
