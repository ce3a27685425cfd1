import numpy as np
import pytest

from trustml.calibration import ConformalRegressor, conformal_quantile
from trustml.exceptions import NotFittedError
from trustml.uq import Predictive


def test_conformal_quantile_rank():
    scores = np.arange(1, 20, dtype=float)[:, None]  # n = 19
    # ceil((19 + 1) * 0.9) = 18 -> the 18th smallest score.
    assert conformal_quantile(scores, 0.1)[0] == 18.0
    assert np.isinf(conformal_quantile(scores[:5], 0.1)[0])


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.32])
def test_marginal_coverage_of_miscalibrated_model(alpha):
    """A model whose std is 3x too small is corrected to the nominal coverage."""
    rng = np.random.default_rng(0)
    n_cal, n_test, reps = 400, 400, 40
    covered = []
    for _ in range(reps):
        mu = rng.normal(size=(n_cal + n_test, 1))
        true_sd = rng.uniform(0.5, 2.0, size=mu.shape)
        y = mu + true_sd * rng.normal(size=mu.shape)
        p = Predictive.regression(mu[None], (true_sd / 3.0)[None])
        cal = Predictive.regression(mu[None, :n_cal], (true_sd / 3.0)[None, :n_cal])
        test = Predictive.regression(mu[None, n_cal:], (true_sd / 3.0)[None, n_cal:])
        c = ConformalRegressor(alpha=alpha).fit(cal, y[:n_cal])
        lo, hi = c.interval(test)
        covered.append(np.mean((y[n_cal:] >= lo) & (y[n_cal:] <= hi)))
        raw_lo, raw_hi = p.interval(1 - alpha)
    assert np.mean((y >= raw_lo) & (y <= raw_hi)) < 1 - alpha - 0.2  # raw intervals undercover
    # Guarantee: E[coverage] in [1 - alpha, 1 - alpha + 1/(n_cal + 1)]; allow Monte Carlo error.
    se = np.sqrt(alpha * (1 - alpha) / (n_test * reps))
    assert 1 - alpha - 4 * se <= np.mean(covered) <= 1 - alpha + 1 / (n_cal + 1) + 4 * se


def test_errors():
    p = Predictive.regression(np.zeros((1, 3, 1)), np.ones((1, 3, 1)))
    with pytest.raises(NotFittedError):
        ConformalRegressor().interval(p)
    with pytest.raises(ValueError, match="alpha"):
        ConformalRegressor(alpha=0.0).fit(p, np.zeros((3, 1)))
