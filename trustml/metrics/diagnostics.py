"""Calibration diagnostics of a whole regression predictive: PIT values and spread-skill.

These take a regression predictive (anything with ``cdf(y)``, ``mean`` and ``std``, such as
:class:`trustml.Predictive`) rather than arrays, because they need its full distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trustml.exceptions import TrustmlInputError
from trustml.metrics._arrays import ArrayLike, as_array
from trustml.utils.validation import check_positive_int

__all__ = ["SpreadSkill", "pit", "spread_skill"]


def _regression(pred: Any, what: str) -> None:
    if getattr(pred, "task", None) != "regression" or not hasattr(pred, "cdf"):
        raise TrustmlInputError(
            f"{what}: expected a regression Predictive, got {type(pred).__name__}"
            + (f" ({pred.task})" if hasattr(pred, "task") else "")
        )


def pit(pred: Any, y: ArrayLike) -> np.ndarray:
    """Probability integral transform: the predictive CDF at each target.

    For a calibrated predictive the PIT values are uniform on [0, 1]; a U shape means
    over-confidence, a hump under-confidence. With a calibrated predictive (e.g. after
    :class:`~trustml.calibration.IsotonicRecalibration`) the calibrated CDF is used.

    Parameters
    ----------
    pred : Predictive
        Regression predictive over ``N`` samples and ``D`` targets (the mixture CDF of its
        members, or its calibrated CDF).
    y : array_like, shape (N, D), or (N,) when D == 1

    Returns
    -------
    numpy.ndarray, shape (N, D)

    Examples
    --------
    >>> from trustml import Predictive
    >>> p = Predictive.regression(np.zeros((1, 2, 1)), np.ones((1, 2, 1)))
    >>> pit(p, [0.0, 1.959964]).ravel().round(3).tolist()
    [0.5, 0.975]
    """
    _regression(pred, "pit")
    return np.asarray(pred.cdf(as_array(y, "y", min_ndim=1)), dtype=np.float64)


@dataclass(frozen=True)
class SpreadSkill:
    """Predicted spread against realised error, in bins of predicted standard deviation.

    Attributes
    ----------
    spread : numpy.ndarray, shape (n_bins,)
        Root mean predicted variance in each bin.
    skill : numpy.ndarray, shape (n_bins,)
        Root mean squared error of the predictive mean in each bin.
    counts : numpy.ndarray of int, shape (n_bins,)
        Elements per bin (equal up to one: bins hold equal numbers of elements).
    ratio : float
        Overall ``sqrt(mean(std**2)) / rmse``: 1 when the spread is right on average, < 1
        over-confident, > 1 under-confident.
    """

    spread: np.ndarray
    skill: np.ndarray
    counts: np.ndarray
    ratio: float


def spread_skill(pred: Any, y: ArrayLike, *, n_bins: int = 10) -> SpreadSkill:
    """Bin elements by predicted std into equal-count bins; compare spread with RMSE per bin.

    A well-calibrated predictive has ``spread ~= skill`` in every bin (points on the diagonal
    of a spread-skill plot), not only on average.

    Parameters
    ----------
    pred : Predictive
        Regression predictive; its ``mean`` and ``std`` (moments of the members' mixture) are
        used.
    y : array_like, shape (N, D), or (N,) when D == 1
    n_bins : int, default 10
        At most the number of elements ``N * D``.

    Returns
    -------
    SpreadSkill

    Examples
    --------
    >>> from trustml import Predictive
    >>> rng = np.random.default_rng(0)
    >>> sd = rng.uniform(0.5, 2.0, size=(1, 4000, 1))
    >>> p = Predictive.regression(np.zeros_like(sd), sd)
    >>> s = spread_skill(p, sd[0] * rng.normal(size=(4000, 1)), n_bins=4)
    >>> bool(np.all(np.abs(s.skill / s.spread - 1) < 0.1))
    True
    """
    _regression(pred, "spread_skill")
    n_bins = check_positive_int(n_bins, name="n_bins")
    mean = np.asarray(pred.mean, dtype=np.float64)
    yy = as_array(y, "y", min_ndim=1)
    if yy.shape != mean.shape and yy.shape + (1,) == mean.shape:
        yy = yy[:, None]
    if yy.shape != mean.shape:
        raise TrustmlInputError(
            f"array 'y': expected the predictive's shape {mean.shape}, got {yy.shape}"
        )
    var = (np.asarray(pred.std, dtype=np.float64) ** 2).ravel()
    sq_err = ((mean - yy) ** 2).ravel()
    if n_bins > var.size:
        raise ValueError(f"Expected n_bins <= the number of elements {var.size}, got {n_bins}")
    groups = np.array_split(np.argsort(var, kind="stable"), n_bins)
    spread = np.array([np.sqrt(var[g].mean()) for g in groups])
    skill = np.array([np.sqrt(sq_err[g].mean()) for g in groups])
    counts = np.array([g.size for g in groups])
    ratio = float(np.sqrt(var.mean() / sq_err.mean())) if sq_err.mean() > 0 else float("inf")
    return SpreadSkill(spread, skill, counts, ratio)
