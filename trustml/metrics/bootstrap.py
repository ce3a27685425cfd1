"""Percentile bootstrap confidence intervals for any metric."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from trustml.exceptions import TrustmlInputError
from trustml.utils.seeding import as_seed_sequence
from trustml.utils.validation import check_positive_int, check_probability

__all__ = ["bootstrap_ci", "percentile_interval", "resample_indices"]

SeedLike = int | np.random.SeedSequence | None


def _as_numpy(x: Any, i: int) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        x = x.double().numpy() if x.is_floating_point() else x.numpy()
    a = np.asarray(x)
    if a.ndim == 0:
        raise TrustmlInputError(f"bootstrap_ci: array {i} is a scalar; expected rows along axis 0")
    return a


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: Any,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: SeedLike = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(*arrays)``.

    Each replicate draws ``N`` row indices with replacement and applies the same rows (axis 0)
    to every array, so paired quantities (targets and predictions) stay paired. All ``n_boot``
    index sets are drawn in one vectorised call per chunk of replicates; ``metric`` is then
    called once per replicate.

    Parameters
    ----------
    metric : callable
        ``metric(*resampled_arrays) -> float``, e.g. :func:`trustml.metrics.rmse`. It
        receives numpy arrays (torch tensors are converted once, up front).
    *arrays : array_like
        Arrays with the same length ``N`` along axis 0. For an array whose samples lie on
        another axis (``crps_ensemble`` samples ``(S, N)``), move that axis first and move it
        back inside ``metric``.
    n_boot : int, default 1000
        Bootstrap replicates.
    level : float in (0, 1), default 0.95
        Central probability of the interval.
    seed : int, SeedSequence or None, default 0
        The same seed gives the same interval; ``None`` draws fresh entropy.

    Returns
    -------
    (lo, hi) : tuple of float
        The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicate values.

    Examples
    --------
    >>> import numpy as np
    >>> from trustml.metrics import rmse
    >>> y = np.random.default_rng(0).normal(size=200)
    >>> lo, hi = bootstrap_ci(rmse, np.zeros(200), y, n_boot=200, seed=1)
    >>> bool(lo < rmse(np.zeros(200), y) < hi)
    True
    """
    if not arrays:
        raise TrustmlInputError("bootstrap_ci: expected at least one array")
    n_boot = check_positive_int(n_boot, name="n_boot")
    level = check_probability(level, name="level")
    data = [_as_numpy(a, i) for i, a in enumerate(arrays)]
    n = data[0].shape[0]
    lengths = [a.shape[0] for a in data]
    if any(length != n for length in lengths):
        raise TrustmlInputError(
            f"bootstrap_ci: expected arrays with the same length along axis 0, got {lengths}"
        )
    if n == 0:
        raise TrustmlInputError("bootstrap_ci: expected at least one row, got 0")
    values = np.empty(n_boot, dtype=np.float64)
    for start, indices in resample_indices(n, n_boot, seed):
        for j, idx in enumerate(indices):
            values[start + j] = float(metric(*(a[idx] for a in data)))
    return percentile_interval(values, level)


def resample_indices(
    n: int, n_boot: int, seed: SeedLike, *, block_entries: int = 1 << 22
) -> Iterator[tuple[int, np.ndarray]]:
    """The row indices of every bootstrap replicate, in blocks: ``(first replicate, indices)``
    with ``indices`` of shape ``(replicates in the block, n)``.

    The one source of :func:`bootstrap_ci`'s draws, so that anything else resampling ``n``
    rows with the same ``seed`` (the streaming metrics of
    :mod:`trustml.metrics.streaming`) draws the very same replicates. Blocks keep the index
    matrix near ``block_entries`` entries whatever ``n_boot * n`` is (one replicate when
    ``n`` is larger). numpy's ``Generator.integers`` draws the same sequence however it is
    cut into calls, so the block size does not change the replicates (the streaming tests
    check this against :func:`bootstrap_ci`).
    """
    rng = np.random.default_rng(as_seed_sequence(seed))
    chunk = max(1, min(n_boot, block_entries // n))
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        yield start, rng.integers(0, n, size=(stop - start, n))


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicate ``values``."""
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)
