"""Ground-truth masks: read_masks on arrays, subsets and HDF5 files, and their export."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from trustml.data import ArrayDataset, DataError, HDF5Dataset, export_builtin, load_builtin
from trustml.data._hdf5 import write_hdf5
from trustml.explain import localization


@pytest.fixture
def masked(arrays):
    """The shared arrays with one (6, 5) mask per sample: a box at a per-sample row."""
    m = np.zeros((40, 6, 5), dtype=bool)
    for i in range(40):
        m[i, i % 6, 1:4] = True
    return ArrayDataset(arrays["x"], arrays["y"], arrays["groups"], masks=m), m


def test_spatial_masks_are_served_with_a_channel_axis(masked):
    ds, m = masked
    assert ds.has_masks and ds.mask_shape == (1, 6, 5)
    out = ds.read_masks(np.array([5, 0, 5, -1]))
    assert out.dtype == bool and out.shape == (4, 1, 6, 5)
    np.testing.assert_array_equal(out[:, 0], m[[5, 0, 5, 39]])
    flags = np.zeros(40, dtype=bool)
    flags[[3, 7]] = True
    np.testing.assert_array_equal(ds.read_masks(flags)[:, 0], m[[3, 7]])
    assert ds.read_masks(np.arange(0)).shape == (0, 1, 6, 5)
    np.testing.assert_array_equal(ds.read_masks(np.arange(10, 20))[:, 0], m[10:20])
    with pytest.raises(IndexError):
        ds.read_masks([40])
    # They broadcast to the inputs and are what localization takes.
    x, _ = ds.read(np.arange(40))
    assert np.broadcast_shapes(ds.read_masks(np.arange(40)).shape, x.shape) == x.shape
    result = localization(
        np.where(ds.read_masks(np.arange(40)), 1.0, 0.0) * np.ones_like(x),
        ds.read_masks(np.arange(40)),
    )
    assert result.value == pytest.approx(1.0)


def test_read_masks_returns_new_arrays(masked):
    ds, m = masked
    out = ds.read_masks(np.arange(3))
    out[:] = True
    np.testing.assert_array_equal(ds.read_masks(np.arange(3))[:, 0], m[:3])


def test_subsets_forward_masks(masked):
    ds, m = masked
    sub = ds.subset(np.array([9, 2, 30, 4]))
    assert sub.has_masks and sub.mask_shape == (1, 6, 5)
    np.testing.assert_array_equal(sub.read_masks([0, 1, 2, 3])[:, 0], m[[9, 2, 30, 4]])
    nested = sub.subset([3, 0])
    np.testing.assert_array_equal(nested.read_masks([0, 1])[:, 0], m[[4, 9]])
    np.testing.assert_array_equal(nested.read_masks([1, 1, 0])[:, 0], m[[9, 9, 4]])


def test_datasets_without_masks(arrays):
    ds = ArrayDataset(arrays["x"], arrays["y"])
    assert not ds.has_masks and ds.mask_shape is None
    assert ds.read_masks([0, 1]) is None and ds.subset([0]).read_masks([0]) is None
    assert load_builtin("cosmology2d", seed=0, n=4, size=8).read_masks([0]) is None


@pytest.mark.parametrize(
    ("shape", "served"),
    [((40, 1, 6, 5), (1, 6, 5)), ((40, 1, 1, 5), (1, 1, 5)), ((40, 6, 1), (1, 6, 1))],
)
def test_full_rank_and_broadcast_masks(arrays, shape, served):
    m = (np.arange(np.prod(shape)).reshape(shape) % 3).astype(np.float32)  # numeric: != 0
    ds = ArrayDataset(arrays["x"], arrays["y"], masks=m)
    assert ds.mask_shape == served
    np.testing.assert_array_equal(ds.read_masks([2, 7]), (m[[2, 7]] != 0).reshape(2, *served))


def test_multichannel_and_sequence_masks():
    x = np.zeros((10, 3, 4, 4), np.float32)
    full = np.random.default_rng(0).random((10, 3, 4, 4)) > 0.5
    ds = ArrayDataset(x, np.arange(10) % 2, masks=full)
    assert ds.mask_shape == (3, 4, 4)
    np.testing.assert_array_equal(ds.read_masks(np.arange(10)), full)
    seq = ArrayDataset(
        np.zeros((10, 12, 2), np.float32), np.zeros(10), layout="NTF", masks=np.ones((10, 12, 1))
    )
    assert seq.mask_shape == (12, 1)
    with pytest.raises(DataError, match=r"'masks' has shape \(10, 12\)"):
        ArrayDataset(
            np.zeros((10, 12, 2), np.float32), np.zeros(10), layout="NTF", masks=np.ones((10, 12))
        )


@pytest.mark.parametrize(
    ("masks", "part"),
    [
        (np.zeros((39, 6, 5), bool), "'masks' has 39 masks but the inputs have 40 samples"),
        (np.zeros((40, 5, 6), bool), "'masks' has shape (40, 5, 6); expected [40, *[1, 6, 5]]"),
        (np.zeros((40, 2, 6, 5), bool), "'masks' has shape (40, 2, 6, 5)"),
        (np.array(["a"] * 40), "'masks' has dtype <U1 (string); expected bool or numeric masks"),
        (np.zeros((40, 6, 5, 1, 1), bool), "or [40, *[6, 5]] (one mask for all channels)"),
    ],
)
def test_bad_masks_name_the_array(arrays, masks, part):
    with pytest.raises(DataError) as e:
        ArrayDataset(arrays["x"], arrays["y"], source="mine", masks=masks)
    assert str(e.value).startswith("mine: ") and part in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("chunk_rows", [None, 4])
def test_hdf5_masks_match_memory(tmp_path, masked, arrays, chunk_rows):
    ds, m = masked
    path = write_hdf5(tmp_path / "m.h5", arrays["x"], arrays["y"], masks=m, chunk_rows=chunk_rows)
    h5 = HDF5Dataset(path, masks="/masks")
    assert h5.has_masks and h5.mask_shape == (1, 6, 5) and h5.keys["masks"] == "/masks"
    for idx in (
        np.arange(40),
        np.array([39, 0, 7, 7, 21]),
        np.array([3, 4, 5, 30]),
        np.arange(5, 9),
    ):
        np.testing.assert_array_equal(h5.read_masks(idx), ds.read_masks(idx))
    np.testing.assert_array_equal(h5.subset([8, 1]).read_masks([0, 1]), ds.read_masks([8, 1]))
    assert not HDF5Dataset(path).has_masks
    assert HDF5Dataset(path).fingerprint() == h5.fingerprint()  # masks are not model data


def test_hdf5_mask_errors(write_h5, arrays):
    path = write_h5("bad.h5", {"x": arrays["x"], "y": arrays["y"], "m": np.zeros((39, 6, 5))})
    with pytest.raises(DataError, match="'/m' has 39 masks but the inputs have 40 samples"):
        HDF5Dataset(path, masks="/m")
    with pytest.raises(DataError, match=r"dataset '/masks' not found; present: /m, /x, /y"):
        HDF5Dataset(path, masks="masks")


@pytest.mark.parametrize("name", ["climate", "jets"])
def test_export_writes_masks(tmp_path, name):
    path = export_builtin(name, tmp_path / f"{name}.h5", seed=3, n=24, size=16)
    ds = load_builtin(name, seed=3, n=24, size=16)
    with h5py.File(path, "r") as f:
        assert f["masks"].shape == (24, 16, 16) and f["masks"].dtype == bool
        assert list(f["masks"].attrs["dims"])[0] == "sample" and len(f["masks"].attrs["dims"]) == 3
        assert "ground truth" in f["masks"].attrs["description"]
    h5 = HDF5Dataset(path, masks="/masks")
    assert h5.fingerprint() == ds.fingerprint()
    np.testing.assert_array_equal(h5.read_masks(np.arange(24)), ds.read_masks(np.arange(24)))
    assert h5.target_names == ds.target_names and h5.n_classes == 2


def test_export_without_masks_writes_none(tmp_path):
    path = export_builtin("enso", tmp_path / "enso.h5", seed=0, window=6)
    with h5py.File(path, "r") as f:
        assert "masks" not in f and f["x"].attrs["layout"] == "NTF"
    h5 = HDF5Dataset(path, groups="/groups")
    ds = load_builtin("enso", seed=0, window=6)
    assert h5.fingerprint() == ds.fingerprint() and h5.layout == "NTF"
    np.testing.assert_array_equal(h5.groups, ds.groups)
