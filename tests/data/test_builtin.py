"""Builtin datasets: the physics of the random fields, the real digits, options and seeds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.datasets import load_digits

from trustml.data import DataError, builtin_names, load_builtin


def _mode_power(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|k|`` and ``|rfftn(field)|^2 / V`` of every non-zero mode; fields ``(N, s, ..., s)``."""
    ndim, size = fields.ndim - 1, fields.shape[-1]
    axes = tuple(range(1, ndim + 1))
    power = np.abs(np.fft.rfftn(fields.astype(np.float64), axes=axes)) ** 2 / size**ndim
    freqs = [np.fft.fftfreq(size, 1 / size)] * (ndim - 1) + [np.fft.rfftfreq(size, 1 / size)]
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*freqs, indexing="ij")))
    keep = k.ravel() > 0
    return k.ravel()[keep], power.reshape(len(fields), -1)[:, keep]


def _radial_fit(fields: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of log P against log k, P averaged over fields and over each shell.

    Shells hold the modes of exactly equal ``|k|`` (integer ``|k|^2``), so averaging inside a
    shell does not bias the slope; shells run up to ``|k| < size / 2`` (below Nyquist).
    """
    k, power = _mode_power(fields)
    mean_power = power.mean(axis=0)
    k2 = np.rint(k**2).astype(int)
    shells = np.unique(k2[k < fields.shape[-1] / 2])
    log_k = 0.5 * np.log(shells)
    log_p = [np.log(mean_power[k2 == s].mean()) for s in shells]
    slope, intercept = np.polyfit(log_k, log_p, 1)
    return float(slope), float(intercept)


@pytest.mark.parametrize("index", [1.2, 2.0, 2.8])
def test_cosmology2d_power_spectrum_recovers_index_and_amplitude(index):
    ds = load_builtin(
        "cosmology2d", seed=11, n=300, size=32, log_amplitude=(0.5, 0.5), index=(index, index)
    )
    fields = ds.read(np.arange(300))[0][:, 0]
    slope, intercept = _radial_fit(fields)
    assert slope == pytest.approx(-index, abs=0.05)
    assert intercept == pytest.approx(0.5, abs=0.1)  # log P(k=1) = log A
    np.testing.assert_allclose(fields.mean(axis=(1, 2)), 0.0, atol=1e-5)  # k = 0 mode is zero


def test_cosmology3d_power_spectrum_recovers_index():
    ds = load_builtin(
        "cosmology3d", seed=5, n=60, size=16, index=(2.5, 2.5), log_amplitude=(0.0, 0.0)
    )
    x, y = ds.read(np.arange(60))
    assert x.shape == (60, 1, 16, 16, 16) and np.all(y == np.float32([0.0, 2.5]))
    slope, intercept = _radial_fit(x[:, 0])
    assert slope == pytest.approx(-2.5, abs=0.1)
    assert intercept == pytest.approx(0.0, abs=0.15)


def test_field_amplitude_scales_with_sqrt_a():
    # Same seed and index: the same white noise, so the fields differ exactly by sqrt(A1 / A2).
    hi = load_builtin("cosmology2d", seed=2, n=20, log_amplitude=(1.0, 1.0), index=(2.0, 2.0))
    lo = load_builtin("cosmology2d", seed=2, n=20, log_amplitude=(-1.0, -1.0), index=(2.0, 2.0))
    x_hi, x_lo = hi.read(np.arange(20))[0], lo.read(np.arange(20))[0]
    np.testing.assert_allclose(x_hi, np.e * x_lo, rtol=1e-4, atol=1e-6)
    assert x_hi.var() / x_lo.var() == pytest.approx(np.e**2, rel=1e-3)


def test_per_field_spectra_follow_their_targets():
    ds = load_builtin("cosmology2d", seed=8, n=200, size=32)
    x, y = ds.read(np.arange(200))
    log_a, index = y[:, 0], y[:, 1]
    assert log_a.min() >= -1 and log_a.max() <= 1 and index.min() >= 1 and index.max() <= 3
    k, power = _mode_power(x[:, 0])
    # log A estimated with the true index (the mean of log p/P over modes is a constant).
    est_log_a = np.mean(np.log(power) + index[:, None] * np.log(k), axis=1)
    assert spearmanr(est_log_a, log_a).statistic > 0.98
    slopes = [np.polyfit(np.log(k), np.log(p), 1)[0] for p in power]
    assert spearmanr(slopes, -index).statistic > 0.95


def test_builtins_are_deterministic_from_the_seed():
    a = load_builtin("cosmology2d", seed=1, n=50, size=16)
    b = load_builtin("cosmology2d", seed=1, n=50, size=16)
    c = load_builtin("cosmology2d", seed=2, n=50, size=16)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    d1, d2 = load_builtin("digits", seed=1, n=100), load_builtin("digits", seed=2, n=100)
    assert d1.fingerprint() != d2.fingerprint()
    assert d1.fingerprint() == load_builtin("digits", seed=1, n=100).fingerprint()


def test_default_shapes_and_metadata():
    assert builtin_names() == ["climate", "cosmology2d", "cosmology3d", "digits", "enso", "jets"]
    c2 = load_builtin("cosmology2d", seed=0)
    assert (c2.n_samples, c2.input_shape, c2.target_shape) == (2000, (1, 32, 32), (2,))
    assert c2.source == "builtin:cosmology2d" and c2.groups is None and c2.layout == "NCHW"
    c3 = load_builtin("cosmology3d", seed=0)
    assert (c3.n_samples, c3.input_shape, c3.layout) == (500, (1, 16, 16, 16), "NCDHW")


def test_digits_are_the_real_digits():
    ds = load_builtin("digits", seed=0)
    x, y = ds.read(np.arange(ds.n_samples))
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert sorted(np.unique(y)) == list(range(10)) and ds.task_hint == "classification"
    reference = load_digits()
    np.testing.assert_array_equal(y, reference.target)
    np.testing.assert_allclose(x[:, 0] * 16, reference.images)
    sub = load_builtin("digits", seed=4, n=100)
    xs, ys = sub.read(np.arange(100))
    flat = x.reshape(1797, -1)
    rows = [int(np.flatnonzero((flat == r).all(axis=1))[0]) for r in xs.reshape(100, -1)[:10]]
    np.testing.assert_array_equal(ys[:10], y[rows])  # a subset of the real images, labels kept


@pytest.mark.parametrize(
    ("name", "options", "parts"),
    [
        (
            "cosmology4d",
            {},
            [
                "Unknown builtin dataset 'cosmology4d'",
                "climate, cosmology2d, cosmology3d, digits, enso, jets",
            ],
        ),
        ("cosmology2d", {"sizes": 8}, ["Unknown option 'sizes'", "index, log_amplitude, n, size"]),
        ("digits", {"size": 8}, ["Unknown option 'size'", "valid: n"]),
        ("cosmology2d", {"n": 0}, ["'n' must be >= 1"]),
        ("cosmology2d", {"size": 8.5}, ["'size' must be an int"]),
        ("cosmology3d", {"index": (3.0, 1.0)}, ["'index' must be a pair"]),
        ("cosmology2d", {"log_amplitude": [0.0]}, ["'log_amplitude' must be a pair"]),
        ("digits", {"n": 5000}, ["'n' must be >= 1 and <= 1797"]),
    ],
)
def test_bad_names_and_options(name, options, parts):
    with pytest.raises(DataError) as e:
        load_builtin(name, seed=0, **options)
    for part in parts:
        assert part in str(e.value)


def test_yaml_style_lists_are_accepted_as_ranges():
    a = load_builtin("cosmology2d", seed=0, n=5, size=8, index=[1, 2])
    b = load_builtin("cosmology2d", seed=0, n=5, size=8, index=(1.0, 2.0))
    assert a.fingerprint() == b.fingerprint()
