import numpy as np
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
    gaussian_nll,
    interval_width,
    mae,
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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(50,), (40, 3)])
def test_rmse_mae_against_sklearn(kind, shape):
    y, m, _ = _data(shape)
    assert rmse(kind(y), kind(m)) == pytest.approx(
        np.sqrt(mean_squared_error(y.ravel(), m.ravel())), rel=1e-6
    )
    assert mae(kind(y), kind(m)) == pytest.approx(
        mean_absolute_error(y.ravel(), m.ravel()), rel=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(50,), (40, 3)])
def test_gaussian_nll_against_scipy(kind, shape):
    y, m, s = _data(shape)
    expected = -np.mean(stats.norm.logpdf(y, loc=m, scale=s))
    assert gaussian_nll(kind(y), kind(m), kind(s)) == pytest.approx(expected, rel=1e-6)


def test_scalar_std_broadcasts():
    y, m, _ = _data((20, 2))
    assert gaussian_nll(y, m, 0.7) == pytest.approx(-np.mean(stats.norm.logpdf(y, m, 0.7)))
    assert crps_gaussian(y, m, 0.7) == pytest.approx(crps_gaussian(y, m, np.full(y.shape, 0.7)))


def _crps_by_quadrature(y, mu, sigma):
    below, _ = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -np.inf, y)
    above, _ = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, np.inf)
    return below + above


@pytest.mark.parametrize(
    ("y", "mu", "sigma"), [(0.0, 0.0, 1.0), (1.3, -0.2, 0.5), (-4.0, 1.0, 2.0), (10.0, 0.0, 0.1)]
)
def test_crps_gaussian_against_quadrature(y, mu, sigma):
    assert crps_gaussian([y], [mu], [sigma]) == pytest.approx(
        _crps_by_quadrature(y, mu, sigma), rel=1e-6
    )


def test_crps_gaussian_mean_over_elements_against_quadrature():
    y, m, s = _data((4, 2))
    expected = np.mean(
        [
            _crps_by_quadrature(a, b, c)
            for a, b, c in zip(y.ravel(), m.ravel(), s.ravel(), strict=True)
        ]
    )
    assert crps_gaussian(torch.as_tensor(y), m, s) == pytest.approx(expected, rel=1e-6)


def test_crps_gaussian_against_many_samples():
    y, m, s = _data((6,), seed=1)
    rng = np.random.default_rng(2)
    samples = m + s * rng.standard_normal((40_000, 6))
    # Monte Carlo error of the mean CRPS is about 0.002 here.
    assert crps_ensemble(y, samples, fair=True) == pytest.approx(crps_gaussian(y, m, s), abs=0.01)


def _crps_naive(y, x, fair):
    n = x.shape[0]
    term1 = np.mean(np.abs(x - y), axis=0)
    pairs = np.abs(x[:, None] - x[None, :]).sum(axis=(0, 1))
    return np.mean(term1 - 0.5 * pairs / (n * (n - 1) if fair else n * n))


@pytest.mark.parametrize("kind", KINDS[:2])
@pytest.mark.parametrize("fair", [False, True])
@pytest.mark.parametrize(("n_samples", "shape"), [(2, (10,)), (7, (10,)), (16, (5, 3)), (33, (4,))])
def test_crps_ensemble_against_naive_formula(kind, fair, n_samples, shape):
    rng = np.random.default_rng(n_samples)
    y = rng.normal(size=shape)
    x = rng.normal(size=(n_samples, *shape))
    x[0] = x[1]  # ties must not matter
    assert crps_ensemble(kind(y), kind(x), fair=fair) == pytest.approx(
        _crps_naive(y, x, fair), rel=1e-10
    )


def test_crps_ensemble_single_member_is_absolute_error():
    y, m, _ = _data((9,))
    assert crps_ensemble(y, m[None]) == pytest.approx(mae(y, m))
    with pytest.raises(TrustmlInputError, match="at least 2 samples"):
        crps_ensemble(y, m[None], fair=True)


def test_crps_ensemble_shape_error():
    with pytest.raises(TrustmlInputError, match="'samples': expected shape \\(S, 5\\)"):
        crps_ensemble(np.zeros(5), np.zeros((5, 4)))


@pytest.mark.parametrize("kind", KINDS[:2])
def test_coverage_is_inclusive_and_width_is_mean(kind):
    y = np.array([0.0, 1.0, 2.0, 3.0])
    lo = np.array([0.0, 1.5, 1.0, -1.0])
    hi = np.array([1.0, 2.0, 2.0, 3.0])
    assert coverage(kind(y), kind(lo), kind(hi)) == 0.75
    assert interval_width(kind(lo), kind(hi)) == pytest.approx(np.mean(hi - lo))


def test_crossed_intervals_are_rejected():
    with pytest.raises(TrustmlInputError, match="lower > upper at 1 of 2"):
        coverage([0.0, 0.0], [-1.0, 1.0], [1.0, 0.5])
    with pytest.raises(TrustmlInputError, match="lower <= upper"):
        interval_width([2.0], [1.0])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), level=st.floats(0.05, 0.99), n=st.sampled_from([500, 2000]))
def test_gaussian_central_intervals_cover_nominal(seed, level, n):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=n)
    std = rng.uniform(0.1, 3.0, size=n)
    y = rng.normal(mean, std)
    z = stats.norm.ppf(0.5 + level / 2)
    tolerance = 4.5 * np.sqrt(level * (1 - level) / n)  # binomial standard errors
    assert abs(coverage(y, mean - z * std, mean + z * std) - level) < tolerance
    _, empirical = calibration_curve_regression(y, mean, std, levels=[level])
    assert abs(empirical[0] - level) < tolerance


def test_calibration_curve_agrees_with_coverage_and_detects_overconfidence():
    rng = np.random.default_rng(5)
    mean = rng.normal(size=3000)
    y = rng.normal(mean, 1.0)
    nominal, empirical = calibration_curve_regression(torch.as_tensor(y), mean, 1.0)
    assert nominal.shape == empirical.shape == (19,)
    assert np.all(np.diff(empirical) >= 0)
    for p, e in zip(nominal, empirical, strict=True):
        z = stats.norm.ppf(0.5 + p / 2)
        assert e == coverage(y, mean - z, mean + z)
    _, too_narrow = calibration_curve_regression(y, mean, 0.5)
    assert np.all(too_narrow[nominal >= 0.3] < nominal[nominal >= 0.3] - 0.05)


@pytest.mark.parametrize("levels", [[0.0, 0.5], [1.0], [], [[0.5]]])
def test_bad_levels(levels):
    with pytest.raises(TrustmlInputError, match="'levels'"):
        calibration_curve_regression([0.0], [0.0], [1.0], levels=levels)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: rmse(np.zeros(5), np.zeros((5, 1))), "'mean': expected the shape of 'y' (5,)"),
        (
            lambda: gaussian_nll(np.zeros(5), np.zeros(5), np.zeros(5)),
            "'std': expected standard deviations > 0",
        ),
        (
            lambda: gaussian_nll(np.zeros(5), np.zeros(5), np.ones((5, 1))),
            "'std': expected a shape broadcastable",
        ),
        (lambda: mae(np.array([0.0, np.nan]), np.zeros(2)), "'y': holds 1 non-finite values"),
        (
            lambda: crps_gaussian(np.zeros(2), np.array([np.inf, 0.0]), 1.0),
            "'mean': holds 1 non-finite",
        ),
        (lambda: rmse(np.zeros(0), np.zeros(0)), "at least one sample"),
        (lambda: rmse(1.0, 1.0), "at least 1 dims"),
        (
            lambda: coverage(np.zeros(3), np.zeros(2), np.zeros(2)),
            "'lower': expected the shape of 'y'",
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
    assert gaussian_nll(torch.as_tensor(y), m_t, s) == pytest.approx(expected, rel=1e-9)
