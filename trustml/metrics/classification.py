"""Classification metrics on predicted class probabilities.

``labels`` are integer classes ``(N,)`` (integral floats accepted) and ``probs`` are
probabilities ``(N, C)`` with rows summing to 1, e.g. a softmax output. Inputs may be numpy
arrays or torch tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from trustml.metrics._arrays import ArrayLike, as_labels, as_probs
from trustml.utils.validation import check_positive_int

__all__ = [
    "ReliabilityCurve",
    "accuracy",
    "brier_score",
    "expected_calibration_error",
    "nll_categorical",
    "reliability_curve",
]

_PROB_FLOOR = 1e-12


def _checked(labels: ArrayLike, probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = as_probs(probs)
    return as_labels(labels, p.shape[1], p.shape[0]), p


def accuracy(labels: ArrayLike, probs: ArrayLike) -> float:
    """Fraction of samples whose most probable class (first on ties) is the label.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
    probs : array_like, shape (N, C)

    Examples
    --------
    >>> accuracy([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    0.5
    """
    y, p = _checked(labels, probs)
    return float(np.mean(np.argmax(p, axis=1) == y))


def nll_categorical(labels: ArrayLike, probs: ArrayLike) -> float:
    """Mean negative log-likelihood ``-log p[label]``, probabilities clipped below at 1e-12.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
    probs : array_like, shape (N, C)

    Examples
    --------
    >>> round(nll_categorical([0], [[0.5, 0.5]]), 6)  # log 2
    0.693147
    """
    y, p = _checked(labels, probs)
    return float(-np.mean(np.log(np.maximum(p[np.arange(y.size), y], _PROB_FLOOR))))


def brier_score(labels: ArrayLike, probs: ArrayLike) -> float:
    """Multi-class Brier score: mean over samples of ``sum_c (p_c - onehot_c) ** 2``.

    In ``[0, 2]``; lower is better. For two classes this is twice
    ``sklearn.metrics.brier_score_loss`` (which scores only the positive class,
    ``mean((p_1 - y) ** 2)``), since both classes contribute the same squared error.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
    probs : array_like, shape (N, C)

    Examples
    --------
    >>> brier_score([0], [[0.5, 0.5]])
    0.5
    """
    y, p = _checked(labels, probs)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


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


def reliability_curve(labels: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> ReliabilityCurve:
    """Bin samples by top-label confidence into ``n_bins`` equal-width bins over [0, 1].

    Parameters
    ----------
    labels : array_like of int, shape (N,)
    probs : array_like, shape (N, C)
    n_bins : int, default 15

    Returns
    -------
    ReliabilityCurve
        ``(confidence, accuracy, counts, edges)``; see :class:`ReliabilityCurve`.

    Examples
    --------
    >>> curve = reliability_curve([0, 1], [[0.9, 0.1], [0.9, 0.1]], n_bins=10)
    >>> curve.counts[8], curve.accuracy[8]
    (np.int64(2), np.float64(0.5))
    """
    n_bins = check_positive_int(n_bins, name="n_bins")
    y, p = _checked(labels, probs)
    conf = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted on the edges themselves avoids conf * n_bins rounding across a boundary.
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(bins, weights=conf, minlength=n_bins) / count
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return ReliabilityCurve(confidence, acc, count, edges)


def expected_calibration_error(labels: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width bins (Guo et al. 2017).

    ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over the bins of :func:`reliability_curve`.
    In ``[0, 1]``; lower is better. With few samples per bin it is biased upwards.

    Parameters
    ----------
    labels : array_like of int, shape (N,)
    probs : array_like, shape (N, C)
    n_bins : int, default 15

    Examples
    --------
    >>> round(expected_calibration_error([0, 1], [[0.9, 0.1], [0.9, 0.1]]), 6)
    0.4
    """
    curve = reliability_curve(labels, probs, n_bins)
    full = curve.counts > 0
    gaps = np.abs(curve.accuracy[full] - curve.confidence[full])
    return float(np.sum(curve.counts[full] * gaps) / np.sum(curve.counts))
