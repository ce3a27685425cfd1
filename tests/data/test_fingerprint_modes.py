"""Fingerprint modes: ``full`` reads every byte, ``sampled`` the structure and a seeded sample of
whole chunks, ``auto`` picks by stored size."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from trustml.data import ArrayDataset, BaseDataset, HDF5Dataset, ShardedHDF5Dataset, _fingerprint
from trustml.data._hdf5 import write_hdf5

N, SHAPE = 96, (2, 8)
ROW_BYTES = 4 * 2 * 8 + 4  # float32 inputs (2, 8) and one float32 target
CHUNK = 4  # HDF5 chunk rows


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of 8 rows (two HDF5 chunks) instead of about 8 MB, so small files have many.
    monkeypatch.setattr(BaseDataset, "_stream_bytes", 8 * ROW_BYTES)


def _arrays(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, *SHAPE)).astype(np.float32),
        rng.standard_normal(n).astype(np.float32),
    )


def _write(path: Path, n: int = N) -> Path:
    x, y = _arrays(n)
    return write_hdf5(path, x, y, chunk_rows=CHUNK)


def _sampled_rows(ds: BaseDataset, *, seed: int = 0, sample_chunks: int = 3) -> list[int]:
    """The first row of each sampled block, reproduced from the documented algorithm."""
    bounds = ds._fingerprint_bounds()
    picks = _fingerprint.sample_blocks(bounds.size - 1, seed=seed, sample_chunks=sample_chunks)
    return [int(bounds[i]) for i in picks]


def _set_row(path: Path, row: int, value: float) -> None:
    with h5py.File(path, "r+") as f:
        f["x"][row, 0, 0] = value


class _Counting(HDF5Dataset):
    """Counts the rows read through the two reading hooks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.rows_read: list[int] = []
        super().__init__(*args, validate=False, **kwargs)

    def _raw_slice(self, start: int, stop: int, *, inputs: bool = True) -> Any:
        self.rows_read.append(stop - start)
        return super()._raw_slice(start, stop, inputs=inputs)

    def _raw_rows(self, idx: np.ndarray, *, inputs: bool = True) -> Any:
        self.rows_read.append(int(idx.size))
        return super()._raw_rows(idx, inputs=inputs)


def test_no_argument_is_the_full_fingerprint_as_before(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5")
    ds = HDF5Dataset(path)
    x, y = _arrays()
    assert ds.fingerprint() == ds.fingerprint("full") == ArrayDataset(x, y).fingerprint()
    assert len(ds.fingerprint()) == 64 and ds.fingerprint_plan() == {"mode": "full"}


def test_sampled_is_deterministic_and_never_the_full_value(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5")
    first, second = HDF5Dataset(path), HDF5Dataset(path)
    sampled = first.fingerprint("sampled", sample_chunks=3)
    assert sampled.startswith("sampled-v1:") and len(sampled) == len("sampled-v1:") + 64
    assert sampled == second.fingerprint("sampled", sample_chunks=3)
    assert sampled != first.fingerprint("full")
    # Even when every block is sampled, the prefix keeps the two apart.
    assert first.fingerprint("sampled", sample_chunks=1000) != first.fingerprint("full")
    # Seed and sample size are part of the value.
    assert sampled != first.fingerprint("sampled", seed=1, sample_chunks=3)
    assert sampled != first.fingerprint("sampled", sample_chunks=4)
    assert first.fingerprint_plan("sampled", sample_chunks=3) == {
        "mode": "sampled", "seed": 0, "chunks": 3, "of": N // 8, "rows_per_chunk": 8,
    }  # fmt: skip


def test_sampled_detects_a_change_in_a_sampled_chunk_only(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5")
    ds = HDF5Dataset(path)
    before = ds.fingerprint("sampled", sample_chunks=3)
    full_before = ds.fingerprint()
    sampled_rows = _sampled_rows(ds)
    unsampled = next(r for r in range(0, N, 8) if r not in sampled_rows)
    size = path.stat().st_size
    ds.close()

    _set_row(path, unsampled + 1, 123.0)  # same size, same metadata: the documented blind spot
    assert path.stat().st_size == size
    after_unsampled = HDF5Dataset(path)
    assert after_unsampled.fingerprint("sampled", sample_chunks=3) == before
    assert after_unsampled.fingerprint() != full_before  # a full fingerprint sees it
    after_unsampled.close()

    _set_row(path, sampled_rows[1] + 7, 123.0)  # the last row of a sampled block
    assert HDF5Dataset(path).fingerprint("sampled", sample_chunks=3) != before


def test_sampled_detects_shape_size_and_metadata_changes(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5")
    before = HDF5Dataset(path).fingerprint("sampled", sample_chunks=3)
    _write(tmp_path / "longer.h5", n=N + 1)  # one more sample (the first N rows are equal)
    assert HDF5Dataset(tmp_path / "longer.h5").fingerprint("sampled", sample_chunks=3) != before

    copy = tmp_path / "copy" / "d.h5"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    with h5py.File(copy, "a") as f:  # an unused dataset: only the file's size changes
        f.create_dataset("unused", data=np.zeros(1000))
    assert HDF5Dataset(copy).fingerprint("sampled", sample_chunks=3) != before

    shutil.copy(path, copy)
    with h5py.File(copy, "a") as f:  # an attribute of the inputs: the header changes
        f["x"].attrs["units"] = "K"
    assert HDF5Dataset(copy).fingerprint("sampled", sample_chunks=3) != before


def test_sampled_ignores_mtime_and_folder(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5")
    before = HDF5Dataset(path).fingerprint("sampled", sample_chunks=3)
    staged = tmp_path / "scratch" / "d.h5"
    staged.parent.mkdir()
    shutil.copyfile(path, staged)  # a fresh modification time
    os.utime(staged, ns=(1, 1))
    assert HDF5Dataset(staged).fingerprint("sampled", sample_chunks=3) == before


@pytest.mark.parametrize("sample_chunks", [1, 3, 64])
def test_sampled_reads_at_most_sample_chunks_blocks(tmp_path: Path, sample_chunks: int) -> None:
    path = _write(tmp_path / "big.h5", n=1000)  # 125 blocks of 8 rows
    ds = _Counting(path)
    ds.fingerprint("sampled", sample_chunks=sample_chunks)
    assert len(ds.rows_read) == sample_chunks
    assert sum(ds.rows_read) == 8 * sample_chunks
    ds.rows_read.clear()
    ds.fingerprint("full")
    assert sum(ds.rows_read) == 1000  # every row, for comparison


def test_blocks_are_whole_hdf5_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _arrays()
    path = write_hdf5(tmp_path / "c.h5", x, y, chunk_rows=16)  # chunks larger than a block
    monkeypatch.setattr(BaseDataset, "_stream_bytes", 5 * ROW_BYTES)
    bounds = HDF5Dataset(path)._fingerprint_bounds()
    assert bounds.tolist() == list(range(0, N + 1, 16))


def test_auto_samples_above_the_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = HDF5Dataset(_write(tmp_path / "d.h5"))
    assert ds.stored_bytes() == N * ROW_BYTES
    assert ds.fingerprint("auto") == ds.fingerprint("full")  # 6 kB is far below 10 GB
    monkeypatch.setattr(_fingerprint, "SAMPLED_ABOVE_BYTES", N * ROW_BYTES - 1)
    assert ds.fingerprint_plan("auto")["mode"] == "sampled"
    assert ds.fingerprint("auto") == ds.fingerprint("sampled")
    monkeypatch.setattr(_fingerprint, "SAMPLED_ABOVE_BYTES", N * ROW_BYTES)
    assert ds.fingerprint("auto") == ds.fingerprint("full")


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    ds = ArrayDataset(*_arrays())
    with pytest.raises(ValueError, match="'auto', 'full', 'sampled'.*Got 'fast'"):
        ds.fingerprint("fast")
    with pytest.raises(ValueError, match="sample_chunks"):
        ds.fingerprint("sampled", sample_chunks=0)
    with pytest.raises(ValueError, match="seed"):
        ds.fingerprint("sampled", seed=-1)


def test_in_memory_datasets_sample_too() -> None:
    x, y = _arrays()
    a, b = ArrayDataset(x, y), ArrayDataset(x.copy(), y.copy())
    assert a.fingerprint("sampled") == b.fingerprint("sampled") != a.fingerprint()
    rows = _sampled_rows(a, sample_chunks=64)
    x2 = x.copy()
    x2[rows[0], 0, 0] += 1.0
    assert ArrayDataset(x2, y).fingerprint("sampled") != a.fingerprint("sampled")


# -- many files ---------------------------------------------------------------------------------
def _shards(folder: Path, n_files: int = 6, rows: int = 20) -> list[Path]:
    x, y = _arrays(n_files * rows)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_hdf5(folder / f"part-{k:02d}.h5", x[k * rows : (k + 1) * rows],
                   y[k * rows : (k + 1) * rows], chunk_rows=CHUNK)
        for k in range(n_files)
    ]  # fmt: skip


def test_many_files_blocks_stay_inside_files(tmp_path: Path) -> None:
    _shards(tmp_path / "s")
    ds = ShardedHDF5Dataset(str(tmp_path / "s" / "*.h5"))
    bounds = ds._fingerprint_bounds().tolist()
    for k in range(6):  # every file starts a block; 20 rows = blocks of 8, 8 and 4
        assert {20 * k, 20 * k + 8, 20 * k + 16} <= set(bounds)
    assert bounds[-1] == 120 and len(bounds) == 6 * 3 + 1


def test_many_files_sampled(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "s")
    pattern = str(tmp_path / "s" / "*.h5")
    ds = ShardedHDF5Dataset(pattern)
    before = ds.fingerprint("sampled", sample_chunks=4)
    assert before.startswith("sampled-v1:") and before != ds.fingerprint()
    assert ShardedHDF5Dataset(pattern).fingerprint("sampled", sample_chunks=4) == before

    # A moved copy of all shards (new folder, new mtimes) is the same data.
    shutil.copytree(tmp_path / "s", tmp_path / "staged")
    staged = ShardedHDF5Dataset(str(tmp_path / "staged" / "*.h5"))
    assert staged.fingerprint("sampled", sample_chunks=4) == before

    # Every file's header counts, sampled or not.
    sampled_rows = _sampled_rows(ds, sample_chunks=4)
    sampled_files = {r // 20 for r in sampled_rows}
    quiet = next(k for k in range(6) if k not in sampled_files)
    ds.close()
    staged.close()
    with h5py.File(shards[quiet], "a") as f:
        f["y"].attrs["units"] = "m"
    with ShardedHDF5Dataset(pattern) as changed:
        assert changed.fingerprint("sampled", sample_chunks=4) != before

    # A value in a sampled block of some file.
    row = sampled_rows[-1]
    _set_row(shards[row // 20], row % 20, 55.0)
    assert ShardedHDF5Dataset(pattern).fingerprint("sampled", sample_chunks=4) != before


def test_many_files_renamed_file_changes_the_sampled_value(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "s", n_files=3)
    ds = ShardedHDF5Dataset([str(p) for p in shards])
    before, full = ds.fingerprint("sampled"), ds.fingerprint()
    ds.close()
    renamed = shards[2].with_name("part-09.h5")  # same order, same bytes, another name
    shards[2].rename(renamed)
    after = ShardedHDF5Dataset([str(shards[0]), str(shards[1]), str(renamed)])
    assert after.fingerprint() == full and after.fingerprint("sampled") != before
