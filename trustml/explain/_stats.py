"""Rank statistics over flattened attribution maps."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["pairwise_spearman", "spearman_rows", "spearman_rows_support"]


def _standardized_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (ties averaged), centred and scaled to unit norm.

    A constant row has no ranking; it becomes all zeros, so its correlation with anything is 0.
    """
    r = rankdata(a, axis=-1).astype(np.float64)
    r -= r.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(r, axis=-1, keepdims=True)
    return np.divide(r, norm, out=np.zeros_like(r), where=norm > 0)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of ``a[i]`` and ``b[i]`` for every leading index.

    Parameters
    ----------
    a, b : arrays of the same shape ``(..., *features)``; the feature axes of ``a`` and ``b``
        are flattened after the first axis.

    Returns
    -------
    ndarray of shape ``a.shape[:1]``
        Constant rows (no ranking) give 0.

    Examples
    --------
    >>> spearman_rows(np.array([[1.0, 2, 3]]), np.array([[10.0, 20, 30]]))
    array([1.])
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    return (_standardized_ranks(a) * _standardized_ranks(b)).sum(axis=-1)


def spearman_rows_support(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Like :func:`spearman_rows`, but each row is ranked only over the features where ``a`` or
    ``b`` is non-zero.

    Features that are exactly zero in both maps say nothing about whether the two rankings
    agree; on sparse inputs (calorimeter images, masked fields) they would otherwise dominate
    the ties and push the correlation of any two input-times-gradient maps towards 1.

    Examples
    --------
    >>> a = np.array([[0.0, 0, 0, 0, 1, 2, 3]]); b = np.array([[0.0, 0, 0, 0, 3, 2, 1]])
    >>> float(spearman_rows(a, b)[0]) > 0.3, float(spearman_rows_support(a, b)[0])
    (True, -1.0)
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        keep = (x != 0) | (y != 0)
        if keep.sum() >= 2:
            out[i] = spearman_rows(x[None, keep], y[None, keep])[0]
    return out


def pairwise_spearman(members: np.ndarray) -> np.ndarray:
    """Mean Spearman correlation over all member pairs, per example.

    Parameters
    ----------
    members : array of shape (K, N, *features)

    Returns
    -------
    ndarray of shape (N,)
        NaN when ``K == 1`` (no pairs).
    """
    k, n = members.shape[:2]
    if k < 2:
        return np.full(n, np.nan)
    z = np.stack([_standardized_ranks(m.reshape(n, -1).astype(np.float64)) for m in members])
    total = np.zeros(n)
    for i in range(k):
        for j in range(i + 1, k):
            total += (z[i] * z[j]).sum(axis=-1)
    return total / (k * (k - 1) / 2)
