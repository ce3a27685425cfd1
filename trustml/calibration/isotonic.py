"""Isotonic quantile recalibration of regression predictives (Kuleshov et al. 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trustml.calibration._base import Calibrator
from trustml.uq.predictive import CalibrationMap, Predictive

__all__ = ["IsotonicRecalibration"]


def _inverse(q: np.ndarray, x: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Generalised inverse ``inf{p : R(p) >= q}`` of the piecewise-linear non-decreasing map
    ``R`` through knots ``(x, level)`` with ``R(0) = 0`` and ``R(1) = 1``; ``q`` in (0, 1)."""
    i = np.clip(np.searchsorted(level, q, side="left"), 1, x.size - 1)
    l0, l1, x0, x1 = level[i - 1], level[i], x[i - 1], x[i]
    # level[i - 1] < q <= level[i], so the denominator is > 0.
    return x0 + (q - l0) / (l1 - l0) * (x1 - x0)


class _IsotonicMap(CalibrationMap):
    """Calibrated CDF ``R_d(F(y))`` and quantile ``F^-1(R_d^-1(q))``, one map per target."""

    def __init__(self, knots: list[tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__("isotonic", {"n_knots": [int(x.size) for x, _ in knots]})
        self.knots = knots

    def cdf(self, pred: Predictive, y: np.ndarray) -> np.ndarray:
        base = pred.mixture_cdf(y)
        return np.stack(
            [np.interp(base[:, d], x, lv) for d, (x, lv) in enumerate(self.knots)], axis=-1
        )

    def quantile(self, pred: Predictive, q: Any) -> np.ndarray:
        base = pred.members.shape[1:]
        q = np.asarray(q, dtype=np.float64)
        qb = np.broadcast_to(q, np.broadcast_shapes(q.shape, base))
        p = np.empty(qb.shape)
        for d, (x, lv) in enumerate(self.knots):
            p[..., d] = _inverse(qb[..., d], x, lv)
        # A PIT map that reaches 0 or 1 inside (0, 1) would ask for an infinite quantile.
        return pred.mixture_quantile(np.clip(p, 1e-12, 1.0 - 1e-12))


class IsotonicRecalibration(Calibrator):
    """Recalibrate predictive quantiles with an isotonic map of the PIT (Kuleshov et al. 2018).

    On the calibration split, each target's PIT values ``p_i = F_i(y_i)`` are paired with their
    empirical CDF ``P(p <= p_i)``, and scikit-learn's ``IsotonicRegression`` fits a
    non-decreasing map ``R`` from one to the other (with ``R(0) = 0``, ``R(1) = 1``, linear
    between knots). The calibrated predictive has CDF ``R(F(y))`` and quantiles
    ``F^-1(R^-1(q))``, so its ``interval``, ``quantile``, ``cdf`` and ``sample`` are calibrated
    and its PIT is close to uniform. Its moments (``mean``, ``std``) remain the model's.

    Attributes
    ----------
    knots_ : list of (ndarray, ndarray)
        Per target, the map's knots: PIT values and calibrated levels, both increasing.
    n_calibration_ : int
    n_outputs_ : int
        Number of targets D.
    params : dict
        ``n_calibration`` and ``n_knots`` (per target, the number of knots of its map).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(2000, 1))
    >>> narrow = Predictive.regression(np.zeros((1, 2000, 1)), np.full((1, 2000, 1), 0.5))
    >>> cal = IsotonicRecalibration().fit(narrow, y).transform(narrow)
    >>> lo, hi = cal.interval(0.9)
    >>> round(float(hi[0, 0]), 1)  # the N(0, 1) 95 % quantile, not 0.5 * 1.64
    1.6
    """

    tasks = ("regression",)

    def __init__(self) -> None:
        pass

    def fit(self, predictive: Predictive, y: Any) -> IsotonicRecalibration:
        """Fit the PIT map on a calibration-split predictive and its targets ``(N, D)``."""
        pred = self._check_predictive(predictive)
        y = self._regression_targets(pred, y)
        pit = pred.mixture_cdf(y)
        n = pit.shape[0]
        knots = []
        for d in range(pit.shape[1]):
            p = pit[:, d]
            ecdf = np.searchsorted(np.sort(p), p, side="right") / n
            from sklearn.isotonic import IsotonicRegression  # ~1 s to import: only here

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            iso.fit(p, ecdf)
            xs, ls = iso.X_thresholds_, iso.y_thresholds_
            inside = (xs > 0.0) & (xs < 1.0)
            knots.append(
                (
                    np.concatenate([[0.0], xs[inside], [1.0]]),
                    np.concatenate([[0.0], ls[inside], [1.0]]),
                )
            )
        self.knots_ = knots
        self.n_outputs_ = int(pit.shape[1])
        self.n_calibration_ = int(n)
        return self

    def _fitted_params(self) -> dict[str, Any]:
        return {"n_knots": [int(x.size) for x, _ in self.knots_]}

    def transform(self, predictive: Predictive) -> Predictive:
        """``predictive`` carrying the fitted PIT map."""
        self._check_is_fitted()
        pred = self._check_predictive(predictive)
        self._check_same_shape(pred)
        return pred.with_calibration(_IsotonicMap(self.knots_))
