"""Input checks shared by the acquisition functions (validated once, at the boundary)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trustml.exceptions import TrustmlInputError

__all__ = ["PROB_ATOL", "check_budget", "check_gaussian", "check_probs", "check_scores"]

PROB_ATOL = 1e-3
"""How far each sample's class probabilities may sum from 1 (float32 softmax outputs pass)."""


def check_probs(probs: Any, *, name: str = "probs", min_members: int = 1) -> np.ndarray:
    """Return ``probs`` as float64 of shape ``(K, N, C, *spatial)`` or raise ``TrustmlInputError``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim < 3:
        raise TrustmlInputError(
            f"Expected {name} of shape (K, N, C) or (K, N, C, *spatial) (members or posterior "
            f"draws, samples, classes), got shape {p.shape}"
        )
    k, _, c = p.shape[:3]
    if k < min_members:
        raise TrustmlInputError(
            f"Expected {name} with K >= {min_members} members or posterior draws on axis 0 "
            f"(mutual information needs disagreement between draws), got K = {k}"
        )
    if c < 2:
        raise TrustmlInputError(f"Expected {name} with C >= 2 classes on axis 2, got C = {c}")
    if not np.all(np.isfinite(p)):
        raise TrustmlInputError(f"Expected finite values in {name}, got NaN or inf")
    if p.size and (p.min() < 0.0 or p.max() > 1.0 + PROB_ATOL):
        raise TrustmlInputError(f"Expected {name} in [0, 1], got values in [{p.min()}, {p.max()}]")
    sums = p.sum(axis=2)
    if sums.size and np.max(np.abs(sums - 1.0)) > PROB_ATOL:
        worst = float(sums.flat[np.argmax(np.abs(sums - 1.0))])
        raise TrustmlInputError(
            f"Expected {name} to sum to 1 over the class axis 2 (tolerance {PROB_ATOL}), got a "
            f"sum of {worst:.6g}; pass probabilities, not logits"
        )
    return p


def check_gaussian(mean: Any, var: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``mean, var`` as float64 of shape ``(K, N, D, *spatial)`` (``(K, N)`` -> D = 1)."""
    m = np.asarray(mean, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    if m.ndim < 2:
        raise TrustmlInputError(
            f"Expected mean of shape (K, N) or (K, N, D, *spatial) (members or posterior draws, "
            f"samples, outputs), got shape {m.shape}"
        )
    if v.shape != m.shape:
        raise TrustmlInputError(f"Expected var of the shape of mean {m.shape}, got {v.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(v))):
        raise TrustmlInputError("Expected finite values in mean and var, got NaN or inf")
    if v.size and v.min() < 0.0:
        raise TrustmlInputError(f"Expected var >= 0 (aleatoric variances), got {v.min()}")
    if m.ndim == 2:
        m, v = m[:, :, None], v[:, :, None]
    return m, v


def check_scores(scores: Any, *, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as float64 of shape ``(N, *spatial)`` with finite values."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim < 1:
        raise TrustmlInputError(f"Expected {name} of shape (N,) or (N, *spatial), got a scalar")
    if not np.all(np.isfinite(s)):
        raise TrustmlInputError(f"Expected finite values in {name}, got NaN or inf")
    return s


def check_budget(budget: Any, n: int) -> int:
    """Return ``budget`` as an int in ``[0, n]``."""
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise TrustmlInputError(f"Expected budget to be an int, got {type(budget).__name__}")
    if not 0 <= budget <= n:
        raise TrustmlInputError(
            f"Expected budget in [0, {n}] (the pool has {n} samples), got {int(budget)}"
        )
    return int(budget)
