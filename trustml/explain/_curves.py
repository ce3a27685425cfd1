"""Deletion and insertion curves of any scalar function of the inputs: features removed from
(or inserted into) the inputs in attribution order and in seeded random orders.

:func:`~trustml.explain.deletion_curve` traces the model output with it and
:func:`~trustml.explain.uncertainty_deletion_curve` the predictive uncertainty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trustml.utils.seeding import SeedLike, as_seed_sequence

__all__ = ["Curves", "order_curves"]


@dataclass(frozen=True)
class Curves:
    """Deletion or insertion curves of one scalar function, in attribution and random order.

    Attributes
    ----------
    fraction : ndarray of shape (steps + 1,)
        Removed (or inserted) fraction of the features.
    attribution : ndarray of shape (steps + 1,)
        ``mean_n s_n (f(x_t) - f(b)) / mean_n |f(x) - f(b)|`` in attribution order.
    random : ndarray of shape (n_random, steps + 1)
        The same in each random order.
    scale : float
        ``mean_n |f(x) - f(b)|``, the normalisation (the curves are NaN when it is 0).
    """

    fraction: np.ndarray
    attribution: np.ndarray
    random: np.ndarray
    scale: float

    @property
    def auc_attribution(self) -> float:
        """Area under the attribution-order curve."""
        return _area(self.attribution, self.fraction)

    @property
    def auc_random(self) -> float:
        """Area under the mean random-order curve."""
        return _area(self.random.mean(axis=0), self.fraction)

    def extra(self) -> dict[str, Any]:
        """The curves and areas as a check's JSON-friendly ``extra``."""
        return {
            "fraction": self.fraction.tolist(),
            "attribution": self.attribution.tolist(),
            "random": self.random.mean(axis=0).tolist(),
            "random_std": self.random.std(axis=0).tolist(),
            "auc_attribution": self.auc_attribution,
            "auc_random": self.auc_random,
        }


def order_curves(
    mode: str,
    scalar: Callable[[torch.Tensor, Any], np.ndarray],
    rows: int,
    x: torch.Tensor,
    base: torch.Tensor,
    maps: np.ndarray,
    *,
    steps: int,
    n_random: int,
    seed: SeedLike,
    index: Any = None,
) -> Curves:
    """Remove (``"deletion"``) or insert (``"insertion"``) the features of every example in
    the order of ``maps`` and in ``n_random`` random orders, and trace ``scalar``.

    Parameters
    ----------
    mode : {"deletion", "insertion"}
    scalar : callable
        ``scalar(rows_of_inputs, index) -> ndarray (M,)``: the explained number of every row;
        ``index`` is ``index`` (one entry per row when it is a per-example tensor).
    rows : int
        Input rows one call of ``scalar`` may hold.
    x, base : tensor of shape (N, *input_shape)
        The inputs and what a removed feature is set to.
    maps : ndarray of shape (N, *input_shape)
        The attribution that orders the features (ranked by ``s_n * maps``, ``s_n`` the sign
        of ``f(x) - f(b)``).
    steps, n_random, seed
        As for :func:`deletion_curve`.
    index : int, tensor of shape (N,) or None
        Passed to ``scalar``.

    Returns
    -------
    Curves
    """
    n, p = len(x), int(np.prod(x.shape[1:]))
    fraction = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fraction * p).astype(int)
    rng = np.random.default_rng(as_seed_sequence(seed))
    f_x = scalar(x, index)
    f_b = scalar(base, index)
    sign = np.where(f_x >= f_b, 1.0, -1.0)
    scale = float(np.abs(f_x - f_b).mean())
    ranked = np.argsort(-(sign[:, None] * maps.reshape(n, p)), axis=1, kind="stable")
    trace = (mode, scalar, rows, index, x, base)
    attr_curve = _trace(*trace, ranked, counts, f_b, sign).mean(axis=0)
    random_curves = []
    for _ in range(n_random):
        order = rng.permuted(np.tile(np.arange(p), (n, 1)), axis=1)
        random_curves.append(_trace(*trace, order, counts, f_b, sign).mean(axis=0))
    # Normalised by the mean output change between input and baseline (NaN when it is 0).
    norm = scale if scale > 0 else np.nan
    return Curves(fraction, attr_curve / norm, np.stack(random_curves) / norm, scale)


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal area under ``y(x)`` (``np.trapezoid`` needs numpy 2)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _trace(
    mode: str,
    scalar: Callable[[torch.Tensor, Any], np.ndarray],
    rows: int,
    index: Any,
    x: torch.Tensor,
    base: torch.Tensor,
    order: np.ndarray,
    counts: np.ndarray,
    f_b: np.ndarray,
    sign: np.ndarray,
) -> np.ndarray:
    """``s_n (f(x_t) - f(b_n))`` for every example and step, ``(N, steps + 1)``."""
    n, p = order.shape
    n_steps = len(counts)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(p)[None].repeat(n, 0), axis=1)
    rank_t = torch.as_tensor(rank, device=x.device).reshape(x.shape)
    counts_t = torch.as_tensor(counts, device=x.device)
    out = np.empty((n, n_steps))
    chunk = max(1, rows // n_steps)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        # chosen[i, j] = feature of example i among the first counts[j] of its order
        shape = (e - s, n_steps, *x.shape[1:])
        chosen = rank_t[s:e, None] < counts_t.reshape(1, -1, *[1] * (x.dim() - 1))
        xs, bs = x[s:e, None].expand(shape), base[s:e, None].expand(shape)
        pert = torch.where(chosen, bs, xs) if mode == "deletion" else torch.where(chosen, xs, bs)
        idx = index
        if isinstance(idx, torch.Tensor):
            idx = idx[s:e].repeat_interleave(n_steps)
        vals = scalar(pert.reshape(-1, *x.shape[1:]), idx).reshape(e - s, n_steps)
        out[s:e] = sign[s:e, None] * (vals - f_b[s:e, None])
    return out
