"""Grid corruptions for shift ladders: each kind against a known value or identity, on 1D-3D."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from trustml.data import CORRUPTIONS, corrupt
from trustml.exceptions import TrustmlInputError

SHAPES = {"1d": (6, 2, 32), "2d": (6, 2, 16, 16), "3d": (4, 2, 8, 8, 8)}


def _x(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    x[:, 1] = 10.0 + 3.0 * x[:, 1]  # a second channel with another mean and spread
    return x


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("kind", CORRUPTIONS.in_order())
def test_the_identity_level_returns_an_equal_copy_and_never_modifies_the_input(kind, shape):
    x = _x(shape)
    before = x.copy()
    same = corrupt(x, kind, CORRUPTIONS.get(kind).identity, seed=1)
    assert np.array_equal(same, x) and same is not x
    corrupt(x, kind, 2 if kind == "resolution" else 0.5, seed=1)
    assert np.array_equal(x, before)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_noise_is_relative_to_each_channels_spread_and_seeded(shape):
    x = _x(shape)
    out = corrupt(x, "noise", 0.5, seed=3)
    added = out - x
    for c, spread in ((0, x[:, 0].std()), (1, x[:, 1].std())):
        assert added[:, c].std() == pytest.approx(0.5 * spread, rel=0.1)
        assert abs(added[:, c].mean()) < 0.1 * spread
    assert np.array_equal(out, corrupt(x, "noise", 0.5, seed=3))
    assert not np.array_equal(out, corrupt(x, "noise", 0.5, seed=4))


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_blur_is_scipys_gaussian_filter_over_the_spatial_axes_only(shape):
    x = _x(shape)
    out = corrupt(x, "blur", 1.5)
    want = np.stack([gaussian_filter(x[i, c], 1.5, mode="reflect")
                     for i in range(len(x)) for c in range(2)]).reshape(x.shape)  # fmt: skip
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    # smoothing preserves the mean and removes variance
    assert out.mean() == pytest.approx(x.mean(), rel=1e-6)
    assert out[:, 0].std() < 0.8 * x[:, 0].std()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_mask_hides_the_given_fraction_of_cells_with_the_channel_mean(shape):
    x = _x(shape)
    out = corrupt(x, "mask", 0.25, seed=0)
    cells = int(np.prod(shape[2:]))
    changed = out != x  # (N, C, *spatial)
    assert np.array_equal(changed[:, 0], changed[:, 1])  # the same cells in every channel
    per_sample = changed[:, 0].reshape(len(x), -1).sum(axis=1)
    assert np.all(per_sample == round(0.25 * cells))
    np.testing.assert_allclose(out[:, 1][changed[:, 1]], x[:, 1].mean())
    # different samples hide different cells
    assert not np.array_equal(changed[0, 0], changed[1, 0])


def test_mask_of_every_cell_leaves_only_the_channel_means():
    x = _x(SHAPES["2d"])
    out = corrupt(x, "mask", 1.0, seed=0)
    np.testing.assert_allclose(out[:, 0], x[:, 0].mean())
    np.testing.assert_allclose(out[:, 1], x[:, 1].mean())


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_resolution_replaces_blocks_by_their_mean(shape):
    x = _x(shape)
    out = corrupt(x, "resolution", 4)
    spatial = shape[2:]
    blocks = x.reshape(*shape[:2], *[v for s in spatial for v in (s // 4, 4)])
    means = blocks.mean(axis=tuple(range(3, 2 + 2 * len(spatial), 2)))
    for axis in range(2, 2 + len(spatial)):
        means = np.repeat(means, 4, axis=axis)
    np.testing.assert_allclose(out, means, rtol=1e-12)
    assert out.mean() == pytest.approx(x.mean(), rel=1e-9)


def test_resolution_averages_a_trailing_partial_block_on_its_own():
    x = np.arange(7, dtype=float).reshape(1, 1, 7)
    assert corrupt(x, "resolution", 3)[0, 0].tolist() == [1, 1, 1, 4, 4, 4, 6]


def test_channels_restricts_the_corruption():
    x = _x(SHAPES["2d"])
    out = corrupt(x, "noise", 1.0, seed=0, channels=[1])
    assert np.array_equal(out[:, 0], x[:, 0]) and not np.array_equal(out[:, 1], x[:, 1])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("fog", 0.1), "Unknown corruption .fog.; valid: blur, mask, noise, resolution"),
        (("mask", 1.5), r"outside \[0, 1\] \(fraction of grid cells\)"),
        (("noise", -0.1), "outside"),
        (("resolution", 2.5), "whole number"),
        (("noise", True), "must be a number"),
        (("noise", float("nan")), "outside"),
    ],
)
def test_bad_levels_and_kinds_are_named(args, words):
    with pytest.raises(TrustmlInputError, match=words):
        corrupt(_x(SHAPES["1d"]), *args)


def test_bad_inputs_are_named():
    with pytest.raises(TrustmlInputError, match="1 to 3 spatial axes"):
        corrupt(np.zeros((4, 8)), "noise", 0.1)
    x = _x(SHAPES["1d"])
    x[0, 0, 0] = np.nan
    with pytest.raises(TrustmlInputError, match="NaN"):
        corrupt(x, "blur", 1.0)
    with pytest.raises(TrustmlInputError, match="channels"):
        corrupt(_x(SHAPES["1d"]), "noise", 0.1, channels=[2])


# -- CorruptedDataset: a ladder level's test set, corrupted on read ---------------------------


def _grid_dataset(shape=(30, 2, 12, 12), seed=0):
    from trustml.data import ArrayDataset

    x = _x(shape, seed).astype(np.float32)
    y = np.arange(shape[0]) % 3
    return ArrayDataset(x, y)


def test_channel_stats_are_numpys_mean_and_std_over_samples_and_cells():
    from trustml.data import channel_stats

    ds = _grid_dataset()
    x, _ = ds.read(np.arange(len(ds)))
    mean, std = channel_stats(ds, batch_size=7)  # batches that do not divide N
    axes = (0, 2, 3)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=axes), rtol=1e-10)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=axes), rtol=1e-8)


@pytest.mark.parametrize("kind,level", [("noise", 0.5), ("mask", 0.3), ("blur", 1.0)])
def test_each_sample_gets_the_same_draw_whatever_the_batch_or_order(kind, level):
    from trustml.data import CorruptedDataset

    ds = _grid_dataset()
    c = CorruptedDataset(ds, kind, level, seed=11)
    whole, y = c.read(np.arange(len(ds)))
    again = np.concatenate([c.read(np.arange(s, min(s + 4, len(ds))))[0] for s in range(0, 30, 4)])
    picked, y_picked = c.read(np.array([17, 2, 17]))
    assert np.array_equal(whole, again)
    assert np.array_equal(picked, whole[[17, 2, 17]])
    assert np.array_equal(y, ds.read(np.arange(len(ds)))[1]) and np.array_equal(y_picked, y[[17, 2, 17]])
    other, _ = CorruptedDataset(ds, kind, level, seed=12).read(np.arange(len(ds)))
    assert np.array_equal(other, whole) == (kind == "blur")  # only the random kinds use the seed


@pytest.mark.parametrize("kind,level", [("blur", 1.5), ("resolution", 3)])
def test_deterministic_kinds_equal_corrupting_the_whole_array(kind, level):
    from trustml.data import CorruptedDataset

    ds = _grid_dataset()
    x, _ = ds.read(np.arange(len(ds)))
    got, _ = CorruptedDataset(ds, kind, level, seed=0).read(np.arange(len(ds)))
    np.testing.assert_allclose(got, corrupt(x, kind, level).astype(np.float32), rtol=1e-6)


def test_noise_and_mask_use_the_whole_sets_channel_statistics():
    from trustml.data import CorruptedDataset, channel_stats

    ds = _grid_dataset(shape=(200, 2, 16, 16))
    x, _ = ds.read(np.arange(len(ds)))
    mean, std = channel_stats(ds)
    noisy, _ = CorruptedDataset(ds, "noise", 0.5, seed=1).read(np.arange(len(ds)))
    spread = (noisy.astype(np.float64) - x).std(axis=(0, 2, 3))
    # 51,200 draws per channel: the sample std is within 2 % of 0.5 * the channel's std.
    np.testing.assert_allclose(spread, 0.5 * std, rtol=0.02)
    masked, _ = CorruptedDataset(ds, "mask", 0.25, seed=1, channels=[1]).read(np.arange(len(ds)))
    changed = masked[:, 1] != x[:, 1]
    assert np.allclose(masked[:, 1][changed], mean[1], rtol=1e-6)
    assert np.array_equal(masked[:, 0], x[:, 0])  # the other channel is untouched
    assert changed.reshape(len(ds), -1).sum(axis=1).max() == round(0.25 * 256)


def test_a_bad_level_or_a_non_grid_dataset_is_refused_before_any_bulk_read():
    from trustml.data import ArrayDataset, CorruptedDataset

    with pytest.raises(TrustmlInputError, match=r"mask.*outside \[0, 1\]"):
        CorruptedDataset(_grid_dataset(), "mask", 1.5, seed=0)
    with pytest.raises(TrustmlInputError, match="channels"):
        CorruptedDataset(_grid_dataset(), "noise", 0.1, seed=0, channels=[5])
    flat = ArrayDataset(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))
    with pytest.raises(TrustmlInputError, match="channel-first grids"):
        CorruptedDataset(flat, "noise", 0.1, seed=0)
