import numpy as np
import properscoring
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from sklearn.metrics import mean_absolute_error, mean_squared_error

from trustml.exceptions import TrustmlInputError
from trustml.metrics import (
    calibration_curve_regression,
    coverage,
    crps_ensemble,
    crps_gaussian,
    interval_width,
    mae,
    nll_gaussian,
    rmse,
)

# Both array kinds must work: numpy, and torch tensors of either precision.
KINDS = [
    np.asarray,
    lambda a: torch.as_tensor(a),
    lambda a: torch.as_tensor(a, dtype=torch.float32),
]


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(size=shape), rng.uniform(0.3, 2.0, size=shape)


def _rel(kind):
    # float32 tensors carry only ~7 significant digits of the inputs.
    return 1e-5 if kind(np.zeros(1)).dtype == torch.float32 else 1e-6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(50,), (40, 3)])
def test_rmse_mae_against_sklearn(kind, shape):
    y, m, _ = _data(shape)
    assert rmse(kind(m), kind(y)) == pytest.approx(
        np.sqrt(mean_squared_error(y.ravel(), m.ravel())), rel=_rel(kind)
    )
    assert mae(kind(m), kind(y)) == pytest.approx(
        mean_absolute_error(y.ravel(), m.ravel()), rel=_rel(kind)
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(50,), (40, 3)])
def test_nll_gaussian_against_scipy(kind, shape):
    y, m, s = _data(shape)
    expected = -stats.norm.logpdf(y, loc=m, scale=s)
    assert nll_gaussian(kind(m), kind(s), kind(y)) == pytest.approx(expected.mean(), rel=_rel(kind))
    if kind is np.asarray:
        np.testing.assert_allclose(nll_gaussian(m, s, y, reduction="none"), expected, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS[:2])
@pytest.mark.parametrize("shape", [(50,), (40, 3)])
def test_crps_gaussian_against_properscoring(kind, shape):
    y, m, s = _data(shape)
    expected = properscoring.crps_gaussian(y, mu=m, sig=s)
    np.testing.assert_allclose(
        crps_gaussian(kind(m), kind(s), kind(y), reduction="none"), expected, rtol=1e-6, atol=1e-12
    )
    assert crps_gaussian(kind(m), kind(s), kind(y)) == pytest.approx(expected.mean(), rel=1e-6)


def test_scalar_std_broadcasts():
    y, m, _ = _data((20, 2))
    assert nll_gaussian(m, 0.7, y) == pytest.approx(-np.mean(stats.norm.logpdf(y, m, 0.7)))
    assert crps_gaussian(m, 0.7, y) == pytest.approx(crps_gaussian(m, np.full(y.shape, 0.7), y))


def _crps_by_quadrature(y, mu, sigma):
    below, _ = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -np.inf, y)
    above, _ = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, np.inf)
    return below + above


@pytest.mark.parametrize(
    ("y", "mu", "sigma"), [(0.0, 0.0, 1.0), (1.3, -0.2, 0.5), (-4.0, 1.0, 2.0), (10.0, 0.0, 0.1)]
)
def test_crps_gaussian_against_quadrature(y, mu, sigma):
    assert crps_gaussian([mu], [sigma], [y]) == pytest.approx(
        _crps_by_quadrature(y, mu, sigma), rel=1e-6
    )


def test_crps_gaussian_against_many_samples():
    y, m, s = _data((6,), seed=1)
    rng = np.random.default_rng(2)
    samples = m + s * rng.standard_normal((40_000, 6))
    # Monte Carlo error of the mean CRPS is about 0.002 here.
    assert crps_ensemble(samples, y, fair=True) == pytest.approx(crps_gaussian(m, s, y), abs=0.01)


def _crps_naive(x, y, fair):
    n = x.shape[0]
    term1 = np.mean(np.abs(x - y), axis=0)
    pairs = np.abs(x[:, None] - x[None, :]).sum(axis=(0, 1))
    return term1 - 0.5 * pairs / (n * (n - 1) if fair else n * n)


@pytest.mark.parametrize("kind", KINDS[:2])
@pytest.mark.parametrize("fair", [False, True])
@pytest.mark.parametrize(("n_samples", "shape"), [(2, (10,)), (7, (10,)), (16, (5, 3)), (33, (4,))])
def test_crps_ensemble_against_all_pairs(kind, fair, n_samples, shape):
    rng = np.random.default_rng(n_samples)
    y = rng.normal(size=shape)
    x = rng.normal(size=(n_samples, *shape))
    x[0] = x[1]  # ties must not matter
    expected = _crps_naive(x, y, fair)
    assert crps_ensemble(kind(x), kind(y), fair=fair) == pytest.approx(expected.mean(), rel=1e-10)
    np.testing.assert_allclose(
        crps_ensemble(kind(x), kind(y), fair=fair, reduction="none"), expected, rtol=1e-10
    )


@pytest.mark.parametrize("n_samples", [1, 5, 40])
def test_crps_ensemble_against_properscoring(n_samples):
    rng = np.random.default_rng(n_samples)
    y = rng.normal(size=30)
    x = rng.normal(size=(n_samples, 30))
    # properscoring puts the members on the last axis.
    expected = properscoring.crps_ensemble(y, x.T)
    np.testing.assert_allclose(crps_ensemble(x, y, reduction="none"), expected, rtol=1e-6)


def test_crps_ensemble_single_member_is_absolute_error():
    y, m, _ = _data((9,))
    assert crps_ensemble(m[None], y) == pytest.approx(mae(m, y))
    with pytest.raises(TrustmlInputError, match="at least 2 samples"):
        crps_ensemble(m[None], y, fair=True)


def test_crps_ensemble_shape_error():
    with pytest.raises(TrustmlInputError, match="'samples': expected shape \\(S, 5\\)"):
        crps_ensemble(np.zeros((5, 4)), np.zeros(5))


@pytest.mark.parametrize("kind", KINDS[:2])
def test_coverage_is_inclusive_and_width_is_mean(kind):
    y = np.array([0.0, 1.0, 2.0, 3.0])
    lo = np.array([0.0, 1.5, 1.0, -1.0])
    hi = np.array([1.0, 2.0, 2.0, 3.0])
    assert coverage(kind(lo), kind(hi), kind(y)) == 0.75
    np.testing.assert_array_equal(coverage(lo, hi, y, reduction="none"), [1.0, 0.0, 1.0, 1.0])
    assert interval_width(kind(lo), kind(hi)) == pytest.approx(np.mean(hi - lo))
    np.testing.assert_allclose(interval_width(lo, hi, reduction="none"), hi - lo)


def test_infinite_bounds_are_allowed_nan_is_not():
    assert coverage([-np.inf, 0.0], [np.inf, 1.0], [5.0, 2.0]) == 0.5
    assert interval_width([-np.inf], [np.inf]) == np.inf
    with pytest.raises(TrustmlInputError, match="'upper': holds 1 NaN"):
        coverage([0.0], [np.nan], [0.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda r: rmse(np.ones((6, 2)), np.zeros((6, 2)), reduction=r),
        lambda r: mae(np.ones((6, 2)), np.zeros((6, 2)), reduction=r),
        lambda r: nll_gaussian(np.ones((6, 2)), 1.0, np.zeros((6, 2)), reduction=r),
        lambda r: crps_gaussian(np.ones((6, 2)), 1.0, np.zeros((6, 2)), reduction=r),
        lambda r: crps_ensemble(np.ones((3, 6, 2)), np.zeros((6, 2)), reduction=r),
        lambda r: coverage(np.zeros((6, 2)), np.ones((6, 2)), np.zeros((6, 2)), reduction=r),
        lambda r: interval_width(np.zeros((6, 2)), np.ones((6, 2)), reduction=r),
    ],
)
def test_reduction_none_keeps_the_target_shape_and_means_to_the_default(call):
    per_element = call("none")
    assert isinstance(per_element, np.ndarray) and per_element.shape == (6, 2)
    value = call("mean")
    assert isinstance(value, float)
    # rmse's per-element values are squared errors.
    assert value in (pytest.approx(per_element.mean()), pytest.approx(np.sqrt(per_element.mean())))
    with pytest.raises(ValueError, match="'reduction' parameter must be one of"):
        call("sum")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), level=st.floats(0.05, 0.99), n=st.sampled_from([500, 2000]))
def test_gaussian_central_intervals_cover_nominal(seed, level, n):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=n)
    std = rng.uniform(0.1, 3.0, size=n)
    y = rng.normal(mean, std)
    z = stats.norm.ppf(0.5 + level / 2)
    tolerance = 4.5 * np.sqrt(level * (1 - level) / n)  # binomial standard errors
    assert abs(coverage(mean - z * std, mean + z * std, y) - level) < tolerance
    _, empirical = calibration_curve_regression(mean, std, y, levels=[level])
    assert abs(empirical[0] - level) < tolerance


def test_calibration_curve_agrees_with_coverage_and_detects_overconfidence():
    rng = np.random.default_rng(5)
    mean = rng.normal(size=3000)
    y = rng.normal(mean, 1.0)
    nominal, empirical = calibration_curve_regression(mean, 1.0, torch.as_tensor(y))
    assert nominal.shape == empirical.shape == (19,)
    assert np.all(np.diff(empirical) >= 0)
    for p, e in zip(nominal, empirical, strict=True):
        z = stats.norm.ppf(0.5 + p / 2)
        assert e == coverage(mean - z, mean + z, y)
    _, too_narrow = calibration_curve_regression(mean, 0.5, y)
    assert np.all(too_narrow[nominal >= 0.3] < nominal[nominal >= 0.3] - 0.05)


@pytest.mark.parametrize("levels", [[0.0, 0.5], [1.0], [], [[0.5]]])
def test_bad_levels(levels):
    with pytest.raises(TrustmlInputError, match="'levels'"):
        calibration_curve_regression([0.0], [1.0], [0.0], levels=levels)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: rmse(np.zeros((5, 1)), np.zeros(5)), "'mean': expected the shape of 'y' (5,)"),
        (
            lambda: nll_gaussian(np.zeros(5), np.zeros(5), np.zeros(5)),
            "'std': expected standard deviations > 0",
        ),
        (
            lambda: nll_gaussian(np.zeros(5), np.ones((5, 1)), np.zeros(5)),
            "'std': expected a shape broadcastable",
        ),
        (lambda: mae(np.zeros(2), np.array([0.0, np.nan])), "'y': holds 1 non-finite values"),
        (
            lambda: crps_gaussian(np.array([np.inf, 0.0]), 1.0, np.zeros(2)),
            "'mean': holds 1 non-finite",
        ),
        (lambda: rmse(np.zeros(0), np.zeros(0)), "at least one sample"),
        (lambda: rmse(1.0, 1.0), "at least 1 dims"),
        (
            lambda: coverage(np.zeros(2), np.zeros(2), np.zeros(3)),
            "'lower': expected the shape of 'y'",
        ),
        (
            lambda: coverage([-1.0, 1.0], [1.0, 0.5], [0.0, 0.0]),
            "lower > upper at 1 of 2",
        ),
    ],
)
def test_bad_arrays_are_named(call, fragment):
    with pytest.raises(TrustmlInputError) as info:
        call()
    assert fragment in str(info.value)


def test_low_precision_and_grad_tensors():
    y, m, s = _data((30,))
    m_t = torch.as_tensor(m, dtype=torch.bfloat16).requires_grad_(True)
    expected = -np.mean(stats.norm.logpdf(y, m_t.detach().double().numpy(), s))
    assert nll_gaussian(m_t, s, torch.as_tensor(y)) == pytest.approx(expected, rel=1e-9)
