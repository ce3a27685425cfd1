import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from trustml.exceptions import TrustmlInputError
from trustml.metrics import SpreadSkill, auroc_ood, pit, spread_skill
from trustml.uq import Predictive


def test_pit_of_one_gaussian_is_scipy_cdf():
    rng = np.random.default_rng(0)
    mu, sd = rng.normal(size=(1, 40, 2)), rng.uniform(0.5, 2.0, size=(1, 40, 2))
    y = rng.normal(size=(40, 2))
    p = Predictive.regression(mu, sd)
    np.testing.assert_allclose(
        pit(p, torch.as_tensor(y)), stats.norm.cdf(y, mu[0], sd[0]), atol=1e-12
    )


def test_pit_of_a_mixture_is_the_mixture_cdf():
    rng = np.random.default_rng(1)
    mu, sd = rng.normal(size=(3, 30, 1)), rng.uniform(0.5, 2.0, size=(3, 30, 1))
    y = rng.normal(size=30)  # (N,) is accepted for one target
    expected = np.mean([stats.norm.cdf(y, mu[k, :, 0], sd[k, :, 0]) for k in range(3)], axis=0)
    np.testing.assert_allclose(pit(Predictive.regression(mu, sd), y)[:, 0], expected, atol=1e-12)


def test_pit_of_a_calibrated_model_is_uniform_and_of_an_overconfident_one_is_not():
    rng = np.random.default_rng(2)
    sd = rng.uniform(0.5, 2.0, size=(1, 4000, 1))
    y = sd[0] * rng.normal(size=(4000, 1))
    good = pit(Predictive.regression(np.zeros_like(sd), sd), y).ravel()
    narrow = pit(Predictive.regression(np.zeros_like(sd), sd / 2), y).ravel()
    assert stats.kstest(good, "uniform").statistic < 0.04  # 2.5/sqrt(n): p < 1e-5 under H0
    assert stats.kstest(narrow, "uniform").statistic > 0.15


def test_spread_skill_bins_by_predicted_std():
    rng = np.random.default_rng(3)
    sd = rng.uniform(0.2, 3.0, size=(1, 6000, 1))
    y = sd[0] * rng.normal(size=(6000, 1))
    s = spread_skill(Predictive.regression(np.zeros_like(sd), sd), y, n_bins=6)
    assert isinstance(s, SpreadSkill)
    assert s.spread.shape == s.skill.shape == s.counts.shape == (6,)
    assert s.counts.sum() == 6000 and np.all(s.counts == 1000)
    assert np.all(np.diff(s.spread) > 0)  # bins are ordered by predicted std
    np.testing.assert_allclose(s.skill / s.spread, 1.0, atol=0.1)
    assert s.ratio == pytest.approx(1.0, abs=0.05)
    half = spread_skill(Predictive.regression(np.zeros_like(sd), sd / 2), y, n_bins=6)
    assert half.ratio == pytest.approx(0.5, abs=0.03)


def test_diagnostics_need_a_regression_predictive():
    clf = Predictive.classification(np.full((1, 3, 2), 0.5))
    with pytest.raises(TrustmlInputError, match="expected a regression Predictive"):
        pit(clf, np.zeros(3))
    with pytest.raises(TrustmlInputError, match="expected a regression Predictive"):
        spread_skill(np.zeros(3), np.zeros(3))
    reg = Predictive.regression(np.zeros((1, 3, 1)), np.ones((1, 3, 1)))
    with pytest.raises(ValueError, match="n_bins <= the number of elements 3"):
        spread_skill(reg, np.zeros(3), n_bins=4)


@pytest.mark.parametrize("kind", [np.asarray, torch.as_tensor])
def test_auroc_against_sklearn(kind):
    rng = np.random.default_rng(4)
    s_in, s_out = rng.normal(size=300), rng.normal(0.8, 1.0, size=200)
    s_in[:20] = s_out[:20]  # ties count one half
    expected = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[s_in, s_out])
    assert auroc_ood(kind(s_in), kind(s_out)) == pytest.approx(expected, abs=1e-12)
    assert auroc_ood([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert auroc_ood([2.0, 3.0], [0.0, 1.0]) == 0.0
    with pytest.raises(TrustmlInputError, match="'scores_out': expected shape \\(N,\\)"):
        auroc_ood([0.0], [[1.0]])
