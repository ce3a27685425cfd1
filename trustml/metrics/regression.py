"""Regression metrics for point, Gaussian, sample and interval forecasts.

Predictions come first and the target ``y`` last (``crps_gaussian(mean, std, y)``). Arrays are
``(N,)`` or ``(N, D)`` (any trailing shape works); scores average over every element, or with
``reduction="none"`` return the per-element scores with the shape of ``y``.
Inputs may be numpy arrays or torch tensors; they are read as float64 numpy arrays, so these
functions are for evaluation, not differentiable training losses. ``mean``, ``lower`` and
``upper`` must have exactly the shape of ``y`` (no silent ``(N,)`` vs ``(N, 1)`` broadcasting);
``std`` may be anything that broadcasts to it, e.g. a scalar.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats

from trustml.exceptions import TrustmlInputError
from trustml.metrics._arrays import ArrayLike, as_array, reduce, same_shape

__all__ = [
    "DEFAULT_LEVELS",
    "calibration_curve_regression",
    "coverage",
    "crps_ensemble",
    "crps_gaussian",
    "interval_width",
    "mae",
    "nll_gaussian",
    "rmse",
]

#: Nominal central levels 0.05, 0.10, ..., 0.95 used by :func:`calibration_curve_regression`.
DEFAULT_LEVELS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def _target_and(y: ArrayLike, **others: ArrayLike) -> list[np.ndarray]:
    """``[y, *others]`` checked, every one of the shape of ``y``."""
    yy = as_array(y, "y", min_ndim=1)
    out = [yy]
    for name, value in others.items():
        a = as_array(value, name, min_ndim=1)
        same_shape(yy, "y", a, name)
        out.append(a)
    return out


def _std(std: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    s = as_array(std, "std")
    try:
        ok = np.broadcast_shapes(s.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise TrustmlInputError(
            f"array 'std': expected a shape broadcastable to {shape}, got {s.shape}"
        )
    if np.any(s <= 0):
        raise TrustmlInputError("array 'std': expected standard deviations > 0")
    return np.broadcast_to(s, shape)


def rmse(mean: ArrayLike, y: ArrayLike, *, reduction: str = "mean") -> float | np.ndarray:
    """Root mean squared error.

    Parameters
    ----------
    mean, y : array_like, shape (N,) or (N, D)
        Point predictions and targets.
    reduction : {"mean", "none"}, default "mean"
        ``"none"`` returns the squared errors ``(mean - y) ** 2`` (shape of ``y``), whose mean
        is the square of the RMSE.

    Returns
    -------
    float
        ``sqrt(mean((mean - y) ** 2))`` over all elements.

    Examples
    --------
    >>> rmse([3.0, 4.0], [0.0, 0.0])
    3.5355339059327378
    """
    yy, m = _target_and(y, mean=mean)
    sq = (m - yy) ** 2
    return sq if reduction == "none" else float(np.sqrt(reduce(sq, reduction)))


def mae(mean: ArrayLike, y: ArrayLike, *, reduction: str = "mean") -> float | np.ndarray:
    """Mean absolute error.

    Parameters
    ----------
    mean, y : array_like, shape (N,) or (N, D)
    reduction : {"mean", "none"}, default "mean"
        ``"none"``: the absolute errors, shape of ``y``.

    Examples
    --------
    >>> mae([3.0, -4.0], [0.0, 0.0])
    3.5
    """
    yy, m = _target_and(y, mean=mean)
    return reduce(np.abs(m - yy), reduction)


def nll_gaussian(
    mean: ArrayLike, std: ArrayLike, y: ArrayLike, *, reduction: str = "mean"
) -> float | np.ndarray:
    """Negative log-likelihood of ``y`` under ``Normal(mean, std)``.

    ``0.5 * log(2 pi) + log(std) + 0.5 * ((y - mean) / std) ** 2``, the constant included.

    Parameters
    ----------
    mean : array_like, shape (N,) or (N, D)
    std : array_like, broadcastable to the shape of ``y``, > 0
    y : array_like, shape (N,) or (N, D)
    reduction : {"mean", "none"}, default "mean"

    Examples
    --------
    >>> round(nll_gaussian([0.0], [1.0], [0.0]), 6)  # 0.5 * log(2 pi)
    0.918939
    """
    yy, m = _target_and(y, mean=mean)
    s = _std(std, yy.shape)
    z = (yy - m) / s
    return reduce(_HALF_LOG_2PI + np.log(s) + 0.5 * z**2, reduction)


def crps_gaussian(
    mean: ArrayLike, std: ArrayLike, y: ArrayLike, *, reduction: str = "mean"
) -> float | np.ndarray:
    """Continuous ranked probability score of a Gaussian forecast (closed form).

    ``std * (z * (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi))`` with ``z = (y - mean) / std``
    (Gneiting & Raftery 2007, eq. 21). Lower is better; same units as ``y``.

    Parameters
    ----------
    mean : array_like, shape (N,) or (N, D)
    std : array_like, broadcastable to the shape of ``y``, > 0
    y : array_like, shape (N,) or (N, D)
    reduction : {"mean", "none"}, default "mean"

    Examples
    --------
    >>> round(crps_gaussian([0.0], [1.0], [0.0]), 6)  # (sqrt(2) - 1) / sqrt(pi)
    0.233695
    """
    yy, m = _target_and(y, mean=mean)
    s = _std(std, yy.shape)
    z = (yy - m) / s
    cdf = special.ndtr(z)
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
    return reduce(s * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi)), reduction)


def crps_ensemble(
    samples: ArrayLike, y: ArrayLike, *, fair: bool = False, reduction: str = "mean"
) -> float | np.ndarray:
    """CRPS of an ensemble or sample forecast, ``E|X - y| - 0.5 E|X - X'|``.

    ``E|X - X'|`` runs over all ``S**2`` ordered pairs, computed exactly from the sorted samples
    in ``O(S log S)`` per element: ``sum_ij |x_i - x_j| = 2 sum_k (2k - S - 1) x_(k)``.

    Parameters
    ----------
    samples : array_like, shape (S, N) or (S, N, D)
        ``S`` draws (or ensemble members) per element of ``y``.
    y : array_like, shape (N,) or (N, D)
    fair : bool, default False
        ``False`` divides ``sum_ij |x_i - x_j|`` by ``S**2``: the CRPS of the empirical
        distribution of the samples (properscoring's ``crps_ensemble``). ``True`` divides by
        ``S (S - 1)``: the unbiased ("fair") estimate of the CRPS of the distribution they are
        drawn from, better for small ``S``.
    reduction : {"mean", "none"}, default "mean"

    Examples
    --------
    >>> crps_ensemble([[1.0]], [0.0])  # one member: the absolute error
    1.0
    """
    yy = as_array(y, "y", min_ndim=1)
    x = as_array(samples, "samples", min_ndim=2)
    if x.shape[1:] != yy.shape:
        raise TrustmlInputError(
            f"array 'samples': expected shape (S, {', '.join(map(str, yy.shape))}) to match 'y', "
            f"got {x.shape}"
        )
    n_samples = x.shape[0]
    if fair and n_samples < 2:
        raise TrustmlInputError("crps_ensemble(fair=True): expected at least 2 samples, got 1")
    spread_weights = 2.0 * np.arange(1, n_samples + 1) - n_samples - 1.0
    sorted_x = np.sort(x, axis=0)
    pair_sum = 2.0 * np.tensordot(spread_weights, sorted_x, axes=(0, 0))  # sum_ij |x_i - x_j|
    denom = n_samples * (n_samples - 1) if fair else n_samples**2
    return reduce(np.mean(np.abs(x - yy), axis=0) - 0.5 * pair_sum / denom, reduction)


def _intervals(
    y: ArrayLike | None, lower: ArrayLike, upper: ArrayLike
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    lo = as_array(lower, "lower", min_ndim=1, allow_inf=True)
    hi = as_array(upper, "upper", min_ndim=1, allow_inf=True)
    same_shape(lo, "lower", hi, "upper")
    yy = None
    if y is not None:
        yy = as_array(y, "y", min_ndim=1)
        same_shape(yy, "y", lo, "lower")
    crossed = int(np.sum(lo > hi))
    if crossed:
        raise TrustmlInputError(
            f"arrays 'lower', 'upper': expected lower <= upper, got lower > upper at "
            f"{crossed} of {lo.size} elements"
        )
    return yy, lo, hi


def coverage(
    lower: ArrayLike, upper: ArrayLike, y: ArrayLike, *, reduction: str = "mean"
) -> float | np.ndarray:
    """Fraction of elements with ``lower <= y <= upper`` (bounds inclusive).

    Parameters
    ----------
    lower, upper, y : array_like, shape (N,) or (N, D)
        Crossed intervals (``lower > upper``) are an error, not a miss. Infinite bounds (a
        conformal interval with too few calibration points) are allowed.
    reduction : {"mean", "none"}, default "mean"
        ``"none"``: 1.0 where covered, 0.0 where not, shape of ``y``.

    Examples
    --------
    >>> coverage([-1.0, 1.0, 0.0], [1.0, 2.0, 4.0], [0.0, 1.0, 5.0])
    0.6666666666666666
    """
    yy, lo, hi = _intervals(y, lower, upper)
    return reduce(((lo <= yy) & (yy <= hi)).astype(np.float64), reduction)


def interval_width(
    lower: ArrayLike, upper: ArrayLike, *, reduction: str = "mean"
) -> float | np.ndarray:
    """Width ``upper - lower`` of prediction intervals (sharpness; lower is better).

    Parameters
    ----------
    lower, upper : array_like, shape (N,) or (N, D)
    reduction : {"mean", "none"}, default "mean"

    Examples
    --------
    >>> interval_width([0.0, -1.0], [1.0, 2.0])
    2.0
    """
    _, lo, hi = _intervals(None, lower, upper)
    return reduce(hi - lo, reduction)


def calibration_curve_regression(
    mean: ArrayLike,
    std: ArrayLike,
    y: ArrayLike,
    *,
    levels: Sequence[float] | np.ndarray = DEFAULT_LEVELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical coverage of Gaussian central intervals against their nominal level.

    For each level ``p`` the central interval is ``mean +- Phi^-1((1 + p) / 2) * std``; a
    calibrated forecast gives ``empirical ~= nominal`` (the diagonal of a reliability plot).

    Parameters
    ----------
    mean : array_like, shape (N,) or (N, D)
    std : array_like, broadcastable to the shape of ``y``, > 0
    y : array_like, shape (N,) or (N, D)
    levels : sequence of float in (0, 1), default 0.05, 0.10, ..., 0.95

    Returns
    -------
    nominal : numpy.ndarray, shape (L,)
        The levels, as given.
    empirical : numpy.ndarray, shape (L,)
        Fraction of elements inside each interval (bounds inclusive, as :func:`coverage`).

    Examples
    --------
    >>> nominal, empirical = calibration_curve_regression([0.0, 0.0], 1.0, [0.0, 3.0],
    ...                                                   levels=[0.5, 0.999])
    >>> empirical.tolist()
    [0.5, 1.0]
    """
    yy, m = _target_and(y, mean=mean)
    s = _std(std, yy.shape)
    nominal = np.asarray(levels, dtype=np.float64)
    if nominal.ndim != 1 or nominal.size == 0 or np.any(~((nominal > 0) & (nominal < 1))):
        raise TrustmlInputError(
            f"'levels': expected a non-empty list of floats in (0, 1), got {levels!r}"
        )
    half_widths = stats.norm.ppf(0.5 + nominal / 2.0)
    r = np.sort((np.abs(yy - m) / s).ravel())
    empirical = np.searchsorted(r, half_widths, side="right") / r.size
    return nominal, empirical
