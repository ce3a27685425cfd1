"""Generic corruptions of gridded inputs, at a seeded intensity: the rungs of a shift ladder.

Ovadia et al. (NeurIPS 2019) score every uncertainty method at increasing shift intensity
(CIFAR-10-C's five severities); these are the same kinds of corruption for scientific grids of
any dimension. Each takes inputs ``x`` of shape ``(N, C, *spatial)`` with 1 to 3 spatial axes
(a channel-first 1D signal, 2D field or 3D volume) and returns a corrupted float copy; ``x``
is never modified.

``level`` is the intensity, in the corruption's own unit:

- ``noise``: additive Gaussian noise, standard deviation ``level`` times each channel's
  standard deviation (over the whole array, so the noise is relative to the field's spread);
- ``blur``: Gaussian smoothing of the spatial axes, standard deviation ``level`` grid cells
  (``reflect`` boundaries);
- ``mask``: a fraction ``level`` in [0, 1] of the grid cells of every sample set to the
  channel's mean (the same cells in every selected channel, as a missing sensor would);
- ``resolution``: block means over ``level`` x ... x ``level`` cells (an integer factor),
  repeated back to the original grid (a coarser instrument or simulation); a trailing
  partial block is averaged on its own.

``level = 0`` (``1`` for ``resolution``) returns an unchanged copy. ``channels`` restricts the
corruption to some channels (the others are copied). The random corruptions (``noise`` and
``mask``) draw from ``seed`` only: the same seed gives the same corrupted array.

Examples
--------
>>> import numpy as np
>>> x = np.arange(8, dtype=float).reshape(1, 1, 8)
>>> corrupt(x, "resolution", 2)[0, 0].tolist()
[0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from trustml.exceptions import TrustmlInputError
from trustml.registry import Registry
from trustml.utils.seeding import SeedLike, as_seed_sequence

__all__ = ["CORRUPTIONS", "Corruption", "corrupt"]


@dataclass(frozen=True)
class Corruption:
    """One kind of corruption.

    Attributes
    ----------
    apply : callable
        ``apply(x, level, rng) -> corrupted`` on a float64 array ``(N, C', *spatial)`` of the
        selected channels, with their per-channel ``mean`` and ``std`` precomputed by
        :func:`corrupt` (passed as keyword arguments).
    identity : float
        The level that leaves the input unchanged.
    unit : str
        What ``level`` measures (for error messages and the report).
    bounds : tuple of float
        The valid range of ``level`` (inclusive).
    integer : bool
        Whether ``level`` must be a whole number.
    """

    apply: Callable[..., np.ndarray]
    identity: float
    unit: str
    bounds: tuple[float, float]
    integer: bool = False


CORRUPTIONS: Registry[Corruption] = Registry("corruption")
"""Every corruption :func:`corrupt` applies, by name."""


def _noise(
    x: np.ndarray, level: float, rng: np.random.Generator, **stats: np.ndarray
) -> np.ndarray:
    return x + rng.standard_normal(x.shape) * (level * stats["std"])


def _blur(x: np.ndarray, level: float, rng: np.random.Generator, **stats: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    sigma = (0.0, 0.0) + (float(level),) * (x.ndim - 2)
    return gaussian_filter(x, sigma=sigma, mode="reflect")


def _mask(x: np.ndarray, level: float, rng: np.random.Generator, **stats: np.ndarray) -> np.ndarray:
    n, spatial = x.shape[0], x.shape[2:]
    cells = int(np.prod(spatial))
    k = int(round(level * cells))
    hidden = np.zeros((n, cells), dtype=bool)
    if k:
        order = np.argsort(rng.random((n, cells)), axis=1)[:, :k]
        np.put_along_axis(hidden, order, True, axis=1)
    hidden = hidden.reshape(n, 1, *spatial)
    return np.where(hidden, stats["mean"], x)


def _resolution(
    x: np.ndarray, level: float, rng: np.random.Generator, **stats: np.ndarray
) -> np.ndarray:
    f = int(level)
    out = x
    for axis in range(2, x.ndim):
        size = out.shape[axis]
        starts = np.arange(0, size, f)
        means = np.add.reduceat(out, starts, axis=axis)
        counts = np.diff(np.append(starts, size)).astype(np.float64)
        shape = [1] * out.ndim
        shape[axis] = len(counts)
        means = means / counts.reshape(shape)
        out = np.repeat(means, counts.astype(int), axis=axis)
    return out


CORRUPTIONS.register("noise")(Corruption(_noise, 0.0, "channel standard deviations", (0.0, 1e3)))
CORRUPTIONS.register("blur")(Corruption(_blur, 0.0, "grid cells (Gaussian sigma)", (0.0, 1e3)))
CORRUPTIONS.register("mask")(Corruption(_mask, 0.0, "fraction of grid cells", (0.0, 1.0)))
CORRUPTIONS.register("resolution")(
    Corruption(_resolution, 1.0, "block size in grid cells", (1.0, 1e6), integer=True)
)


def _check_level(name: str, spec: Corruption, level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float | np.integer | np.floating):
        raise TrustmlInputError(f"corruption {name!r}: level must be a number, got {level!r}")
    value = float(level)
    lo, hi = spec.bounds
    if not np.isfinite(value) or not lo <= value <= hi:
        raise TrustmlInputError(
            f"corruption {name!r}: level {level!r} is outside [{lo:g}, {hi:g}] ({spec.unit})"
        )
    if spec.integer and value != int(value):
        raise TrustmlInputError(f"corruption {name!r}: level must be a whole number, got {level!r}")
    return value


def corrupt(
    x: np.ndarray,
    kind: str,
    level: float,
    *,
    seed: SeedLike = None,
    channels: Sequence[int] | None = None,
) -> np.ndarray:
    """A corrupted float64 copy of ``x`` (see the module docstring for each ``kind``).

    Parameters
    ----------
    x : array of shape (N, C, *spatial)
        Channel-first grids with 1 to 3 spatial axes; finite values.
    kind : {"noise", "blur", "mask", "resolution"}
        A name in :data:`CORRUPTIONS`.
    level : float
        The intensity, in the corruption's unit; the identity level returns a copy.
    seed : int, SeedSequence or None
        Seeds ``noise`` and ``mask``.
    channels : sequence of int, optional
        Corrupt only these channels (default: all).

    Returns
    -------
    ndarray of float64, shape of ``x``

    Raises
    ------
    TrustmlInputError
        An unknown kind, a level out of range, a channel out of range, an input that is not
        ``(N, C, *spatial)`` with 1-3 spatial axes, or non-finite values.
    """
    try:
        spec = CORRUPTIONS.get(kind)
    except KeyError as err:
        raise TrustmlInputError(f"corruption: {err.args[0]}") from None
    value = _check_level(kind, spec, level)
    a = np.array(x, dtype=np.float64, copy=True)
    if a.ndim not in (3, 4, 5):
        raise TrustmlInputError(
            f"corruption {kind!r}: expected inputs (N, C, *spatial) with 1 to 3 spatial axes, "
            f"got shape {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise TrustmlInputError(f"corruption {kind!r}: the inputs hold NaN or infinite values")
    picked = list(range(a.shape[1])) if channels is None else [int(c) for c in channels]
    bad = [c for c in picked if not 0 <= c < a.shape[1]]
    if bad or len(set(picked)) != len(picked):
        raise TrustmlInputError(
            f"corruption {kind!r}: channels {list(channels or [])} must be distinct indices in "
            f"[0, {a.shape[1]})"
        )
    if value == spec.identity or not picked:
        return a
    sub = a[:, picked]
    axes = (0, *range(2, a.ndim))
    stats = {
        "mean": sub.mean(axis=axes, keepdims=True),
        "std": sub.std(axis=axes, keepdims=True),
    }
    rng = np.random.default_rng(as_seed_sequence(seed))
    a[:, picked] = spec.apply(sub, value, rng, **stats)
    return a
