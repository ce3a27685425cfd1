"""Acquisition scores for classification, from member or posterior class probabilities.

Every function takes ``probs`` of shape ``(K, N, C)`` (``K`` ensemble members or posterior
draws, ``N`` pool samples, ``C`` classes) or ``(K, N, C, *spatial)`` for per-pixel or per-voxel
outputs, and returns one score per sample (and pixel), shape ``(N,)`` or ``(N, *spatial)``.
Higher always means more uncertain, i.e. more worth labeling. Scores of one sample depend only
on that sample's probabilities, so a pool scored in chunks equals the pool scored at once.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import entr

from trustml.acquire._validation import check_probs

__all__ = [
    "bald",
    "expected_entropy",
    "least_confidence",
    "margin",
    "mutual_information",
    "predictive_entropy",
]


def _entropy(p: np.ndarray, axis: int) -> np.ndarray:
    # entr(x) = -x log x with entr(0) = 0, so one-hot probabilities have entropy exactly 0
    return np.sum(entr(p), axis=axis)


def predictive_entropy(probs: ArrayLike) -> np.ndarray:
    """Entropy (nats) of the mean predictive distribution: total uncertainty.

    Parameters
    ----------
    probs : array_like, shape (K, N, C) or (K, N, C, *spatial)
        Class probabilities of each member or posterior draw.

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)
        ``H[mean_k p_k]``, in ``[0, log C]``.

    Examples
    --------
    >>> import numpy as np
    >>> float(predictive_entropy(np.full((2, 1, 4), 0.25))[0]) == float(np.log(4))
    True
    """
    p = check_probs(probs)
    return _entropy(p.mean(axis=0), axis=1)


def expected_entropy(probs: ArrayLike) -> np.ndarray:
    """Mean over members of each member's entropy (nats): the aleatoric part.

    Parameters
    ----------
    probs : array_like, shape (K, N, C) or (K, N, C, *spatial)
        Class probabilities of each member or posterior draw.

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)
        ``mean_k H[p_k]``.

    Examples
    --------
    >>> import numpy as np
    >>> float(expected_entropy(np.array([[[1.0, 0.0]], [[0.0, 1.0]]]))[0])
    0.0
    """
    p = check_probs(probs)
    return _entropy(p, axis=2).mean(axis=0)


def bald(probs: ArrayLike) -> np.ndarray:
    """BALD score: mutual information between the label and the model (Houlsby et al. 2011).

    ``I[y; w] = H[mean_k p_k] - mean_k H[p_k]``, the epistemic part of the predictive entropy:
    0 when all members agree, ``log C`` at most (members confidently on different classes).

    Parameters
    ----------
    probs : array_like, shape (K, N, C) or (K, N, C, *spatial)
        Class probabilities of ``K >= 2`` members or posterior draws.

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)
        Mutual information in nats, ``>= 0`` (clipped at 0 against rounding).

    Raises
    ------
    ValueError
        If ``K < 2``, or ``probs`` is not a valid array of probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two members, one sample, disagreeing
    >>> bool(np.isclose(bald(probs)[0], np.log(2)))
    True
    """
    p = check_probs(probs, min_members=2)
    mi = _entropy(p.mean(axis=0), axis=1) - _entropy(p, axis=2).mean(axis=0)
    return np.maximum(mi, 0.0)


mutual_information = bald
"""Alias of :func:`bald`."""


def least_confidence(probs: ArrayLike) -> np.ndarray:
    """One minus the largest mean class probability.

    Parameters
    ----------
    probs : array_like, shape (K, N, C) or (K, N, C, *spatial)
        Class probabilities of each member or posterior draw.

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)
        ``1 - max_c mean_k p_k[c]``, in ``[0, 1 - 1/C]``.

    Examples
    --------
    >>> import numpy as np
    >>> float(least_confidence(np.array([[[0.7, 0.2, 0.1]]]))[0])  # doctest: +ELLIPSIS
    0.3...
    """
    p = check_probs(probs)
    return 1.0 - p.mean(axis=0).max(axis=1)


def margin(probs: ArrayLike) -> np.ndarray:
    """One minus the gap between the two largest mean class probabilities.

    Parameters
    ----------
    probs : array_like, shape (K, N, C) or (K, N, C, *spatial)
        Class probabilities of each member or posterior draw.

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)
        ``1 - (top1 - top2)`` of ``mean_k p_k``, in ``[0, 1]``: 1 for a tie, 0 for one-hot.

    Examples
    --------
    >>> import numpy as np
    >>> float(margin(np.array([[[0.5, 0.3, 0.2]]]))[0])  # doctest: +ELLIPSIS
    0.8...
    """
    p = check_probs(probs)
    top2 = -np.partition(-p.mean(axis=0), 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])
