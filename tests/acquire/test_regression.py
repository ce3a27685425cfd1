"""Regression scores: the law of total variance, mixture quantiles, bad input."""

import numpy as np
import pytest
from scipy.special import ndtr

from trustml.acquire import (
    aleatoric_variance,
    epistemic_variance,
    expected_interval_width,
    mixture_quantile,
    predictive_variance,
)


def _ensemble(k=5, n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(k, n, d)), rng.gamma(2.0, size=(k, n, d))


def test_total_variance_is_aleatoric_plus_epistemic():
    mean, var = _ensemble()
    total = predictive_variance(mean, var)
    np.testing.assert_allclose(total, aleatoric_variance(mean, var) + epistemic_variance(mean, var))
    # the law of total variance, against the sample variance of draws from the mixture
    rng = np.random.default_rng(1)
    member = rng.integers(0, 5, size=400_000)
    draws = rng.normal(mean[member, 0, 0], np.sqrt(var[member, 0, 0]))
    assert np.isclose(
        draws.var(), predictive_variance(mean[:, :1, :1], var[:, :1, :1])[0], rtol=0.01
    )


def test_hand_computed_variances_reduce_over_outputs_by_mean():
    mean = np.array([[[0.0, 0.0]], [[2.0, 4.0]]])  # (K=2, N=1, D=2)
    var = np.array([[[1.0, 1.0]], [[3.0, 1.0]]])
    assert epistemic_variance(mean, var)[0] == pytest.approx((1.0 + 4.0) / 2)
    assert aleatoric_variance(mean, var)[0] == pytest.approx((2.0 + 1.0) / 2)
    assert predictive_variance(mean, var)[0] == pytest.approx(4.0)
    assert predictive_variance(mean[..., 0], var[..., 0])[0] == pytest.approx(3.0)  # (K, N)


def test_mixture_quantiles_invert_the_mixture_cdf():
    mean, var = _ensemble(k=4, n=10, d=2, seed=2)
    for q in (0.05, 0.5, 0.95):
        x = mixture_quantile(mean, var, q)
        cdf = ndtr((x[None] - mean) / np.sqrt(var)).mean(axis=0)
        np.testing.assert_allclose(cdf, q, atol=1e-10)


def test_interval_width_of_agreeing_members_is_the_gaussian_width():
    mean = np.full((3, 2, 1), 1.5)
    var = np.full((3, 2, 1), 4.0)
    expected = 2 * 2.0 * 1.6448536269514722
    np.testing.assert_allclose(expected_interval_width(mean, var), expected, rtol=1e-12)
    np.testing.assert_allclose(expected_interval_width(mean, var, method="normal"), expected)


def test_interval_width_of_a_bimodal_mixture_differs_from_the_normal_approximation():
    mean = np.array([[[-5.0]], [[5.0]]])  # two sharp, far apart modes
    var = np.full((2, 1, 1), 0.01)
    exact = expected_interval_width(mean, var, level=0.9)[0]
    # the 5 % and 95 % quantiles lie inside the modes: 10 - 2 * 0.1 * z(0.9)
    assert exact == pytest.approx(10 + 2 * 0.1 * 1.2815515655446004, rel=1e-9)
    assert expected_interval_width(mean, var, method="normal")[0] > exact * 1.5


def test_zero_variance_members_are_point_masses():
    mean = np.array([[[0.0]], [[1.0]], [[2.0]], [[3.0]]])
    var = np.zeros((4, 1, 1))
    assert mixture_quantile(mean, var, 0.6)[0, 0] == pytest.approx(2.0)
    assert expected_interval_width(mean, var, level=0.5)[0] == pytest.approx(2.0)


def test_chunks_equal_one_pass():
    mean, var = _ensemble(n=300)
    for fn in (predictive_variance, epistemic_variance, expected_interval_width):
        whole = fn(mean, var)
        chunked = np.concatenate(
            [fn(mean[:, i : i + 64], var[:, i : i + 64]) for i in range(0, 300, 64)]
        )
        np.testing.assert_array_equal(chunked, whole)


def test_bad_input_is_named():
    mean, var = _ensemble()
    with pytest.raises(ValueError, match="var of the shape of mean"):
        predictive_variance(mean, var[:, :3])
    with pytest.raises(ValueError, match="var >= 0"):
        predictive_variance(mean, -var)
    with pytest.raises(ValueError, match="mean of shape"):
        predictive_variance(mean[0, 0], var[0, 0])
    with pytest.raises(ValueError, match=r"level in \(0, 1\)"):
        expected_interval_width(mean, var, level=1.5)
    with pytest.raises(ValueError, match="'method' parameter"):
        expected_interval_width(mean, var, method="student")
