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

from trustml.data._base import BaseDataset
from trustml.exceptions import TrustmlInputError
from trustml.registry import Registry
from trustml.utils.seeding import SeedLike, as_seed_sequence

__all__ = ["CORRUPTIONS", "CorruptedDataset", "Corruption", "channel_stats", "corrupt"]


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
    reference: tuple[np.ndarray, np.ndarray] | None = None,
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
    reference : (mean, std) arrays of shape (C,), optional
        Per-channel statistics to scale ``noise`` and fill ``mask`` with, instead of those of
        ``x`` itself: a whole split's, so that corrupting it sample by sample (as
        :class:`CorruptedDataset` does) gives every sample the same noise scale.

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
    if reference is None:
        stats = {
            "mean": sub.mean(axis=axes, keepdims=True),
            "std": sub.std(axis=axes, keepdims=True),
        }
    else:
        shape = (1, len(picked)) + (1,) * (a.ndim - 2)
        ref = [np.asarray(r, dtype=np.float64) for r in reference]
        if any(r.shape != (a.shape[1],) for r in ref):
            raise TrustmlInputError(
                f"corruption {kind!r}: reference statistics must have shape ({a.shape[1]},) "
                f"(one per channel), got {[r.shape for r in ref]}"
            )
        stats = {"mean": ref[0][picked].reshape(shape), "std": ref[1][picked].reshape(shape)}
    rng = np.random.default_rng(as_seed_sequence(seed))
    a[:, picked] = spec.apply(sub, value, rng, **stats)
    return a


def channel_stats(dataset: BaseDataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a grid dataset's inputs, in one pass.

    Returns
    -------
    mean, std : ndarray of float64, shape (C,)
        Over every sample and grid cell (float64 sums; memory bounded by ``batch_size``).
    """
    c = dataset.input_shape[0]
    total = np.zeros(c)
    squares = np.zeros(c)
    count = 0
    for x, _, _ in dataset.iter_batches(batch_size=batch_size):
        a = x.astype(np.float64).swapaxes(0, 1).reshape(c, -1)
        total += a.sum(axis=1)
        squares += np.square(a).sum(axis=1)
        count += a.shape[1]
    mean = total / max(count, 1)
    var = np.maximum(squares / max(count, 1) - np.square(mean), 0.0)
    return mean, np.sqrt(var)


class CorruptedDataset(BaseDataset):
    """``parent`` with every input corrupted by :func:`corrupt` at one level, on read.

    Sample ``i`` is always corrupted with the same draw (its own child ``i`` of ``seed``),
    however the samples are batched or sharded over ranks, and with the same per-channel
    statistics (``reference``, by default the parent's own, from :func:`channel_stats`).
    Targets, groups and masks are the parent's. Nothing is held in memory beyond a batch.

    Parameters
    ----------
    parent : BaseDataset
        Channel-first grids ``(C, *spatial)`` with 1 to 3 spatial axes.
    kind, level, channels
        As in :func:`corrupt`.
    seed : int or SeedSequence
        The ladder level's seed.
    reference : (mean, std) arrays of shape (C,), optional

    Examples
    --------
    >>> noisy = CorruptedDataset(test_set, "noise", 0.5, seed=0)
    >>> x, y = noisy.read(np.arange(8))   # x: (8, *test_set.input_shape), float32
    """

    def __init__(
        self,
        parent: BaseDataset,
        kind: str,
        level: float,
        *,
        seed: SeedLike,
        channels: Sequence[int] | None = None,
        reference: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if len(parent.input_shape) not in (2, 3, 4):
            raise TrustmlInputError(
                f"corruption {kind!r}: expects channel-first grids (C, *spatial) with 1 to 3 "
                f"spatial axes, got inputs of shape {list(parent.input_shape)}"
            )
        # Check kind, level and channels once, on one sample, before anything is read in bulk.
        x0, _ = parent.read(np.arange(min(1, parent.n_samples)))
        ref = channel_stats(parent) if reference is None else reference
        corrupt(x0, kind, level, seed=0, channels=channels, reference=ref)
        self._parent = parent
        self._kind, self._level = kind, float(level)
        self._channels = None if channels is None else [int(c) for c in channels]
        self._reference = ref
        self._seed = as_seed_sequence(seed)
        self._init_view(
            parent,
            n_samples=parent.n_samples,
            groups=parent.groups,
            source=f"{parent.source}+{kind}({self._level:g})",
            input_dtype=np.dtype(np.float64),
        )

    def _sample_seed(self, i: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(self._seed.entropy, spawn_key=(*self._seed.spawn_key, i))

    def _raw_rows(
        self, idx: np.ndarray, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        x, y = self._parent._raw(idx, inputs=inputs)
        if x is None:
            return None, y
        out = np.empty(x.shape, dtype=np.float64)
        for k, i in enumerate(idx.tolist()):
            out[k] = corrupt(
                x[k : k + 1], self._kind, self._level, seed=self._sample_seed(i),
                channels=self._channels, reference=self._reference,
            )[0]  # fmt: skip
        return out, y

    def _raw_mask_rows(self, idx: np.ndarray) -> np.ndarray:
        return self._parent._raw_masks(idx)

    @property
    def n_classes(self) -> int | None:
        return self._parent.n_classes

    @property
    def target_names(self) -> list[str]:
        return self._parent.target_names
