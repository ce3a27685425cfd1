"""Turn user arrays (numpy or torch) into checked float64 numpy arrays; errors name the array."""

from __future__ import annotations

from typing import Any

import numpy as np

from trustml.exceptions import TrustmlInputError

__all__ = ["REDUCTIONS", "ArrayLike", "as_array", "as_labels", "as_probs", "reduce", "same_shape"]

ArrayLike = Any  # numpy.ndarray | torch.Tensor | nested sequences of numbers

#: ``reduction=`` options of the per-sample metrics.
REDUCTIONS = ("mean", "none")


def reduce(values: np.ndarray, reduction: str) -> float | np.ndarray:
    """``float(mean(values))`` for ``"mean"``, the array itself for ``"none"``."""
    if reduction == "mean":
        return float(np.mean(values))
    if reduction == "none":
        return values
    raise ValueError(
        f"The 'reduction' parameter must be one of {{'mean', 'none'}}. Got {reduction!r} instead."
    )


def as_array(x: ArrayLike, name: str, *, min_ndim: int = 0, allow_inf: bool = False) -> np.ndarray:
    """``x`` as a finite float64 array (torch tensors are detached and moved to the CPU).

    ``allow_inf`` admits +-inf (never NaN), e.g. for unbounded interval ends.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().double().numpy()  # .double() also covers bfloat16/float16
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TrustmlInputError(f"array {name!r}: expected numbers, got {err}") from None
    if a.ndim < min_ndim:
        raise TrustmlInputError(
            f"array {name!r}: expected at least {min_ndim} dims, got shape {a.shape}"
        )
    if a.ndim >= 1 and a.shape[0] == 0:
        raise TrustmlInputError(
            f"array {name!r}: expected at least one sample, got shape {a.shape}"
        )
    ok = ~np.isnan(a) if allow_inf else np.isfinite(a)
    if not np.all(ok):
        raise TrustmlInputError(
            f"array {name!r}: holds {int(np.size(a) - ok.sum())} "
            f"{'NaN' if allow_inf else 'non-finite'} values"
        )
    return a


def same_shape(ref: np.ndarray, ref_name: str, other: np.ndarray, name: str) -> None:
    if other.shape != ref.shape:
        raise TrustmlInputError(
            f"array {name!r}: expected the shape of {ref_name!r} {ref.shape}, got {other.shape}"
        )


def as_probs(probs: ArrayLike) -> np.ndarray:
    """Class probabilities ``(N, C)``: in [0, 1], rows summing to 1 (within 1e-3)."""
    p = as_array(probs, "probs", min_ndim=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise TrustmlInputError(f"array 'probs': expected shape (N, C) with C >= 2, got {p.shape}")
    if np.any(p < 0) or np.any(p > 1):
        raise TrustmlInputError("array 'probs': expected probabilities in [0, 1]")
    worst = float(np.max(np.abs(p.sum(axis=1) - 1.0)))
    if worst > 1e-3:
        raise TrustmlInputError(
            f"array 'probs': expected rows summing to 1 (softmax outputs), worst row is off by {worst:.3g}"
        )
    return p


def as_labels(labels: ArrayLike, n_classes: int, n: int) -> np.ndarray:
    """Integer class labels ``(N,)`` in ``[0, n_classes)``; integral floats are accepted."""
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise TrustmlInputError(f"array 'labels': expected shape ({n},), got {y.shape}")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise TrustmlInputError(
            f"array 'labels': expected integer class labels, got dtype {y.dtype}"
        )
    y = y.astype(np.int64)
    if np.any(y < 0) or np.any(y >= n_classes):
        raise TrustmlInputError(
            f"array 'labels': expected labels in [0, {n_classes}) to match probs, "
            f"got range [{y.min()}, {y.max()}]"
        )
    return y
