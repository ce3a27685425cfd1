"""Classification metrics on predicted class probabilities.

Predictions first, target last: ``probs`` are probabilities ``(N, C)`` with rows summing to 1
(e.g. a softmax output) and ``labels`` integer classes ``(N,)`` (integral floats accepted).
Inputs may be numpy arrays or torch tensors. Per-sample scores average over samples, or with
``reduction="none"`` return one value per sample ``(N,)``; binned calibration errors have no
per-sample form.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from trustml.metrics._arrays import ArrayLike, as_labels, as_probs, reduce
from trustml.utils.validation import check_positive_int

__all__ = [
    "ReliabilityCurve",
    "accuracy",
    "adaptive_ece",
    "brier",
    "ece",
    "mce",
    "nll_categorical",
    "reliability_curve",
]

_PROB_FLOOR = 1e-12


def _checked(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = as_probs(probs)
    return p, as_labels(labels, p.shape[1], p.shape[0])


def accuracy(probs: ArrayLike, labels: ArrayLike, *, reduction: str = "mean") -> float | np.ndarray:
    """Fraction of samples whose most probable class (first on ties) is the label.

    Parameters
    ----------
    probs : array_like, shape (N, C)
    labels : array_like of int, shape (N,)
    reduction : {"mean", "none"}, default "mean"
        ``"none"``: 1.0 where right, 0.0 where wrong, shape ``(N,)``.

    Examples
    --------
    >>> accuracy([[0.9, 0.1], [0.8, 0.2]], [0, 1])
    0.5
    """
    p, y = _checked(probs, labels)
    return reduce((np.argmax(p, axis=1) == y).astype(np.float64), reduction)


def nll_categorical(
    probs: ArrayLike, labels: ArrayLike, *, reduction: str = "mean"
) -> float | np.ndarray:
    """Negative log-likelihood ``-log p[label]``, probabilities clipped below at 1e-12.

    Parameters
    ----------
    probs : array_like, shape (N, C)
    labels : array_like of int, shape (N,)
    reduction : {"mean", "none"}, default "mean"

    Examples
    --------
    >>> round(nll_categorical([[0.5, 0.5]], [0]), 6)  # log 2
    0.693147
    """
    p, y = _checked(probs, labels)
    return reduce(-np.log(np.maximum(p[np.arange(y.size), y], _PROB_FLOOR)), reduction)


def brier(probs: ArrayLike, labels: ArrayLike, *, reduction: str = "mean") -> float | np.ndarray:
    """Multi-class Brier score: ``sum_c (p_c - onehot_c) ** 2``, averaged over samples.

    In ``[0, 2]``; lower is better. For two classes this is twice
    ``sklearn.metrics.brier_score_loss`` (which scores only the positive class,
    ``mean((p_1 - y) ** 2)``), since both classes contribute the same squared error.

    Parameters
    ----------
    probs : array_like, shape (N, C)
    labels : array_like of int, shape (N,)
    reduction : {"mean", "none"}, default "mean"

    Examples
    --------
    >>> brier([[0.5, 0.5]], [0])
    0.5
    """
    p, y = _checked(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return reduce(np.sum((p - onehot) ** 2, axis=1), reduction)


class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of top-label confidence, for reliability diagrams.

    Attributes
    ----------
    confidence : numpy.ndarray, shape (n_bins,)
        Mean top-label probability in each bin (NaN for an empty bin).
    accuracy : numpy.ndarray, shape (n_bins,)
        Fraction of correct top-label predictions in each bin (NaN for an empty bin).
    counts : numpy.ndarray of int, shape (n_bins,)
        Samples in each bin.
    edges : numpy.ndarray, shape (n_bins + 1,)
        Bin edges ``0, 1/n_bins, ..., 1``; bin ``b`` holds ``edges[b] < conf <= edges[b+1]``
        (the first bin also holds 0).
    """

    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    edges: np.ndarray


def reliability_curve(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> ReliabilityCurve:
    """Bin samples by top-label confidence into ``n_bins`` equal-width bins over [0, 1].

    Parameters
    ----------
    probs : array_like, shape (N, C)
    labels : array_like of int, shape (N,)
    n_bins : int, default 15

    Returns
    -------
    ReliabilityCurve
        ``(confidence, accuracy, counts, edges)``; see :class:`ReliabilityCurve`.

    Examples
    --------
    >>> curve = reliability_curve([[0.9, 0.1], [0.9, 0.1]], [0, 1], n_bins=10)
    >>> curve.counts[8], curve.accuracy[8]
    (np.int64(2), np.float64(0.5))
    """
    n_bins = check_positive_int(n_bins, name="n_bins")
    bins, conf, correct = binned_confidence(probs, labels, n_bins)
    return binned_curve(bins, conf, correct, n_bins)


def binned_confidence(
    probs: ArrayLike, labels: ArrayLike, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: its equal-width confidence bin ``(N,)`` (int), top-label confidence and
    whether the top label is right (float64 0/1). A reliability curve is a function of
    these three alone (:func:`binned_curve`), so they can be computed chunk by chunk."""
    p, y = _checked(probs, labels)
    conf = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted on the edges themselves avoids conf * n_bins rounding across a boundary.
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    return bins, conf, correct


def binned_curve(
    bins: np.ndarray, conf: np.ndarray, correct: np.ndarray, n_bins: int
) -> ReliabilityCurve:
    """The :class:`ReliabilityCurve` of samples given by :func:`binned_confidence`."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(bins, weights=conf, minlength=n_bins) / count
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return ReliabilityCurve(confidence, acc, count, edges)


def ece_of_curve(curve: ReliabilityCurve) -> float:
    """``sum_b (n_b / N) |accuracy_b - confidence_b|`` over the non-empty bins of ``curve``."""
    full = curve.counts > 0
    gaps, counts = np.abs(curve.accuracy[full] - curve.confidence[full]), curve.counts[full]
    return float(np.sum(counts * gaps) / np.sum(counts))


def _gaps(probs: ArrayLike, labels: ArrayLike, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: ``|accuracy - confidence|`` and the sample count."""
    curve = reliability_curve(probs, labels, n_bins)
    full = curve.counts > 0
    return np.abs(curve.accuracy[full] - curve.confidence[full]), curve.counts[full]


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Top-label expected calibration error, equal-width bins, L1 (Guo et al. 2017).

    ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over the bins of :func:`reliability_curve`.
    In ``[0, 1]``; lower is better. With few samples per bin it is biased upwards.

    Parameters
    ----------
    probs : array_like, shape (N, C)
    labels : array_like of int, shape (N,)
    n_bins : int, default 15

    Examples
    --------
    >>> round(ece([[0.9, 0.1], [0.9, 0.1]], [0, 1]), 6)
    0.4
    """
    return ece_of_curve(reliability_curve(probs, labels, n_bins))


def mce(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest ``|accuracy_b - confidence_b|`` over non-empty
    equal-width bins (Naeini et al. 2015).

    Parameters
    ----------
    probs : array_like, shape (N, C)
    labels : array_like of int, shape (N,)
    n_bins : int, default 15

    Examples
    --------
    >>> round(mce([[0.95, 0.05], [0.6, 0.4]], [0, 1]), 6)
    0.6
    """
    gaps, _ = _gaps(probs, labels, n_bins)
    return float(np.max(gaps))


def adaptive_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Top-label ECE with equal-mass bins (Nixon et al. 2019).

    Samples sorted by top-label confidence are split into ``n_bins`` groups of equal size (up
    to one sample), so every bin has the same statistical weight; then
    ``sum_b (n_b / N) |accuracy_b - confidence_b|``.

    Parameters
    ----------
    probs : array_like, shape (N, C)
    labels : array_like of int, shape (N,)
    n_bins : int, default 15
        Fewer bins are used when there are fewer samples.

    Examples
    --------
    >>> round(adaptive_ece([[0.9, 0.1], [0.7, 0.3]], [0, 0], n_bins=2), 6)
    0.2
    """
    n_bins = check_positive_int(n_bins, name="n_bins")
    p, y = _checked(probs, labels)
    conf = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    groups = np.array_split(np.argsort(conf, kind="stable"), min(n_bins, y.size))
    return float(sum(g.size * abs(correct[g].mean() - conf[g].mean()) for g in groups) / y.size)
