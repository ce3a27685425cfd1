import numpy as np
import pytest
from scipy import stats

from trustml.uq import Predictive


@pytest.fixture
def mixture():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(4, 50, 2))
    sd = rng.uniform(0.2, 1.5, size=(4, 50, 2))
    return Predictive.regression(mu, sd)


def test_law_of_total_variance(mixture):
    np.testing.assert_allclose(mixture.std**2, mixture.aleatoric_var + mixture.epistemic_var)
    # The mixture's variance computed from its second moment.
    second = (mixture.member_stds**2 + mixture.member_means**2).mean(0)
    np.testing.assert_allclose(mixture.var, second - mixture.mean**2, rtol=1e-10)


def test_interval_is_mixture_quantile(mixture):
    lo, hi = mixture.interval(0.9)
    np.testing.assert_allclose(mixture.cdf(lo), 0.05, atol=1e-8)
    np.testing.assert_allclose(mixture.cdf(hi), 0.95, atol=1e-8)


def test_single_gaussian_interval_matches_scipy():
    p = Predictive.regression(np.full((1, 3, 1), 2.0), np.full((1, 3, 1), 0.5))
    lo, hi = p.interval(0.8)
    np.testing.assert_allclose(lo, stats.norm.ppf(0.1, 2.0, 0.5), atol=1e-8)
    np.testing.assert_allclose(hi, stats.norm.ppf(0.9, 2.0, 0.5), atol=1e-8)


def test_interval_differs_from_mean_pm_z_std_for_bimodal_mixture():
    # Two well-separated members: the 50 % central interval of the mixture is not mean ± z·std.
    p = Predictive.regression(np.array([[[-3.0]], [[3.0]]]), np.full((2, 1, 1), 0.1))
    lo, hi = p.interval(0.5)
    z = stats.norm.ppf(0.75)
    assert abs(hi[0, 0] - z * p.std[0, 0]) > 0.5
    assert p.cdf(hi)[0, 0] == pytest.approx(0.75, abs=1e-8)


def test_samples_have_mixture_moments(mixture):
    draws = mixture.sample(40000, seed=1)
    assert draws.shape == (40000, 50, 2)
    np.testing.assert_allclose(draws.mean(0), mixture.mean, atol=0.05)
    np.testing.assert_allclose(draws.std(0), mixture.std, rtol=0.05)
    np.testing.assert_array_equal(draws, mixture.sample(40000, seed=1))


def test_classification_entropy_decomposition():
    probs = np.array([[[0.9, 0.1]], [[0.1, 0.9]]])  # two confident members that disagree
    p = Predictive.classification(probs)
    np.testing.assert_allclose(p.probs, [[0.5, 0.5]])
    assert p.entropy[0] == pytest.approx(np.log(2))
    member_entropy = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert p.mutual_information[0] == pytest.approx(np.log(2) - member_entropy)
    agree = Predictive.classification(np.array([[[0.7, 0.3]], [[0.7, 0.3]]]))
    assert agree.mutual_information[0] == pytest.approx(0.0, abs=1e-12)


def test_wrong_task_attribute_and_bad_shapes():
    p = Predictive.classification(np.full((2, 3, 4), 0.25))
    with pytest.raises(AttributeError, match="regression"):
        _ = p.mean
    with pytest.raises(ValueError, match=r"\(K, N, D\)"):
        Predictive.regression(np.zeros((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="level"):
        Predictive.regression(np.zeros((1, 1, 1)), np.ones((1, 1, 1))).interval(1.2)
