"""Split conformal prediction for regression (Vovk et al. 2005; Lei et al. 2018).

Scores are studentised residuals ``|y - mean| / std``, so the calibrated interval keeps the
model's heteroscedastic shape and only its width is corrected. With exchangeable calibration and
test data, the interval covers a new target with probability at least ``1 - alpha``.
"""

from __future__ import annotations

import math

import numpy as np

from trustml.exceptions import NotFittedError
from trustml.uq.predictive import Predictive
from trustml.utils.validation import check_probability

__all__ = ["ConformalRegressor", "conformal_quantile"]


def conformal_quantile(scores: np.ndarray, alpha: float) -> np.ndarray:
    """The finite-sample-corrected ``(1 - alpha)`` quantile of ``scores`` along axis 0.

    Parameters
    ----------
    scores : ndarray of shape (n, ...)
    alpha : float in (0, 1)

    Returns
    -------
    ndarray of shape ``scores.shape[1:]``; ``inf`` when ``n`` is too small for the level.
    """
    n = scores.shape[0]
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank > n:
        return np.full(scores.shape[1:], np.inf)
    return np.sort(scores, axis=0)[rank - 1]


class ConformalRegressor:
    """Split-conformal intervals around a Gaussian-summarised :class:`Predictive`.

    Parameters
    ----------
    alpha : float, default 0.1
        Miscoverage: the intervals target ``1 - alpha`` coverage, per output dimension.

    Attributes
    ----------
    q_ : ndarray of shape (D,)
        The calibrated multiplier of the predictive std.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(500, 1))
    >>> p = Predictive.regression(np.zeros((2, 500, 1)), np.full((2, 500, 1), 2.0))
    >>> cal = ConformalRegressor(alpha=0.1).fit(p, y)
    >>> 1.4 < float(cal.q_[0]) * 2.0 < 1.9   # ~ the 90 % quantile of |N(0, 1)|
    True
    """

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha

    def fit(self, predictive: Predictive, y: np.ndarray) -> ConformalRegressor:
        """Fit on calibration-split predictions ``(N, D)`` and targets ``(N, D)``."""
        check_probability(self.alpha, name="alpha")
        y = np.asarray(y, dtype=np.float64).reshape(predictive.mean.shape)
        scores = np.abs(y - predictive.mean) / predictive.std
        self.n_calibration_ = len(y)
        self.q_ = conformal_quantile(scores, self.alpha)
        return self

    def interval(self, predictive: Predictive) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated ``(lower, upper)``, each of shape ``(N, D)``."""
        if not hasattr(self, "q_"):
            raise NotFittedError("This ConformalRegressor is not fitted yet. Call 'fit' first.")
        half = self.q_ * predictive.std
        return predictive.mean - half, predictive.mean + half
