import numpy as np
import pytest
from scipy import stats

from trustml.calibration import IsotonicRecalibration
from trustml.exceptions import NotFittedError
from trustml.metrics import coverage, pit
from trustml.uq import Predictive


def _miscalibrated(n, seed, d=1):
    """Targets ~ N(mu, 1); a two-member model that is biased by +0.3 and 2x too narrow (and,
    for a second target, 2x too wide)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, d))
    y = mu + rng.normal(size=(n, d))
    scale = np.array([0.5, 2.0][:d])
    members = mu[None] + 0.3 + 0.1 * rng.normal(size=(2, n, d))
    return Predictive.regression(members, np.broadcast_to(scale, members.shape)), y


def _rows(pred, idx):
    return Predictive.regression(pred.member_means[:, idx], pred.member_stds[:, idx])


def _ks(u):
    return stats.kstest(u.ravel(), "uniform").statistic


@pytest.mark.parametrize("d", [1, 2])
def test_pit_of_a_miscalibrated_gaussian_becomes_uniform(d):
    pred, y = _miscalibrated(6000, seed=0, d=d)
    cal, test = np.arange(2000), np.arange(2000, 6000)
    iso = IsotonicRecalibration().fit(_rows(pred, cal), y[cal])
    raw = _rows(pred, test)
    out = iso.transform(raw)
    for j in range(d):
        before, after = _ks(pit(raw, y[test])[:, j]), _ks(pit(out, y[test])[:, j])
        assert before > 0.15 and after < 0.03 and after * 5 < before
    for level in (0.5, 0.9):
        lo, hi = out.interval(level)
        assert coverage(lo, hi, y[test]) == pytest.approx(level, abs=0.03)
    raw_lo, raw_hi = raw.interval(0.9)
    assert abs(coverage(raw_lo, raw_hi, y[test]) - 0.9) > 0.1


def test_calibration_split_pit_becomes_its_empirical_cdf():
    """Isotonic regression of an already-monotone ECDF returns it: on the calibration split the
    calibrated PIT values are exactly the ranks i / n."""
    pred, y = _miscalibrated(500, seed=1)
    out = IsotonicRecalibration().fit(pred, y).transform(pred)
    ranks = stats.rankdata(pred.cdf(y)[:, 0]) / 500
    np.testing.assert_allclose(out.cdf(y)[:, 0], ranks, atol=1e-12)


def test_quantile_inverts_cdf_and_samples_follow_the_calibrated_distribution():
    pred, y = _miscalibrated(400, seed=2)
    out = IsotonicRecalibration().fit(pred, y).transform(_rows(pred, np.arange(50)))
    qs = [out.quantile(q) for q in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert all(np.all(a < b) for a, b in zip(qs, qs[1:], strict=False))
    for q, value in zip((0.1, 0.3, 0.5, 0.7, 0.9), qs, strict=True):
        np.testing.assert_allclose(out.cdf(value), q, atol=1e-6)
    lo, hi = out.interval(0.8)
    np.testing.assert_array_equal(lo, qs[0])
    np.testing.assert_array_equal(hi, qs[-1])
    draws = out.sample(4000, seed=3)
    assert draws.shape == (4000, 50, 1)
    np.testing.assert_allclose(np.mean(draws <= qs[2], axis=0), 0.5, atol=0.04)
    np.testing.assert_array_equal(draws, out.sample(4000, seed=3))


def test_moments_stay_the_members_and_input_is_untouched():
    pred, y = _miscalibrated(300, seed=4)
    out = IsotonicRecalibration().fit(pred, y).transform(pred)
    np.testing.assert_array_equal(out.mean, pred.mean)
    np.testing.assert_allclose(out.std**2, out.aleatoric_var + out.epistemic_var)
    assert pred.calibration is None and out.calibration.method == "isotonic"
    np.testing.assert_allclose(pred.cdf(y), pred.mixture_cdf(y))
    assert not np.allclose(out.cdf(y), pred.cdf(y))


def test_a_calibrated_model_keeps_a_near_identity_map():
    rng = np.random.default_rng(5)
    mu = rng.normal(size=(3000, 1))
    y = mu + rng.normal(size=(3000, 1))
    pred = Predictive.regression(mu[None], np.ones((1, 3000, 1)))
    iso = IsotonicRecalibration().fit(pred, y)
    x, level = iso.knots_[0]
    assert np.all(np.diff(x) > 0) and np.all(np.diff(level) >= 0)
    assert x[0] == level[0] == 0.0 and x[-1] == level[-1] == 1.0
    assert np.max(np.abs(level - x)) < 0.04


def test_errors():
    p = Predictive.regression(np.zeros((1, 3, 1)), np.ones((1, 3, 1)))
    with pytest.raises(NotFittedError, match="IsotonicRecalibration"):
        IsotonicRecalibration().transform(p)
    with pytest.raises(ValueError, match="calibrates regression predictives"):
        IsotonicRecalibration().fit(Predictive.classification(np.full((1, 3, 2), 0.5)), [0, 1, 0])
    with pytest.raises(ValueError, match="finite targets"):
        IsotonicRecalibration().fit(p, [0.0, np.nan, 1.0])
    assert repr(IsotonicRecalibration()) == "IsotonicRecalibration()"
