"""Constant regression targets: a one-line DataError naming the file, the array and the column.

Loading a dataset does not reject a constant target (a shifted test set at one fixed parameter
is legitimate); :func:`trustml.data.check_targets_vary` is what the protocol runs on the
training split before training.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from trustml.data import (
    ArrayDataset,
    DataError,
    HDF5Dataset,
    check_targets_vary,
    load_builtin,
    split_indices,
)


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _write(path, y, **target_attrs):
    x = np.random.default_rng(0).standard_normal((len(y), 1, 4, 4)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["x"] = x
        f["y"] = y
        f["y"].attrs.update(target_attrs)
    return path


def test_a_constant_hdf5_target_column_is_named_with_the_file_and_its_value(tmp_path):
    y = np.random.default_rng(1).standard_normal((30, 2)).astype(np.float32)
    y[:, 1] = 3.0
    path = _write(tmp_path / "data.h5", y)
    ds = HDF5Dataset(path)  # loading (with the NaN/inf scan) accepts it
    assert ds.task_hint == "regression"
    msg = _error(check_targets_vary, ds)
    assert msg == (
        f"{path}: '/y' target 1 is constant (every sample 3.0); a regression target must vary"
    )
    # The method on the dataset is the same check.
    assert _error(ds.check_targets_vary) == msg


def test_declared_target_names_are_quoted_and_every_constant_column_is_listed(tmp_path):
    y = np.zeros((12, 3), dtype=np.float64)
    y[:, 0] = -0.25
    y[:, 1] = np.arange(12)
    y[:, 2] = 7.5
    path = _write(tmp_path / "named.h5", y, target_names=["mass", "spin", "charge"])
    msg = _error(check_targets_vary, HDF5Dataset(path))
    assert msg.startswith(f"{path}: '/y' target 0 ('mass') is constant (every sample -0.25)")
    assert "(as is target 2)" in msg and msg.endswith("a regression target must vary")


def test_one_dimensional_targets_are_target_0(tmp_path):
    path = _write(tmp_path / "flat.h5", np.full(10, 2.5, dtype=np.float32))
    ds = HDF5Dataset(path)
    assert ds.target_shape == (1,)
    assert "'/y' target 0 is constant (every sample 2.5)" in _error(check_targets_vary, ds)


def test_the_training_split_is_checked_on_its_own(tmp_path):
    # Column 0 varies over the file only through the test samples: the training split sees
    # one value, which is what the climatology baseline and standardisation divide by.
    n = 40
    parts = split_indices(n, {"train": 0.7, "calibration": 0.15, "test": 0.15}, seed=0)
    y = np.stack([np.full(n, 1.5), np.linspace(0.0, 1.0, n)], axis=1).astype(np.float32)
    y[parts["test"], 0] = 9.0
    path = _write(tmp_path / "split.h5", y)
    ds = HDF5Dataset(path)
    check_targets_vary(ds)  # over the whole file it varies
    msg = _error(check_targets_vary, ds, parts["train"], split="train")
    assert msg == (
        f"{path}: '/y' target 0 is constant in the train split ({len(parts['train'])} samples) "
        "(every sample 1.5); a regression target must vary"
    )
    test_msg = _error(check_targets_vary, ds, parts["test"], split="test")
    assert "target 0 is constant in the test split" in test_msg and "every sample 9.0" in test_msg
    mixed = np.concatenate([parts["train"][:5], parts["test"][:1]])
    check_targets_vary(ds, mixed, split="mixed")


def test_min_and_max_are_combined_across_stream_chunks(tmp_path):
    # Each 2-row chunk is constant in column 0, the whole column is not: not an error.
    y = np.repeat(np.array([[1.0], [2.0], [3.0]], dtype=np.float32), 4, axis=0)
    ds = HDF5Dataset(_write(tmp_path / "chunks.h5", y))
    ds._stream_bytes = 8  # two float32 rows per chunk
    check_targets_vary(ds)
    check_targets_vary(ds, np.array([11, 0, 5]))  # any order
    same = HDF5Dataset(_write(tmp_path / "same.h5", np.full((12, 1), 4.0, np.float32)))
    same._stream_bytes = 8
    assert "every sample 4.0" in _error(check_targets_vary, same)


def test_builtins_name_the_builtin_and_the_target():
    ds = load_builtin("cosmology2d", seed=0, n=20, size=8, index=[2.0, 2.0])
    msg = _error(check_targets_vary, ds)
    assert msg == (
        "builtin:cosmology2d: 'targets' target 1 ('n') is constant (every sample 2.0); "
        "a regression target must vary"
    )
    check_targets_vary(load_builtin("cosmology2d", seed=0, n=20, size=8))


def test_classification_and_tiny_selections_are_not_checked(arrays):
    labels = np.zeros(40, dtype=np.int64)
    check_targets_vary(ArrayDataset(arrays["x"], labels))  # one class: not this check's business
    constant = ArrayDataset(arrays["x"], np.ones((40, 2), np.float32), source="mine")
    check_targets_vary(constant, [3])  # one sample has no spread to speak of
    assert _error(check_targets_vary, constant, [3, 4], split="calibration").startswith(
        "mine: 'targets' target 0 is constant in the calibration split (2 samples)"
    )
    # A subset view checks through its parent.
    assert "target 0 is constant" in _error(check_targets_vary, constant.subset([0, 1, 2]))
