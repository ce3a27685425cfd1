"""Acquisition scores for regression, from a Gaussian ensemble or posterior.

Every function takes each member's (or posterior draw's) predictive mean and aleatoric variance,
``mean`` and ``var`` of shape ``(K, N, D)`` (``(K, N)`` means ``D = 1``; ``(K, N, D, *spatial)``
for per-pixel or per-voxel outputs). The predictive distribution is the equal-weight mixture of
the ``K`` Gaussians ``N(mean_k, var_k)``. Scores are reduced over the ``D`` outputs by their mean
and have shape ``(N,)`` or ``(N, *spatial)``; higher means more uncertain.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr, ndtri

from trustml.acquire._validation import check_gaussian
from trustml.exceptions import TrustmlInputError

__all__ = [
    "aleatoric_variance",
    "epistemic_variance",
    "expected_interval_width",
    "mixture_quantile",
    "predictive_variance",
]

_BISECTION_STEPS = 64
"""Halvings of the bracket: far below float64 resolution of any bracket that fits in memory."""


def aleatoric_variance(mean: ArrayLike, var: ArrayLike) -> np.ndarray:
    """Mean over members of the aleatoric variance, ``mean_k var_k``, averaged over D.

    Parameters
    ----------
    mean, var : array_like, shape (K, N, D) or (K, N, D, *spatial)
        Member means and aleatoric variances.

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)

    Examples
    --------
    >>> float(aleatoric_variance([[0.0], [2.0]], [[1.0], [3.0]])[0])
    2.0
    """
    _, v = check_gaussian(mean, var)
    return v.mean(axis=0).mean(axis=1)


def epistemic_variance(mean: ArrayLike, var: ArrayLike) -> np.ndarray:
    """Variance of the member means (population variance over K), averaged over D.

    Parameters
    ----------
    mean, var : array_like, shape (K, N, D) or (K, N, D, *spatial)
        Member means and aleatoric variances (``var`` is checked, not used).

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)

    Examples
    --------
    >>> float(epistemic_variance([[0.0], [2.0]], [[1.0], [3.0]])[0])
    1.0
    """
    m, _ = check_gaussian(mean, var)
    return m.var(axis=0).mean(axis=1)


def predictive_variance(mean: ArrayLike, var: ArrayLike) -> np.ndarray:
    """Total variance of the mixture: aleatoric plus epistemic (law of total variance).

    Parameters
    ----------
    mean, var : array_like, shape (K, N, D) or (K, N, D, *spatial)
        Member means and aleatoric variances.

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)
        ``mean_k var_k + var_k mean_k``, averaged over D.

    Examples
    --------
    >>> float(predictive_variance([[0.0], [2.0]], [[1.0], [3.0]])[0])
    3.0
    """
    m, v = check_gaussian(mean, var)
    return (v.mean(axis=0) + m.var(axis=0)).mean(axis=1)


def _mixture_cdf(x: np.ndarray, m: np.ndarray, sd: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x[None] - m) / sd
    # A member with zero variance is a point mass: its CDF steps to 1 at its mean.
    z = np.where(sd > 0, z, np.where(x[None] >= m, np.inf, -np.inf))
    return ndtr(z).mean(axis=0)


def mixture_quantile(mean: ArrayLike, var: ArrayLike, q: float) -> np.ndarray:
    """Quantile ``q`` of the equal-weight Gaussian mixture, per sample and output.

    Found by bisection on the mixture CDF, bracketed by the members' own ``q``-quantiles (the
    mixture CDF is their average, so its quantile lies between the smallest and the largest).

    Parameters
    ----------
    mean, var : array_like, shape (K, N, D) or (K, N, D, *spatial)
        Member means and aleatoric variances.
    q : float
        Probability level in (0, 1).

    Returns
    -------
    ndarray, shape (N, D) or (N, D, *spatial)

    Examples
    --------
    >>> float(mixture_quantile([[1.0], [1.0]], [[4.0], [4.0]], 0.5)[0, 0])
    1.0
    """
    if not 0.0 < float(q) < 1.0:
        raise TrustmlInputError(f"Expected q in (0, 1), got {q!r}")
    m, v = check_gaussian(mean, var)
    sd = np.sqrt(v)
    member_q = m + sd * ndtri(q)
    lo, hi = member_q.min(axis=0), member_q.max(axis=0)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        below = _mixture_cdf(mid, m, sd) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return hi


def expected_interval_width(
    mean: ArrayLike, var: ArrayLike, level: float = 0.9, *, method: str = "mixture"
) -> np.ndarray:
    """Width of the central ``level`` interval of the predictive mixture, averaged over D.

    Parameters
    ----------
    mean, var : array_like, shape (K, N, D) or (K, N, D, *spatial)
        Member means and aleatoric variances.
    level : float, default 0.9
        Coverage of the central interval, in (0, 1).
    method : {"mixture", "normal"}, default "mixture"
        ``"mixture"``: the exact quantiles ``(1 -/+ level) / 2`` of the Gaussian mixture (by
        bisection). ``"normal"``: the approximation ``2 z sqrt(total variance)`` with
        ``z = Phi^-1((1 + level) / 2)``, exact when all members agree, cheaper, and wider or
        narrower than the mixture's interval when members disagree (multimodal mixtures).

    Returns
    -------
    ndarray, shape (N,) or (N, *spatial)

    Examples
    --------
    >>> import numpy as np
    >>> w = expected_interval_width([[0.0], [0.0]], [[1.0], [1.0]], level=0.9)
    >>> bool(np.isclose(w[0], 2 * 1.6448536269514722))
    True
    """
    if not 0.0 < float(level) < 1.0:
        raise TrustmlInputError(f"Expected level in (0, 1), got {level!r}")
    if method == "normal":
        z = ndtri(0.5 + level / 2.0)
        m, v = check_gaussian(mean, var)
        return (2.0 * z * np.sqrt(v.mean(axis=0) + m.var(axis=0))).mean(axis=1)
    if method != "mixture":
        raise TrustmlInputError(
            f"The 'method' parameter of expected_interval_width must be one of "
            f"{{'mixture', 'normal'}}. Got {method!r} instead."
        )
    lower = mixture_quantile(mean, var, 0.5 - level / 2.0)
    upper = mixture_quantile(mean, var, 0.5 + level / 2.0)
    return (upper - lower).mean(axis=1)
