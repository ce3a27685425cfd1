"""The science builtins: climate fields with cyclones, jet images, the real El Nino series.

Physics is checked on what the generators produce (pressure minima, wind rings, prong
separations, moisture under warming), and every mask against the signal it marks.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, maximum_filter
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from trustml.data import DataError, load_builtin, temporal_split_indices
from trustml.data._climate import CHANNEL_SCALES, DOMAIN_KM, climate_fields
from trustml.data._enso import sst_series
from trustml.data._jets import HALF_WIDTH, jet_images
from trustml.explain import localization


def _physical(x: np.ndarray) -> dict[str, np.ndarray]:
    """Climate inputs ``(n, 3, s, s)`` back in hPa, m/s and mm."""
    names = ("slp_anomaly", "wind_speed", "precipitable_water")
    return {
        k: x[:, c].astype(np.float64) * CHANNEL_SCALES[k][1] + CHANNEL_SCALES[k][0]
        for c, k in enumerate(names)
    }


# -- common contract ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["climate", "jets"])
def test_images_shapes_dtypes_balance_and_determinism(name):
    a = load_builtin(name, seed=3, n=201, size=24)
    b = load_builtin(name, seed=3, n=201, size=24)
    c = load_builtin(name, seed=4, n=201, size=24)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    np.testing.assert_array_equal(a.read_masks(np.arange(201)), b.read_masks(np.arange(201)))
    x, y = a.read(np.arange(201))
    assert x.shape == (201, 3, 24, 24) and x.dtype == np.float32 and np.isfinite(x).all()
    assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1}
    assert abs(int(y.sum()) - 100) <= 1  # exactly balanced up to the odd sample
    assert a.layout == "NCHW" and a.task_hint == "classification" and a.n_classes == 2
    assert a.has_masks and a.mask_shape == (1, 24, 24)
    masks = a.read_masks(np.arange(201))
    assert masks.dtype == bool and masks.shape == (201, 1, 24, 24)
    assert not masks[y == 0].any()  # no signal, no mask
    assert masks[y == 1].reshape(int(y.sum()), -1).any(axis=1).all()
    default = load_builtin(name, seed=0)
    assert default.n_samples == 2000 and default.input_shape == (3, 32, 32)


@pytest.mark.parametrize("name", ["climate", "jets", "enso"])
def test_defaults_generate_in_under_two_seconds(name):
    load_builtin(name, seed=0, **({"n": 10} if name != "enso" else {}))  # imports, caches
    start = time.perf_counter()
    load_builtin(name, seed=1)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    ("name", "options", "part"),
    [
        ("climate", {"shift": "warm"}, "'shift' must be a finite number"),
        ("climate", {"shift": 11.0}, "'shift' must be >= -10.0 and <= 10.0"),
        ("climate", {"size": 8}, "'size' must be >= 16"),
        ("climate", {"n": 1}, "'n' must be >= 2"),
        ("jets", {"pt_range": (100.0, 300.0)}, "'pt_range' must lie within [200, 5000] GeV"),
        ("jets", {"pt_range": (400.0, 300.0)}, "'pt_range' must be a pair"),
        ("jets", {"shift": 1.0}, "Unknown option 'shift'"),
        ("enso", {"anomaly": 1}, "'anomaly' must be true or false"),
        ("enso", {"window": 0}, "'window' must be >= 1"),
        ("enso", {"climatology_years": 62}, "'climatology_years' must be >= 1 and <= 61"),
        ("enso", {"n": 100}, "valid: anomaly, climatology_years, window"),
    ],
)
def test_bad_options(name, options, part):
    with pytest.raises(DataError, match=None) as e:
        load_builtin(name, seed=0, **options)
    assert part in str(e.value)


# -- climate ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def storms():
    x, y, masks, info = climate_fields(np.random.default_rng(1), 600, 32, 0.0)
    return _physical(x), y, masks, info


def test_loaded_climate_is_the_generator_output():
    ds = load_builtin("climate", seed=5, n=40, size=16, shift=1.5)
    from trustml.data._builtin import _BUILTINS
    from trustml.utils.seeding import child

    rng = np.random.default_rng(child(child(5, "data"), _BUILTINS.get("climate").stream))
    x, y, masks, _ = climate_fields(rng, 40, 16, 1.5)
    np.testing.assert_array_equal(ds.read(np.arange(40))[0], x)
    np.testing.assert_array_equal(ds.read_masks(np.arange(40))[:, 0], masks)


def test_cyclones_have_a_pressure_minimum_inside_their_mask(storms):
    f, y, masks, info = storms
    slp = f["slp_anomaly"]
    cyc = np.flatnonzero(y == 1)
    inside = np.array([slp[i][masks[i]].min() for i in cyc])
    outside = np.array([slp[i][~masks[i]].min() for i in cyc])
    mean_in = np.array([slp[i][masks[i]].mean() for i in cyc])
    mean_out = np.array([slp[i][~masks[i]].mean() for i in cyc])
    assert np.mean(mean_in < mean_out) >= 0.95 and np.mean(inside < outside) >= 0.95
    strong = info["vmax"][cyc] >= 25.0  # deficit ~10 hPa or more, background std 1.5 hPa
    assert (inside[strong] < outside[strong] - 3.0).all() and (mean_in < mean_out)[strong].all()
    # The deficit follows cyclostrophic balance: dp = rho e V_max^2 / 2 (to the background).
    depth = np.array([np.median(slp[i][~masks[i]]) for i in cyc]) - inside
    expected = 1.15 * np.e * info["vmax"][cyc] ** 2 / 2 / 100
    assert spearmanr(depth, expected).statistic > 0.95
    assert np.median(depth / expected) == pytest.approx(1.0, abs=0.15)


def test_cyclone_wind_peaks_on_a_ring_at_the_radius_of_maximum_wind(storms):
    f, y, masks, info = storms
    wind = f["wind_speed"]
    px = DOMAIN_KM / 32
    offsets, eye_ratio = [], []
    for i in np.flatnonzero(y == 1):
        w = np.where(masks[i], wind[i], -np.inf)
        r, c = np.unravel_index(np.argmax(w), w.shape)
        dist = np.hypot((c + 0.5) * px - info["cx"][i], (r + 0.5) * px - info["cy"][i])
        offsets.append((dist - info["rmax"][i]) / px)
        eye = int(info["cy"][i] // px), int(info["cx"][i] // px)
        eye_ratio.append(wind[i][eye] / wind[i][masks[i]].max())
    offsets = np.abs(offsets)
    assert np.median(offsets) < 0.5 and offsets.max() < 1.5  # on the ring, to a cell
    assert np.max(eye_ratio) < 0.7 and np.median(eye_ratio) < 0.4  # a calm eye
    # The strongest wind of a storm is inside its mask and of the drawn intensity.
    cyc = np.flatnonzero(y == 1)
    peak = np.array([wind[i][masks[i]].max() for i in cyc])
    assert np.all(peak >= np.array([wind[i].max() for i in cyc]) - 1e-9)
    assert spearmanr(peak, info["vmax"][cyc]).statistic > 0.9


def test_distractors_and_task_difficulty(storms):
    f, y, masks, info = storms
    assert not info["depression"][y == 1].any() and info["depression"][y == 0].mean() > 0.35
    assert 0.2 < info["river"][y == 0].mean() < 0.4 and 0.2 < info["river"][y == 1].mean() < 0.4
    assert (info["vmax"][y == 1] >= 17.5).all() and (info["vmax"][info["depression"]] < 17.5).all()
    # Rivers are moist bands: their samples hold more precipitable water, in both classes.
    pw_mean = f["precipitable_water"].mean(axis=(1, 2))
    for label in (0, 1):
        sel = y == label
        assert pw_mean[sel & info["river"]].mean() > pw_mean[sel & ~info["river"]].mean() + 1.0
    # Learnable but not trivial: the strongest wind alone separates well, not perfectly;
    # moisture alone is a weak cue.
    auc_wind = roc_auc_score(y, f["wind_speed"].max(axis=(1, 2)))
    assert 0.9 < auc_wind < 0.999
    assert roc_auc_score(y, f["precipitable_water"].max(axis=(1, 2))) < 0.85


def test_warmer_climate_is_moister_and_keeps_the_labels():
    base = load_builtin("climate", seed=2, n=300, shift=0.0)
    warm = load_builtin("climate", seed=2, n=300, shift=3.0)
    dry = load_builtin("climate", seed=2, n=300, shift=-2.0)
    (xb, yb), (xw, yw), (xd, yd) = (d.read(np.arange(300)) for d in (base, warm, dry))
    np.testing.assert_array_equal(yb, yw)
    np.testing.assert_array_equal(yb, yd)
    np.testing.assert_array_equal(base.read_masks(np.arange(300)), warm.read_masks(np.arange(300)))
    pw_b, pw_w = _physical(xb)["precipitable_water"], _physical(xw)["precipitable_water"]
    pw_d = _physical(xd)["precipitable_water"]
    # Clausius-Clapeyron: 7 %/K on about 45-48 mm, so about +10 mm for 3 K.
    assert pw_w.mean() - pw_b.mean() == pytest.approx(pw_b.mean() * (1.07**3 - 1), rel=0.15)
    assert pw_d.mean() < pw_b.mean()
    assert pw_w.std() > 1.15 * pw_b.std()  # its variance grows too
    # The same draws: only moisture (and where rivers are added) changes, not the pressure.
    np.testing.assert_allclose(xb[:, 0], xw[:, 0], atol=1e-6)


def test_climate_masks_support_localization():
    ds = load_builtin("climate", seed=0, n=64)
    x, y = ds.read(np.arange(64))
    masks = ds.read_masks(np.arange(64))
    cyc = y == 1
    # An "explanation" that is the pressure deficit localizes; a uniform one does not.
    deficit = np.maximum(-x[:, :1], 0.0) * np.ones_like(x)
    good = localization(deficit[cyc], masks[cyc])
    flat = localization(np.ones_like(x[cyc]), masks[cyc])
    assert good.passed and good.value > 3 * good.extra["area_share"]
    assert not flat.passed and flat.value == pytest.approx(flat.extra["area_share"])


# -- jets -------------------------------------------------------------------------------------
def _two_peaks(image: np.ndarray, pixel: float) -> tuple[float, tuple[int, int] | None, float]:
    """Distance between the two highest local maxima of a smoothed image, the second's pixel
    and its height relative to the first."""
    s = gaussian_filter(image.astype(np.float64), 1.0, mode="constant")
    peaks = (s == maximum_filter(s, size=5)) & (s > 0)
    r, c = np.nonzero(peaks)
    order = np.argsort(-s[r, c])
    r, c = r[order], c[order]
    if len(r) < 2:
        return np.nan, None, 0.0
    return (
        float(np.hypot(r[0] - r[1], c[0] - c[1]) * pixel),
        (r[1], c[1]),
        s[r[1], c[1]] / s[r[0], c[0]],
    )


@pytest.fixture(scope="module")
def jets():
    return jet_images(np.random.default_rng(0), 600, 32, (250.0, 500.0))


def test_two_prong_separation_tracks_two_m_over_pt(jets):
    x, y, masks, info = jets
    pixel = 2 * HALF_WIDTH / 32
    sig = np.flatnonzero(y == 1)
    found = [_two_peaks(x[i].sum(axis=0), pixel) for i in sig]
    measured = np.array([f[0] for f in found])
    assert not np.isnan(measured).any()
    exact = info["delta_r"][sig]  # m / (pT sqrt(z (1 - z)))
    np.testing.assert_allclose(
        exact,
        info["mass"][sig] / (info["pt"][sig] * np.sqrt(info["z"][sig] * (1 - info["z"][sig]))),
    )
    rel = np.abs(measured / exact - 1)
    assert np.median(rel) < 0.1 and np.mean(rel < 0.2) > 0.9
    approx = 2 * info["mass"][sig] / info["pt"][sig]
    assert spearmanr(measured, approx).statistic > 0.7
    assert 0.95 < np.median(measured / approx) < 1.2  # 1 / (2 sqrt(z (1 - z))) >= 1
    assert 78 < np.median(info["mass"][sig]) < 92 and np.all(np.abs(info["mass"][sig] - 86) < 11)
    # The second peak found is where the mask says the second prong is.
    in_mask = [masks[i][f[1]] for i, f in zip(sig, found, strict=True)]
    assert np.mean(in_mask) > 0.85


def test_doubling_pt_halves_the_separation():
    pixel = 2 * HALF_WIDTH / 32
    medians = []
    for lo in (250.0, 500.0):
        ds = load_builtin("jets", seed=1, n=300, pt_range=(lo, lo * 1.04))
        x, y = ds.read(np.arange(300))
        medians.append(
            np.median([_two_peaks(x[i].sum(axis=0), pixel)[0] for i in np.flatnonzero(y == 1)])
        )
        assert medians[-1] == pytest.approx(2 * 86 / (lo * 1.02), rel=0.2)
    assert medians[0] / medians[1] == pytest.approx(2.0, rel=0.15)


def test_jet_images_are_momentum_fractions_and_qcd_is_one_prong(jets):
    x, y, masks, info = jets
    assert (x >= 0).all()
    calo = x[:, :2].sum(axis=(1, 2, 3))
    assert 0.95 < np.median(calo) < 1.2  # the calorimeters see the jet's pT (plus soft particles)
    tracks = x[:, 2].sum(axis=(1, 2))
    assert 0.45 < np.median(tracks) < 0.8  # about 65 % charged
    # The EM channel is photons only: narrower showers than the hadronic channel.
    pixel = 2 * HALF_WIDTH / 32
    ratios = np.array([_two_peaks(x[i].sum(axis=0), pixel)[2] for i in range(len(y))])
    assert np.median(ratios[y == 1]) > 0.3 > 0.05 > np.median(ratios[y == 0])
    assert 0.85 < roc_auc_score(y, ratios) < 0.995  # hard QCD splittings mimic bosons
    # The second prong's mask holds a share of the pT close to its z.
    share = np.array(
        [x[i, :2].sum(axis=0)[masks[i]].sum() / calo[i] for i in np.flatnonzero(y == 1)]
    )
    assert spearmanr(share, info["z"][y == 1]).statistic > 0.7
    assert np.median(share / info["z"][y == 1]) == pytest.approx(1.0, abs=0.25)


# -- enso -------------------------------------------------------------------------------------
def test_enso_is_the_statsmodels_record():
    from statsmodels.datasets import elnino

    sst = sst_series()
    assert sst.shape == (732,) and not sst.flags.writeable
    assert sst[0] == pytest.approx(23.11) and sst[-1] == pytest.approx(22.07)
    assert 18.0 < sst.min() and sst.max() < 30.0
    table = elnino.load_pandas().data
    np.testing.assert_array_equal(sst, table.iloc[:, 1:].to_numpy().ravel())
    # The seasonal cycle of the Nino 1+2 region: warmest in March, coolest in September.
    clim = sst.reshape(61, 12).mean(axis=0)
    assert np.argmax(clim) in (1, 2, 3) and np.argmin(clim) in (7, 8, 9)
    # The 1982-83 and 1997-98 El Ninos are the record warm anomalies.
    anom = (sst.reshape(61, 12) - clim).ravel()
    years = 1950 + np.argsort(-anom)[:10] // 12
    assert set(years) <= {1982, 1983, 1997, 1998}


def test_enso_windows_raw_and_anomaly():
    raw = load_builtin("enso", seed=0, anomaly=False)
    sst = sst_series()
    x, y = raw.read(np.arange(raw.n_samples))
    assert raw.n_samples == 720 and x.shape == (720, 12, 1) and y.shape == (720, 1)
    assert x.dtype == np.float32 and raw.layout == "NTF" and raw.target_names == ["sst_next"]
    np.testing.assert_allclose(x[0, :, 0], sst[:12], rtol=1e-6)
    np.testing.assert_allclose(y[:, 0], sst[12:], rtol=1e-6)
    np.testing.assert_array_equal(x[1:, :-1], x[:-1, 1:])  # sliding windows, in time order
    np.testing.assert_array_equal(x[1:, -1], y[:-1])
    assert raw.groups[0] == 1951 and raw.groups[-1] == 2010 and np.all(np.diff(raw.groups) >= 0)
    assert np.bincount(raw.groups - 1951).tolist() == [12] * 60
    # Real data: the seed does not matter.
    assert raw.fingerprint() == load_builtin("enso", seed=99, anomaly=False).fingerprint()

    anom = load_builtin("enso", seed=0, window=6, climatology_years=30)
    xa, ya = anom.read(np.arange(anom.n_samples))
    assert anom.n_samples == 726 and xa.shape == (726, 6, 1)
    months = np.arange(6, 732)
    clim = sst[:360].reshape(30, 12).mean(axis=0)
    np.testing.assert_allclose(ya[:, 0], sst[6:] - clim[months % 12], atol=1e-5)
    # The whole anomaly series has zero mean over the climatology's years, for each month.
    series = np.concatenate([xa[0, :, 0], ya[:, 0]]).astype(np.float64)
    np.testing.assert_allclose(series[:360].reshape(30, 12).mean(axis=0), 0.0, atol=1e-5)
    assert np.abs(ya).max() < 6.0 and np.abs(ya).std() < 1.5
    other = load_builtin("enso", seed=0, window=6, climatology_years=61)
    assert not np.allclose(other.read(np.arange(10))[1], ya[:10])


def test_enso_temporal_split_keeps_windows_apart():
    window = 12
    ds = load_builtin("enso", seed=0, window=window)
    parts = temporal_split_indices(
        ds.n_samples,
        {"train": 0.7, "calibration": 0.15, "test": 0.15},
        gap=window,
        groups=ds.groups,
    )
    spans = {k: (int(v.min()), int(v.max()) + window) for k, v in parts.items()}  # months used
    assert spans["train"][1] < spans["calibration"][0]
    assert spans["calibration"][1] < spans["test"][0]
    years = {k: set(ds.groups[v].tolist()) for k, v in parts.items()}
    assert not (years["train"] & years["calibration"]) and not (
        years["calibration"] & years["test"]
    )
    assert max(years["test"]) == 2010 and min(years["train"]) == 1951
    assert min(years["test"]) >= 2000  # the last decade or so is unseen


# -- cosmology: out-of-range test sets ----------------------------------------------------------
def test_cosmology3d_out_of_range_test_set():
    train = load_builtin("cosmology3d", seed=0, n=40, size=8)
    ood = load_builtin(
        "cosmology3d", seed=1, n=40, size=8, log_amplitude=(1.5, 2.5), index=(3.0, 4.0)
    )
    _, yt = train.read(np.arange(40))
    xo, yo = ood.read(np.arange(40))
    assert yt[:, 0].max() <= 1.0 and yo[:, 0].min() >= 1.5  # outside the training range
    assert yt[:, 1].max() <= 3.0 and yo[:, 1].min() >= 3.0
    assert xo.var() > train.read(np.arange(40))[0].var()  # larger amplitude, larger variance
