"""Split conformal prediction (Vovk et al. 2005; Lei et al. 2018; Romano et al. 2020).

Regression scores are studentised residuals ``|y - mean| / std``, so calibrated intervals keep
the model's heteroscedastic shape and only their width is corrected. Classification scores give
prediction sets. With exchangeable calibration and test data, an interval or set at level
``1 - alpha`` holds a new target with probability at least ``1 - alpha`` (and, for continuous
scores, at most ``1 - alpha + 1 / (n + 1)``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trustml.calibration._base import Calibrator
from trustml.uq.predictive import CalibrationMap, Predictive
from trustml.utils.validation import check_in, check_probability

__all__ = ["SCORES", "SplitConformal", "conformal_quantile"]

#: Classification nonconformity scores of :class:`SplitConformal`.
SCORES = ("aps", "lac")


def conformal_quantile(scores: np.ndarray, alpha: float) -> np.ndarray:
    """The finite-sample-corrected ``(1 - alpha)`` quantile of ``scores`` along axis 0.

    The ``ceil((n + 1)(1 - alpha))``-th smallest score.

    Parameters
    ----------
    scores : ndarray of shape (n, ...)
    alpha : float in (0, 1)

    Returns
    -------
    ndarray of shape ``scores.shape[1:]``; ``inf`` when ``n`` is too small for the level.

    Examples
    --------
    >>> float(conformal_quantile(np.arange(1.0, 20.0), 0.1))  # ceil(20 * 0.9) = 18th
    18.0
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    # The tolerance keeps (n + 1) * (1 - alpha) from rounding up past an integer.
    rank = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)
    if rank > n:
        return np.full(scores.shape[1:], np.inf)
    return np.sort(scores, axis=0)[max(rank, 1) - 1]


def _class_scores(probs: np.ndarray, score: str) -> np.ndarray:
    """Score of every class ``(N, C)``; a class is in the set when its score is <= the
    threshold. ``lac``: ``1 - p_c``. ``aps``: probability mass of the classes ranked above
    ``c`` (so the class that crosses the threshold is included, and sets are never empty)."""
    if score == "lac":
        return 1.0 - probs
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=1)
    before = np.cumsum(sorted_p, axis=1) - sorted_p
    out = np.empty_like(probs)
    np.put_along_axis(out, order, before, axis=1)
    return out


def _label_scores(probs: np.ndarray, labels: np.ndarray, score: str) -> np.ndarray:
    """Calibration score of the true label ``(N,)``: ``aps`` counts the label's own mass."""
    rows = np.arange(labels.size)
    s = _class_scores(probs, score)[rows, labels]
    return s + probs[rows, labels] if score == "aps" else s


class _IntervalMap(CalibrationMap):
    """Conformal intervals ``mean +- q * std`` at every level, from the sorted scores."""

    def __init__(self, scores: np.ndarray, alpha: float) -> None:
        q = conformal_quantile(scores, alpha)
        super().__init__("conformal", {"alpha": alpha, "std_multiplier": q.tolist()})
        self.scores = scores
        # Sorted once, per target column: the PIT ranks every test score against them.
        self._ranked = np.sort(
            np.asarray(scores, dtype=np.float64).reshape(len(scores), -1), axis=0
        )

    def interval(self, pred: Predictive, level: float) -> tuple[np.ndarray, np.ndarray]:
        half = conformal_quantile(self.scores, 1.0 - level) * pred.std
        return pred.mean - half, pred.mean + half

    def cdf(self, pred: Predictive, y: np.ndarray) -> np.ndarray:
        """The conformal PIT: ``0.5 + 0.5 * sign(y - mean) * c / (n + 1)``, with ``c`` the
        number of calibration scores below ``|y - mean| / std``.

        It matches the intervals exactly: ``y`` lies in ``interval(level)`` if and only if
        ``|2 * cdf - 1| < level``, so PIT histograms and coverage curves tell one story.
        """
        y = np.asarray(y, dtype=np.float64).reshape(pred.mean.shape)
        s = np.abs(y - pred.mean) / pred.std
        ranked = self._ranked
        flat = s.reshape(len(s), -1)
        below = np.stack(
            [np.searchsorted(ranked[:, j], flat[:, j], side="left") for j in range(flat.shape[1])],
            axis=1,
        ).reshape(s.shape)
        return 0.5 + 0.5 * np.sign(y - pred.mean) * below / (len(self.scores) + 1)


class _SetMap(CalibrationMap):
    """Conformal prediction sets at every level, from the sorted label scores."""

    def __init__(self, scores: np.ndarray, alpha: float, score: str) -> None:
        super().__init__("conformal", {"alpha": alpha, "score": score})
        self.scores, self.alpha, self.score = scores, alpha, score

    def predict_set(self, pred: Predictive, level: float | None) -> np.ndarray:
        alpha = self.alpha if level is None else 1.0 - level
        threshold = conformal_quantile(self.scores, alpha)
        # aps compares the mass *before* a class with a threshold on the mass *through* the
        # label, so the strict inequality keeps the guarantee and the top class always in.
        if self.score == "aps":
            return _class_scores(pred.probs, "aps") < threshold
        return _class_scores(pred.probs, "lac") <= threshold


class SplitConformal(Calibrator):
    """Split conformal calibration of intervals (regression) or prediction sets (classification).

    Regression: scores ``|y - mean| / std`` on the calibration split; after ``transform``,
    ``interval(level)`` is ``mean +- q(level) * std`` with ``q`` the
    ``ceil((n + 1) level)``-th smallest score (infinite when ``n`` is too small), at any level,
    and ``interval(1 - alpha)`` is the conformal interval. Classification: after ``transform``,
    ``predict_set()`` gives boolean sets ``(N, C)`` at ``1 - alpha`` (or ``predict_set(level)``).
    Probabilities, means and stds are not changed.

    Parameters
    ----------
    alpha : float in (0, 1), default 0.1
        Miscoverage: the default level is ``1 - alpha``.
    score : {"aps", "lac"}, default "aps"
        Classification score. ``"aps"`` (adaptive prediction sets, non-randomised): classes
        enter in order of decreasing probability until their mass reaches the threshold; sets
        are never empty and grow with the model's uncertainty. ``"lac"`` (least ambiguous
        classifier, Sadinle et al. 2019): classes with ``p >= 1 - threshold``; the smallest
        sets on average, possibly empty.

    Attributes
    ----------
    q_ : ndarray of shape (D,) or float
        Regression: the calibrated multiplier of the predictive std at ``1 - alpha``.
        Classification: the score threshold at ``1 - alpha``.
    scores_ : ndarray of shape (n, D) or (n,)
        Sorted calibration scores.
    n_calibration_ : int
    n_outputs_ : int
    params : dict
        ``n_calibration``, and ``std_multiplier`` (regression: ``q_`` as a list) or ``score``
        and ``threshold`` (classification: ``q_``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(500, 1))
    >>> p = Predictive.regression(np.zeros((2, 500, 1)), np.full((2, 500, 1), 2.0))
    >>> conf = SplitConformal(alpha=0.1).fit(p, y)
    >>> 1.4 < float(conf.q_[0]) * 2.0 < 1.9   # ~ the 90 % quantile of |N(0, 1)|
    True
    >>> lo, hi = conf.transform(p).interval(0.9)
    >>> bool(np.allclose(hi, conf.q_ * 2.0))
    True
    """

    q_: np.ndarray | float

    def __init__(self, alpha: float = 0.1, *, score: str = "aps") -> None:
        self.alpha = alpha
        self.score = score

    def fit(self, predictive: Predictive, y: Any) -> SplitConformal:
        """Fit on a calibration-split predictive and its targets ``(N, D)`` or labels ``(N,)``."""
        pred = self._check_predictive(predictive)
        alpha = check_probability(self.alpha, name="alpha")
        check_in(self.score, SCORES, name="score", owner="SplitConformal")
        if pred.task == "regression":
            target = self._regression_targets(pred, y)
            scores = np.sort(np.abs(target - pred.mean) / pred.std, axis=0)
            self.q_ = conformal_quantile(scores, alpha)
        else:
            labels = self._labels(pred, y)
            scores = np.sort(_label_scores(pred.probs, labels, self.score))
            self.q_ = float(conformal_quantile(scores, alpha))
        self.scores_ = scores
        self.n_outputs_ = int(pred.members.shape[2])
        self.n_calibration_ = int(scores.shape[0])
        return self

    def _fitted_params(self) -> dict[str, Any]:
        if isinstance(self.q_, np.ndarray):  # regression: one multiplier per target
            return {"std_multiplier": self.q_.tolist()}
        return {"score": self.score, "threshold": self.q_}

    def transform(self, predictive: Predictive) -> Predictive:
        """``predictive`` carrying the conformal intervals or prediction sets."""
        self._check_is_fitted()
        pred = self._check_predictive(predictive)
        self._check_same_shape(pred)
        if pred.task == "regression":
            return pred.with_calibration(_IntervalMap(self.scores_, float(self.alpha)))
        return pred.with_calibration(_SetMap(self.scores_, float(self.alpha), self.score))
