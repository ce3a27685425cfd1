"""ShardedHDF5Dataset: many HDF5 files read as one index, with a cached index of the files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from trustml.data import DataError, HDF5Dataset, ShardedHDF5Dataset

LENGTHS = {
    "one-sample files": [1] * 12,
    "multi-sample files": [9, 9, 9],
    "mixed lengths": [1, 5, 13, 2, 30, 1],
}


def _write(path: Path, n: int, rng: np.random.Generator, *, chunked: bool = False, **over: Any):
    arrays: dict[str, Any] = {
        "x": rng.standard_normal((n, 2, 4, 3)).astype(np.float32),
        "y": rng.standard_normal((n, 2)),
        "run": rng.integers(0, 4, n),
    }
    arrays.update(over)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is None:
                continue
            kw = {"chunks": (min(4, n), *np.shape(value)[1:])} if chunked else {}
            f.create_dataset(key, data=value, **kw)
    return path


def _shards(folder: Path, lengths: list[int], seed: int = 0) -> list[Path]:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    # Unpadded names on purpose: sorted order is the order of the path strings.
    return [_write(folder / f"s{k}.h5", n, rng, chunked=k % 2 == 1) for k, n in enumerate(lengths)]


def _reference(paths: list[Path]) -> dict[str, np.ndarray]:
    """The files' arrays concatenated in sorted path order, read with plain h5py."""
    out: dict[str, list[np.ndarray]] = {"x": [], "y": [], "run": []}
    for p in sorted(paths, key=str):
        with h5py.File(p, "r") as f:
            for key in out:
                out[key].append(f[key][()])
    return {key: np.concatenate(v) for key, v in out.items()}


@pytest.fixture(params=list(LENGTHS), ids=list(LENGTHS))
def shards(request: pytest.FixtureRequest, tmp_path: Path) -> list[Path]:
    return _shards(tmp_path / "shards", LENGTHS[request.param])


def test_any_index_set_reads_the_concatenation(shards: list[Path]) -> None:
    ref = _reference(shards)
    ds = ShardedHDF5Dataset(str(shards[0].parent / "*.h5"), groups="/run")
    n = len(ref["y"])
    assert ds.n_samples == n and ds.input_shape == (2, 4, 3) and ds.target_shape == (2,)
    assert ds.files == sorted(shards, key=str)
    np.testing.assert_array_equal(ds.groups, ref["run"])
    rng = np.random.default_rng(1)
    for idx in (
        np.arange(n),
        rng.permutation(n),
        rng.integers(0, n, 3 * n),  # repeats
        np.array([n - 1, 0, n - 1, -2]),
        np.sort(rng.choice(n, n // 3 + 1, replace=False)),  # scattered: point selections
    ):
        x, y = ds.read(idx)
        np.testing.assert_array_equal(x, ref["x"][idx])
        np.testing.assert_array_equal(y, ref["y"][idx].astype(np.float32))
    batches = list(ds.iter_batches(batch_size=4))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), ref["x"])
    sub = ds.subset(np.arange(n)[::-3])
    np.testing.assert_array_equal(sub.read(np.arange(len(sub)))[0], ref["x"][::-3])
    np.testing.assert_array_equal(sub.groups, ref["run"][::-3])


def test_list_of_files_is_sorted_and_fingerprint_matches_one_file(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "shards", LENGTHS["mixed lengths"])
    ref = _reference(paths)
    ds = ShardedHDF5Dataset([str(p) for p in reversed(paths)], groups="/run")
    assert ds.files == sorted(paths, key=str)
    one = tmp_path / "one.h5"
    _write(one, 0, np.random.default_rng(0), x=ref["x"], y=ref["y"], run=ref["run"])
    # The fingerprint is of the values, not of how they are split into files.
    assert ds.fingerprint() == HDF5Dataset(one, groups="/run").fingerprint()


def test_classification_targets_and_target_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "c"
    folder.mkdir()
    for k in range(3):
        _write(folder / f"{k}.h5", 4, rng, y=np.arange(4) + k)
    ds = ShardedHDF5Dataset(folder / "*.h5")
    assert ds.task_hint == "classification" and ds.n_classes == 6
    np.testing.assert_array_equal(ds.read(np.arange(12))[1], np.r_[0:4, 1:5, 2:6])


def test_few_files_open_at_once_and_pickling(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "shards", [3] * 7)
    ref = _reference(paths)
    ds = ShardedHDF5Dataset(paths, max_open=2)
    x, _ = ds.read(np.arange(21)[::-1])
    np.testing.assert_array_equal(x, ref["x"][::-1])
    assert len(ds._open_files) <= 2
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy._open_files) == 0
    np.testing.assert_array_equal(copy.read(np.array([20, 3, 3]))[0], ref["x"][[20, 3, 3]])
    ds.close()
    np.testing.assert_array_equal(ds.read(np.array([5]))[0], ref["x"][[5]])


# -- the index cache --------------------------------------------------------------------------
@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every h5py.File or h5py.is_hdf5 call made from now on (the paths)."""
    calls: list[str] = []
    real_file, real_is = h5py.File, h5py.is_hdf5

    def file(name: Any, *args: Any, **kwargs: Any) -> h5py.File:
        calls.append(str(name))
        return real_file(name, *args, **kwargs)

    def is_hdf5(name: Any) -> bool:
        calls.append(str(name))
        return real_is(name)

    monkeypatch.setattr(h5py, "File", file)
    monkeypatch.setattr(h5py, "is_hdf5", is_hdf5)
    return calls


def test_cache_is_written_reused_and_invalidated(tmp_path: Path, opens: list[str]) -> None:
    paths = _shards(tmp_path / "shards", [2, 3, 4])
    ref = _reference(paths)
    cache = tmp_path / "out" / "checkpoints" / "data_index.json"
    pattern = tmp_path / "shards" / "*.h5"
    opens.clear()
    first = ShardedHDF5Dataset(pattern, groups="/run", index_cache=cache, validate=False)
    assert sorted(set(opens)) == sorted(str(p) for p in paths)  # each file read for the index
    saved = json.loads(cache.read_text())
    assert [e["path"] for e in saved["files"]] == [str(p) for p in paths]
    assert [e["n"] for e in saved["files"]] == [2, 3, 4]

    opens.clear()
    again = ShardedHDF5Dataset(pattern, groups="/run", index_cache=cache, validate=False)
    assert opens == []  # unchanged files: nothing opened
    np.testing.assert_array_equal(again.groups, first.groups)
    np.testing.assert_array_equal(again.read(np.arange(9))[0], ref["x"])

    # Another key is another index.
    opens.clear()
    ShardedHDF5Dataset(pattern, index_cache=cache, validate=False)
    assert opens

    # A changed file (new mtime, same size) invalidates the cache.
    ShardedHDF5Dataset(pattern, groups="/run", index_cache=cache, validate=False)
    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    opens.clear()
    ShardedHDF5Dataset(pattern, groups="/run", index_cache=cache, validate=False)
    assert opens

    # A file rewritten with other lengths: the new index follows it.
    again.close()
    _write(paths[0], 5, np.random.default_rng(9))
    ds = ShardedHDF5Dataset(pattern, groups="/run", index_cache=cache)
    assert ds.n_samples == 12
    np.testing.assert_array_equal(ds.read(np.arange(12))[0], _reference(paths)["x"])


def test_a_file_vanished_since_the_cached_index_is_named(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "shards", [2, 3, 4])
    cache = tmp_path / "index.json"
    pattern = tmp_path / "shards" / "*.h5"
    ShardedHDF5Dataset(pattern, index_cache=cache, validate=False)
    paths[1].unlink()
    with pytest.raises(DataError, match=f"{paths[1]}: file not found .*index.json"):
        ShardedHDF5Dataset(pattern, index_cache=cache, validate=False)
    # Without the earlier index the glob's two files are simply the dataset.
    assert ShardedHDF5Dataset(pattern, validate=False).n_samples == 6


def test_a_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "shards", [2, 3])
    cache = tmp_path / "index.json"
    cache.write_text("{not json")
    ds = ShardedHDF5Dataset(paths, index_cache=cache)
    assert ds.n_samples == 5
    assert json.loads(cache.read_text())["format"].startswith("trustml-shard-index")


# -- errors name the file ---------------------------------------------------------------------
def _bad_case(case: str, folder: Path) -> tuple[list[Path], Path, str]:
    paths = _shards(folder, [3, 3, 3])
    bad = paths[1]
    rng = np.random.default_rng(5)
    if case == "missing":
        bad.unlink()
        return paths, bad, "file not found"
    if case == "garbage":
        bad.write_bytes(b"this is not hdf5" * 64)
        return paths, bad, "not an HDF5 file"
    if case == "truncated":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        return paths, bad, "corrupt or truncated"
    if case == "input shape":
        _write(bad, 3, rng, x=np.zeros((3, 2, 4, 4), np.float32))
        return paths, bad, r"shape \[2, 4, 4\].*first file"
    if case == "input dtype":
        _write(bad, 3, rng, x=np.zeros((3, 2, 4, 3), np.float64))
        return paths, bad, "dtype float64.*first file"
    if case == "no targets":
        _write(bad, 3, rng, y=None)
        return paths, bad, "'/y' not found"
    if case == "target shape":
        _write(bad, 3, rng, y=np.zeros((3, 3)))
        return paths, bad, r"'/y' has samples of shape \[3\]"
    assert case == "group kind"
    _write(bad, 3, rng, run=np.array([b"a", b"b", b"c"]))
    return paths, bad, "string group ids"


BAD = ["missing", "garbage", "truncated", "input shape", "input dtype", "no targets",
       "target shape", "group kind"]  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_named(case: str, tmp_path: Path) -> None:
    paths, bad, what = _bad_case(case, tmp_path / "shards")
    with pytest.raises(DataError, match=what) as err:
        ShardedHDF5Dataset(paths, groups="/run")
    assert str(err.value).startswith(str(bad))
    assert "\n" not in str(err.value)


def test_a_file_removed_after_caching_is_named(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "shards", [2, 2])
    cache = tmp_path / "index.json"
    ds = ShardedHDF5Dataset(paths, index_cache=cache)
    ds.close()  # an open file stays readable after unlinking
    paths[1].unlink()
    with pytest.raises(DataError, match=f"^{paths[1]}: file not found"):
        ShardedHDF5Dataset(paths, index_cache=cache)
    with pytest.raises(DataError, match=f"^{paths[1]}: file not found"):
        ds.read(np.array([3]))


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no files match"):
        ShardedHDF5Dataset(tmp_path / "none" / "*.h5")
    with pytest.raises(TypeError, match="non-empty list"):
        ShardedHDF5Dataset([])
    paths = _shards(tmp_path / "shards", [2])
    with pytest.raises(DataError, match="listed twice"):
        ShardedHDF5Dataset([paths[0], paths[0]])
    with pytest.raises(ValueError, match="max_open"):
        ShardedHDF5Dataset(paths, max_open=0)


def test_validate_finds_non_finite_values_in_a_later_file(tmp_path: Path) -> None:
    paths = _shards(tmp_path / "shards", [3, 3])
    x = np.zeros((3, 2, 4, 3), np.float32)
    x[1, 0, 0, 0] = np.nan
    _write(paths[1], 3, np.random.default_rng(0), x=x)
    with pytest.raises(DataError, match="1 NaN/inf values, first at sample 4"):
        ShardedHDF5Dataset(paths)
