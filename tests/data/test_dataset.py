"""The BaseDataset contract, exercised through ArrayDataset: reads, batches, subsets, tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trustml.data as tdata
from trustml.data import ArrayDataset, BaseDataset, DataError, target_names


def test_public_names():
    assert sorted(tdata.__all__) == sorted(
        [
            "ArrayDataset",
            "BaseDataset",
            "CORRUPTIONS",
            "CorruptedDataset",
            "DataError",
            "HDF5Dataset",
            "ShardedHDF5Dataset",
            "builtin_names",
            "channel_stats",
            "check_targets_vary",
            "corrupt",
            "epoch_windows",
            "export_builtin",
            "load_builtin",
            "read_ahead",
            "share_range",
            "share_schedule",
            "split_indices",
            "target_names",
            "temporal_split_indices",
        ]
    )
    with pytest.raises(TypeError):
        BaseDataset()  # abstract


def test_read_any_order_with_repeats_and_negative_indices(arrays):
    ds = ArrayDataset(arrays["x"], arrays["y"])
    idx = np.array([39, 2, 2, 17, -1, 0])
    x, y = ds.read(idx)
    np.testing.assert_array_equal(x, arrays["x"][idx])
    np.testing.assert_array_equal(y, arrays["y"][idx])
    mask = np.zeros(40, dtype=bool)
    mask[[4, 9]] = True
    np.testing.assert_array_equal(ds.read(mask)[1], arrays["y"][[4, 9]])
    assert ds.read(np.array([], dtype=np.int64))[0].shape == (0, 1, 6, 5)


def test_read_returns_copies(arrays):
    ds = ArrayDataset(arrays["x"], arrays["y"])
    x, y = ds.read(np.arange(5))  # a contiguous slice internally
    x[:] = 99.0
    y[:] = 99.0
    assert not (arrays["x"][:5] == 99.0).any() and not (arrays["y"][:5] == 99.0).any()


@pytest.mark.parametrize(
    "bad", [np.array([40]), np.array([-41]), np.array([[1, 2]]), np.array([0.5])]
)
def test_read_rejects_bad_indices(arrays, bad):
    with pytest.raises(IndexError):
        ArrayDataset(arrays["x"], arrays["y"]).read(bad)


def test_iter_batches_all_and_given_order(arrays):
    ds = ArrayDataset(arrays["x"], arrays["y"])
    batches = list(ds.iter_batches(batch_size=16))
    assert [len(b[2]) for b in batches] == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), np.arange(40))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), arrays["x"])
    order = np.random.default_rng(1).permutation(40)
    seen = list(ds.iter_batches(order, batch_size=7))
    np.testing.assert_array_equal(np.concatenate([b[2] for b in seen]), order)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in seen]), arrays["y"][order])
    with pytest.raises(ValueError):
        next(ds.iter_batches(batch_size=0))


def test_subset_is_a_view_with_groups_and_parent_classes(arrays):
    labels = np.arange(40) % 5
    ds = ArrayDataset(arrays["x"], labels, arrays["groups"])
    idx = np.array([30, 3, 11, 3])
    sub = ds.subset(idx)
    assert sub.n_samples == len(sub) == 4 and sub.n_classes == 5
    np.testing.assert_array_equal(sub.groups, arrays["groups"][idx])
    np.testing.assert_array_equal(sub.read(np.array([1, 0]))[1], labels[[3, 30]])
    subsub = sub.subset([2, 0])
    np.testing.assert_array_equal(subsub.read(np.arange(2))[0], arrays["x"][[11, 30]])
    copy = ArrayDataset(arrays["x"][idx], labels[idx], arrays["groups"][idx])
    assert sub.fingerprint() == copy.fingerprint()
    only_zeros = ds.subset(np.flatnonzero(labels == 0))
    assert only_zeros.n_classes == 5 and target_names(only_zeros) == ["0", "1", "2", "3", "4"]


def test_getitem_types_and_dataloader_batches(arrays):
    reg = ArrayDataset(arrays["x"], arrays["y"])
    x, y = reg[3]
    assert x.dtype == torch.float32 and x.shape == (1, 6, 5) and y.shape == (2,)
    assert torch.equal(reg[-1][1], torch.from_numpy(arrays["y"][39]))
    cls = ArrayDataset(arrays["x"], (np.arange(40) % 3).astype(np.int32))
    assert cls[4][1].dtype == torch.int64 and cls[4][1].ndim == 0 and int(cls[4][1]) == 1
    with pytest.raises(IndexError):
        cls[40]
    xb, yb = next(iter(torch.utils.data.DataLoader(cls, batch_size=6)))
    assert xb.shape == (6, 1, 6, 5) and yb.tolist() == [0, 1, 2, 0, 1, 2]


def test_task_hint_shapes_and_names(arrays):
    reg = ArrayDataset(arrays["x"], arrays["y"])
    assert (reg.task_hint, reg.target_shape, reg.target_names, reg.n_classes) == (
        "regression",
        (2,),
        ["y0", "y1"],
        None,
    )
    named = ArrayDataset(arrays["x"], arrays["y"], target_names=["mass", "spin"])
    assert target_names(named) == ["mass", "spin"]
    cls = ArrayDataset(arrays["x"], np.full(40, 6))
    assert cls.n_classes == 7 and cls.target_names[-1] == "6" and cls.target_shape == ()
    tab = ArrayDataset(np.zeros((5, 3)), np.zeros(5))  # tabular features: in memory only
    assert tab.layout == "NF" and tab.target_shape == (1,)
    with pytest.raises(DataError, match="3 target names for 2 target columns"):
        ArrayDataset(arrays["x"], arrays["y"], target_names=["a", "b", "c"])


def test_array_errors_name_the_array(arrays):
    x = arrays["x"].copy()
    x[5, 0, 0, 0] = np.nan
    with pytest.raises(
        DataError, match=r"^arrays: 'inputs' has 1 NaN/inf values, first at sample 5$"
    ):
        ArrayDataset(x, arrays["y"])
    assert ArrayDataset(x, arrays["y"], validate=False).n_samples == 40
    with pytest.raises(DataError, match="^mine: 'inputs' has 40 samples but 'targets' has 39$"):
        ArrayDataset(arrays["x"], arrays["y"][:-1], source="mine")
    with pytest.raises(DataError, match="^mine: 'groups' has 3 entries"):
        ArrayDataset(arrays["x"], arrays["y"], np.arange(3), source="mine")
    with pytest.raises(DataError, match="'inputs' has layout 'NCL'"):
        ArrayDataset(arrays["x"], arrays["y"], layout="NCL")


def test_tensors_are_accepted(arrays):
    ds = ArrayDataset(torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]))
    assert ds.fingerprint() == ArrayDataset(arrays["x"], arrays["y"]).fingerprint()
