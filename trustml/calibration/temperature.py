"""Temperature scaling (Guo et al. 2017): one temperature divides every member's logits."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize, special

from trustml.calibration._base import Calibrator
from trustml.uq.predictive import CalibrationMap, Predictive

__all__ = ["TemperatureScaling"]


class _TemperatureMap(CalibrationMap):
    # The scaled logits replace the members, so nothing else changes and calibrators stack.
    in_members = True


def _member_logits(pred: Predictive) -> np.ndarray:
    """The member logits; ``log(probs)`` when only probabilities are known.

    ``log(softmax(z))`` differs from ``z`` by a constant per row, which softmax ignores, so
    scaling it is exact (up to probabilities that underflowed to 0).
    """
    if pred.member_logits is not None:
        return np.asarray(pred.member_logits)
    return np.log(np.maximum(pred.members, np.finfo(np.float64).tiny))


def _nll(log_t: float, logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean NLL of the member-averaged predictive at temperature ``exp(log_t)``."""
    logp = special.log_softmax(logits * np.exp(-log_t), axis=-1)  # (K, N, C)
    logp_y = logp[:, np.arange(labels.size), labels]  # (K, N)
    return float(-np.mean(special.logsumexp(logp_y, axis=0) - np.log(logits.shape[0])))


class TemperatureScaling(Calibrator):
    """One temperature ``T`` for all member logits, fitted by held-out NLL.

    Member k's probabilities become ``softmax(logits_k / T)`` and the predictive is their
    average, so accuracy is unchanged (per member) and only confidence moves: ``T > 1``
    softens an over-confident model. ``T`` minimises the NLL of the averaged predictive on the
    calibration split: a log-spaced grid over ``bounds``, then a bounded scalar minimisation
    around the best grid point. ``T = 1`` is kept when nothing beats it, so calibration never
    raises the calibration-split NLL.

    Parameters
    ----------
    bounds : (float, float), default (0.01, 100.0)
        Search range of ``T``.

    Attributes
    ----------
    temperature_ : float
        The fitted temperature.
    nll_before_, nll_after_ : float
        Calibration-split NLL at ``T = 1`` and at ``temperature_``.
    n_calibration_ : int
    n_outputs_ : int
        Number of classes.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(1, 2000, 3)) * 3
    >>> labels = np.array([rng.choice(3, p=p) for p in special.softmax(logits[0], -1)])
    >>> hot = Predictive.classification(member_logits=logits * 4)  # 4x over-confident
    >>> ts = TemperatureScaling().fit(hot, labels)
    >>> 3.5 < ts.temperature_ < 4.5
    True
    >>> ts.transform(hot).calibration.method
    'temperature'
    """

    tasks = ("classification",)

    def __init__(self, *, bounds: tuple[float, float] = (0.01, 100.0)) -> None:
        self.bounds = bounds

    def fit(self, predictive: Predictive, labels: Any) -> TemperatureScaling:
        """Fit ``T`` on a calibration-split classification predictive and its labels ``(N,)``."""
        pred = self._check_predictive(predictive)
        lo, hi = (float(b) for b in self.bounds)
        if not 0.0 < lo < 1.0 < hi:
            raise ValueError(f"Expected bounds (lo, hi) with 0 < lo < 1 < hi, got {self.bounds}")
        y = self._labels(pred, labels)
        logits = _member_logits(pred)
        grid = np.linspace(np.log(lo), np.log(hi), 81)
        values = [_nll(g, logits, y) for g in grid]
        i = int(np.argmin(values))
        res = optimize.minimize_scalar(
            _nll,
            bounds=(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]),
            args=(logits, y),
            method="bounded",
            options={"xatol": 1e-7},
        )
        candidates = [(values[i], grid[i]), (float(res.fun), float(res.x))]
        nll_before = _nll(0.0, logits, y)
        best_nll, best_log_t = min(candidates)
        if nll_before <= best_nll:
            best_nll, best_log_t = nll_before, 0.0
        self.temperature_ = float(np.exp(best_log_t))
        self.nll_before_ = nll_before
        self.nll_after_ = best_nll
        self.n_outputs_ = int(logits.shape[2])
        self.n_calibration_ = int(y.size)
        return self

    def _fitted_params(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature_,
            "nll_calibration_before": self.nll_before_,
            "nll_calibration_after": self.nll_after_,
        }

    def transform(self, predictive: Predictive) -> Predictive:
        """``predictive`` with every member's logits divided by ``temperature_``."""
        self._check_is_fitted()
        pred = self._check_predictive(predictive)
        self._check_same_shape(pred)
        scaled = _member_logits(pred) / self.temperature_
        return pred.with_calibration(
            _TemperatureMap("temperature", {"temperature": self.temperature_}),
            member_probs=special.softmax(scaled, axis=-1),
            member_logits=scaled,
        )
