"""Reduce per-pixel or per-voxel scores to one score per sample."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from trustml.acquire._validation import check_scores
from trustml.exceptions import TrustmlInputError

__all__ = ["REDUCTIONS", "reduce"]

REDUCTIONS = ("mean", "max", "quantile")
"""Valid values of ``reduce(how=...)``."""


def reduce(scores: ArrayLike, how: str = "mean", q: float = 0.9) -> np.ndarray:
    """Reduce scores over their trailing (spatial) axes to one score per sample.

    Parameters
    ----------
    scores : array_like, shape (N, *spatial)
        Per-pixel or per-voxel scores, e.g. ``bald(probs)`` of probs ``(K, N, C, H, W)``.
        Shape ``(N,)`` is returned unchanged (as a float64 copy).
    how : {"mean", "max", "quantile"}, default "mean"
        ``"mean"`` favours samples uncertain everywhere, ``"max"`` those with any uncertain
        pixel, ``"quantile"`` (at ``q``) those with an uncertain region, robust to single pixels.
    q : float, default 0.9
        Quantile level in [0, 1] for ``how="quantile"`` (linear interpolation).

    Returns
    -------
    ndarray, shape (N,)

    Examples
    --------
    >>> reduce([[[0.0, 1.0], [2.0, 5.0]]], how="max").tolist()
    [5.0]
    """
    s = check_scores(scores)
    if how not in REDUCTIONS:
        raise TrustmlInputError(
            f"The 'how' parameter of reduce must be one of "
            f"{{{', '.join(map(repr, REDUCTIONS))}}}. Got {how!r} instead."
        )
    if s.ndim == 1:
        return s.copy()
    if 0 in s.shape[1:]:
        raise TrustmlInputError(f"Expected scores with non-empty spatial axes, got {s.shape}")
    flat = s.reshape(s.shape[0], -1)
    if how == "mean":
        return flat.mean(axis=1)
    if how == "max":
        return flat.max(axis=1)
    if not 0.0 <= float(q) <= 1.0:
        raise TrustmlInputError(f"Expected q in [0, 1], got {q!r}")
    return np.quantile(flat, q, axis=1)
