"""Metrics of a split too large to hold: per-sample scores computed chunk by chunk, then
values and bootstrap intervals equal to those of the in-memory functions.

:class:`StreamingMetrics` takes the predictive quantities of a split one chunk of samples at
a time (``update``), keeps only per-sample scalars (each metric's per-sample scores, or for
``ece`` each sample's confidence bin, confidence and correctness) and forgets the chunk. The
value of a metric is then the same reduction the in-memory function applies to the same
per-sample scores, and its bootstrap interval resamples those scores with the very index
draws :func:`~trustml.metrics.bootstrap_ci` makes for the same seed
(:func:`~trustml.metrics.bootstrap.resample_indices`): both are equal to the in-memory
``score`` of the whole split, bit for bit, whatever the chunks.

Memory: the chunk being scored, plus the per-sample scalars, which live wherever
``allocate`` puts them (numpy arrays by default; an HDF5 group's datasets keep them on disk).
The intervals read one metric's scores at a time, plus one replicate's ``N`` indices and
its resampled copy: the replicates are drawn one at a time, the same draws as
:func:`~trustml.metrics.bootstrap_ci` makes in blocks of them.

Examples
--------
>>> import numpy as np
>>> from trustml.metrics import rmse
>>> y = np.arange(10.0)[:, None]
>>> m = StreamingMetrics(["rmse", "nll"], "regression", 10)
>>> for a, b in ((0, 4), (4, 10)):
...     m.update(a, y[a:b], mean=y[a:b] + 1.0, std=np.ones((b - a, 1)))
>>> m.values()["rmse"] == rmse(y + 1.0, y)
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from trustml.exceptions import TrustmlInputError
from trustml.metrics import classification as cls
from trustml.metrics.bootstrap import SeedLike, percentile_interval, resample_indices
from trustml.metrics.specs import METRICS, TASKS, MetricSpec
from trustml.utils.validation import check_positive_int, check_probability

__all__ = ["Allocate", "StreamingMetrics", "ECE_BINS"]

#: ``allocate(name, shape, dtype)`` -> a writable array-like (``a[i:j] = v``, ``a[()]``).
Allocate = Callable[[str, tuple[int, ...], np.dtype], Any]

#: Bins of the protocol's ``ece`` (that of :func:`trustml.metrics.ece`'s default).
ECE_BINS = 15

_SQRT_OF_MEAN = frozenset({"rmse"})  # sqrt(mean(per-sample)); the others are plain means
_BINNED = frozenset({"ece"})  # a function of (bin, confidence, correct) per sample


def _numpy_allocate(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def _per_sample_form(spec: MetricSpec, task: str) -> str:
    """``"binned"``, ``"sqrt_mean"`` or ``"mean"``; an error for a metric with no such form."""
    fn = spec.impl(task).fn  # an error when the metric does not apply to the task
    if spec.name in _BINNED:
        return "binned"
    if "reduction" not in inspect.signature(fn).parameters:
        raise TrustmlInputError(
            f"metric {spec.name!r} ({task}) has no per-sample form, so it cannot be scored "
            "in chunks"
        )
    return "sqrt_mean" if spec.name in _SQRT_OF_MEAN else "mean"


class StreamingMetrics:
    """The protocol's metrics of one split of ``n`` samples, fed chunk by chunk.

    Parameters
    ----------
    names : sequence of str
        Metric names of :data:`~trustml.metrics.METRICS` (``"rmse"``, ``"ece"``, ...).
    task : {"regression", "classification"}
    n : int
        Samples in the split; every row ``0..n-1`` must be given exactly once.
    allocate : callable, optional
        ``allocate(name, shape, dtype)`` returns the array-like a per-sample score is kept in
        (default: a numpy array; pass one that creates HDF5 datasets to keep them on disk).
        Called once per stored quantity, at the first :meth:`update`.
    """

    def __init__(
        self, names: Sequence[str], task: str, n: int, *, allocate: Allocate | None = None
    ) -> None:
        if task not in TASKS:
            raise TrustmlInputError(f"task {task!r}: expected one of {', '.join(TASKS)}")
        self.task = task
        self.n = check_positive_int(n, name="n")
        self.specs = {name: METRICS.get(name) for name in names}
        self.forms = {name: _per_sample_form(s, task) for name, s in self.specs.items()}
        self._allocate = allocate or _numpy_allocate
        self._store: dict[str, Any] = {}
        self._seen = 0

    # -- feeding ------------------------------------------------------------------------------
    def update(self, start: int, y: Any, **quantities: Any) -> None:
        """Score rows ``start .. start + len(y)`` of the split.

        ``y`` holds their targets ``(n, D)`` or labels ``(n,)``; ``quantities`` their predictive
        quantities, named as :meth:`~trustml.metrics.MetricSpec.compute` names them (``mean``,
        ``std``, ``lower``, ``upper``, ``probs``); extra ones are ignored.
        """
        y = np.asarray(y)
        rows = y.shape[0] if y.ndim else 0
        stop = start + rows
        if rows == 0 or start < 0 or stop > self.n:
            raise TrustmlInputError(
                f"StreamingMetrics.update: rows {start}..{stop} are not a non-empty part of "
                f"the split's {self.n} samples"
            )
        for name, spec in self.specs.items():
            if self.forms[name] == "binned":
                bins, conf, correct = cls.binned_confidence(
                    _needed(spec, self.task, quantities)[0], y, ECE_BINS
                )
                self._put(f"{name}/bins", start, bins)
                self._put(f"{name}/confidence", start, conf)
                self._put(f"{name}/correct", start, correct)
                continue
            impl = spec.impl(self.task)
            args = _needed(spec, self.task, quantities)
            values = (
                impl.fn(*args, y, reduction="none")
                if impl.uses_target
                else impl.fn(*args, reduction="none")
            )
            self._put(name, start, np.asarray(values, dtype=np.float64))
        self._seen += rows

    def _put(self, key: str, start: int, values: np.ndarray) -> None:
        if key not in self._store:
            shape = (self.n, *values.shape[1:])
            self._store[key] = self._allocate(key, shape, values.dtype)
        self._store[key][start : start + len(values)] = values

    def _read(self, key: str) -> np.ndarray:
        return np.asarray(self._store[key][()])

    def _check_complete(self) -> None:
        if self._seen != self.n:
            raise TrustmlInputError(
                f"StreamingMetrics: {self._seen} rows were scored, expected the split's {self.n}"
            )

    # -- results ------------------------------------------------------------------------------
    def values(self) -> dict[str, float]:
        """Each metric's value on the whole split (that of the in-memory function)."""
        self._check_complete()
        return {name: self._value(name) for name in self.specs}

    def _value(self, name: str) -> float:
        form = self.forms[name]
        if form == "binned":
            return _ece(*(self._read(f"{name}/{k}") for k in ("bins", "confidence", "correct")))
        mean = float(np.mean(self._read(name)))
        return float(np.sqrt(mean)) if form == "sqrt_mean" else mean

    def results(
        self, *, seed: SeedLike, n_boot: int = 1000, level: float = 0.95
    ) -> dict[str, dict[str, Any]]:
        """``{metric: {"value": v, "ci": [lo, hi]}}``: the values and percentile bootstrap
        intervals, equal to ``score`` of the whole split in memory with the same ``seed``.

        Each metric resamples its own per-sample scores with the replicates of
        :func:`~trustml.metrics.bootstrap.resample_indices` (as each in-memory metric draws
        them again from ``seed``); one metric's scores are read at a time.
        """
        self._check_complete()
        n_boot = check_positive_int(n_boot, name="n_boot")
        level = check_probability(level, name="level")
        out: dict[str, dict[str, Any]] = {}
        for name in self.specs:
            value = self._value(name)
            lo, hi = percentile_interval(self._replicates(name, n_boot, seed), level)
            out[name] = {"value": value, "ci": [lo, hi]}
        return out

    def _replicates(self, name: str, n_boot: int, seed: SeedLike) -> np.ndarray:
        """The metric's ``n_boot`` bootstrap replicates."""
        reps = np.empty(n_boot, dtype=np.float64)
        form = self.forms[name]
        if form == "binned":
            bins, conf, correct = (
                self._read(f"{name}/{k}") for k in ("bins", "confidence", "correct")
            )
            for start, block in resample_indices(self.n, n_boot, seed, block_entries=1):
                for j, idx in enumerate(block):
                    reps[start + j] = _ece(bins[idx], conf[idx], correct[idx])
            return reps
        scores = self._read(name)
        for start, block in resample_indices(self.n, n_boot, seed, block_entries=1):
            for j, idx in enumerate(block):
                mean = float(np.mean(scores[idx]))
                reps[start + j] = float(np.sqrt(mean)) if form == "sqrt_mean" else mean
        return reps


def _needed(spec: MetricSpec, task: str, quantities: Mapping[str, Any]) -> list[Any]:
    needs = spec.needs(task)
    missing = [q for q in needs if quantities.get(q) is None]
    if missing:
        raise TrustmlInputError(
            f"metric {spec.name!r} ({task}) needs {', '.join(map(repr, missing))}; got "
            f"{', '.join(k for k, v in quantities.items() if v is not None) or 'nothing'}"
        )
    return [quantities[q] for q in needs]


def _ece(bins: np.ndarray, conf: np.ndarray, correct: np.ndarray) -> float:
    return cls.ece_of_curve(cls.binned_curve(bins, conf, correct, ECE_BINS))
