"""Scoring a test split too large to hold: calibrate and score staged predictions in chunks.

When a method's test-split member predictions would take more than :func:`stream_bytes`
bytes, training writes them to an HDF5 file in the run's staging folder as they are made
(:func:`~trustml.protocol._stream_predict.predict_to_h5`) instead of gathering them on rank
0, and :func:`score_staged` scores them here: the calibrator is fitted on the calibration
split as always (held in memory), then each chunk of test samples is read, calibrated,
written out as the per-sample arrays of ``arrays.h5`` (into an :class:`ArrayStore`, which
the results copy into ``arrays.h5`` in blocks) and scored with
:class:`~trustml.metrics.streaming.StreamingMetrics`.

The numbers are those of the in-memory path (:func:`~trustml.protocol._scoring._score_method`)
for the same predictions: metric values and bootstrap intervals bit for bit from the same
per-sample scores and the same seeded replicates; coverage curves, set coverage and mean
uncertainties exactly. One exception: mixture quantiles (intervals without conformal
calibration) are found by bisection to ``1e-10``, and the bisection stops when the widest
bracket of the samples it is given is that narrow, so a chunk's interval ends may differ from
those of the whole split by less than ``1e-10`` (conformal intervals are exact).

Memory: one chunk of member predictions (:data:`CHUNK_BYTES`, a few times over while it is
calibrated) plus per-sample scalars (targets, and one metric's scores at a time while its
interval is drawn).

Threshold: ``TRUSTML_STREAM_BYTES`` (bytes; ``0`` streams every split) overrides the default
:data:`STREAM_BYTES` (1 GiB). Today's small protocols stay far below it, on the in-memory path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trustml import results_keys as rk
from trustml.distributed import Comm
from trustml.metrics.streaming import StreamingMetrics
from trustml.protocol._calibrate import Calibrated, calibrate
from trustml.protocol._metric_scores import N_BOOT, quantities
from trustml.protocol._stream_predict import StagedPredictions
from trustml.protocol.schema import Protocol, UncertaintySpec
from trustml.report import StoredArray
from trustml.utils.rundir import STAGING_PREFIX
from trustml.utils.seeding import child

__all__ = [
    "CHUNK_BYTES",
    "STREAM_BYTES",
    "STREAM_ENV",
    "ArrayStore",
    "STAGING_NAME",
    "StreamStaging",
    "score_staged",
    "stream_bytes",
]

#: Member predictions of a split above which it is predicted to disk and scored in chunks.
STREAM_BYTES = 1 << 30
#: Environment variable overriding :data:`STREAM_BYTES` (bytes; ``0``: always stream).
STREAM_ENV = "TRUSTML_STREAM_BYTES"
#: Member predictions read and calibrated at a time.
CHUNK_BYTES = 16 << 20
_ROW_CHUNK_BYTES = 1 << 20
_COVERAGE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # as _scoring.COVERAGE_LEVELS


def stream_bytes() -> int:
    """The threshold in force: ``TRUSTML_STREAM_BYTES`` when set, else :data:`STREAM_BYTES`."""
    text = os.environ.get(STREAM_ENV, "").strip()
    if not text:
        return STREAM_BYTES
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{STREAM_ENV}={text!r}: expected a number of bytes") from None
    if value < 0:
        raise ValueError(f"{STREAM_ENV}={text!r}: expected a number of bytes >= 0")
    return value


#: The staging folder of streamed predictions and arrays inside the output folder. Its name
#: starts as every staging folder's does, so the next run removes it if a killed run left it.
STAGING_NAME = f"{STAGING_PREFIX}stream"


class _Remover:
    """Removes ``folder`` when the last thing keeping this object alive is gone."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        weakref.finalize(self, shutil.rmtree, str(folder), True)


class StreamStaging:
    """Where a run's streamed predictions and arrays are staged: ``OUTDIR/.trustml-staging-
    stream`` (a temporary folder without an output folder), created on first use by rank 0.

    The folder is removed once nothing that reads it is left: the staged predictions, and then
    the stored arrays of the results (which the results copy into ``arrays.h5``), each keep
    its remover alive (:attr:`keep`); a killed run's folder is removed by the next run.
    """

    def __init__(self, outdir: Path | None, comm: Comm) -> None:
        self.outdir, self.comm = outdir, comm
        self._path: Path | None = None
        self.keep: _Remover | None = None

    def folder(self) -> Path:
        """The folder; collective on its first call (every rank calls it at the same point)."""
        if self._path is None:
            path = None
            if self.comm.rank == 0:
                if self.outdir is not None:
                    path = self.outdir / STAGING_NAME
                    shutil.rmtree(path, ignore_errors=True)
                    path.mkdir(parents=True)
                else:
                    path = Path(tempfile.mkdtemp(prefix="trustml-stream-"))
                self.keep = _Remover(path)
            self._path = Path(self.comm.bcast(None if path is None else str(path)))
        return self._path


class ArrayStore:
    """Per-sample arrays written by blocks of rows into one HDF5 file, then handed on as
    :class:`~trustml.report._stored.StoredArray` (use as a context manager while writing).

    Scratch datasets (per-sample scores, under ``_scratch/``) live in the same file and are
    never handed on.
    """

    def __init__(self, path: str | Path, *, keep: Any = None) -> None:
        self.path = Path(path)
        self.keep = keep  # handed on to every stored array
        self._f: h5py.File | None = None
        self.keys: list[str] = []

    def __enter__(self) -> ArrayStore:
        self._f = h5py.File(self.path, "a")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    @property
    def file(self) -> h5py.File:
        if self._f is None:
            raise RuntimeError("ArrayStore: open it with 'with store:' before writing")
        return self._f

    def _create(self, key: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
        dtype = np.dtype(dtype)
        row = max(1, int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
        rows = max(1, min(shape[0], _ROW_CHUNK_BYTES // row))
        return self.file.create_dataset(
            key, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]), track_times=False
        )

    def put(self, key: str, n: int, start: int, values: Any) -> None:
        """Write ``values`` at rows ``start ..`` of the ``n``-row array ``key``."""
        values = np.asarray(values)
        if key not in self.file:
            self._create(key, (n, *values.shape[1:]), values.dtype)
            self.keys.append(key)
        self.file[key][start : start + len(values)] = values

    def allocator(self, prefix: str) -> Any:
        """An ``allocate`` for :class:`~trustml.metrics.streaming.StreamingMetrics`."""

        def allocate(name: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
            return self._create(f"_scratch/{prefix}/{name}", shape, dtype)

        return allocate

    def read(self, key: str) -> np.ndarray:
        return np.asarray(self.file[key][()])

    def stored(self, keys: list[str]) -> dict[str, StoredArray]:
        """The arrays ``keys`` (written, and the file closed) as stored arrays."""
        return {key: StoredArray(self.path, key, keep=self.keep) for key in keys}


def score_staged(
    protocol: Protocol,
    spec: UncertaintySpec,
    pred_cal: Any,
    y_cal: np.ndarray,
    staged: StagedPredictions,
    y_test: np.ndarray,
    group: str,
    store: ArrayStore,
    *,
    targets: bool,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[dict[str, Any], dict[str, StoredArray], Calibrated]:
    """Calibrate one method on the calibration split and score its staged test split.

    The streaming twin of :func:`~trustml.protocol._scoring._score_method`: the same summary
    part (``method``, ``settings``, ``metrics``, ``calibration``, ``uncertainty`` and, for
    regression, ``coverage_curve``) and the same arrays in ``group``, plus (``targets``) the
    targets or labels, as stored arrays of ``store``. The returned :class:`Calibrated` holds the
    calibrated predictive of the first test sample only (``test``), and the fitted
    ``transform``.
    """
    task, n = protocol.task, staged.n
    level = 1.0 - protocol.calibration.alpha
    cal = calibrate(protocol.calibration, pred_cal, y_cal, staged.first(1))
    cal_summary: dict[str, Any] = {
        "method": protocol.calibration.method,
        "alpha": protocol.calibration.alpha,
        **cal.params,
    }
    conformal_sets = task == "classification" and protocol.calibration.method == "conformal"
    metrics = StreamingMetrics(
        protocol.metric_names, task, n, allocate=store.allocator(group.replace("/", "."))
    )
    covered = np.zeros((2, len(_COVERAGE_LEVELS)), dtype=np.int64)  # raw, calibrated
    in_set = set_size = 0
    target = rk.TARGETS if task == "regression" else rk.LABELS
    entropy_key = f"_scratch/{group.replace('/', '.')}/entropy"
    with store:
        for a, b in staged.chunks(chunk_bytes):
            raw = staged.read(a, b)
            calibrated = cal.transform(raw)
            y = y_test[a:b]
            q = quantities(calibrated, level)
            metrics.update(a, y, **q)
            put = {rk.path(group, target): y} if targets else {}
            if task == "regression":
                put.update({rk.path(group, k): v for k, v in q.items()})
                put[rk.path(group, rk.EPISTEMIC_VAR)] = calibrated.epistemic_var
                put[rk.path(group, rk.ALEATORIC_VAR)] = calibrated.aleatoric_var
                put[rk.path(group, rk.PIT)] = calibrated.cdf(y)
                put[rk.path(group, rk.PIT_RAW)] = raw.cdf(y)
                for j, lv in enumerate(_COVERAGE_LEVELS):
                    for i, pred in enumerate((raw, calibrated)):
                        lo, hi = pred.interval(lv)
                        covered[i, j] += int(np.sum((y >= lo) & (y <= hi)))
            else:
                put[rk.path(group, rk.PROBS)] = calibrated.probs
                put[rk.path(group, rk.PROBS_RAW)] = raw.probs
                put[rk.path(group, rk.MUTUAL_INFORMATION)] = calibrated.mutual_information
                store.put(entropy_key, n, a, calibrated.entropy)
                if conformal_sets:
                    sets = calibrated.predict_set()
                    put[rk.path(group, rk.PREDICTION_SETS)] = sets
                    in_set += int(np.sum(sets[np.arange(len(y)), y]))
                    set_size += int(np.sum(sets.sum(axis=1)))
            for key, value in put.items():
                store.put(key, n, a, value)
        part: dict[str, Any] = {"method": spec.method, "settings": spec.settings()}
        if task == "regression":
            cal_summary["level"] = level
            size = y_test.size  # coverage counts every target of every sample, as np.mean
            part["coverage_curve"] = {
                "nominal": list(_COVERAGE_LEVELS),
                "empirical_raw": [float(c / size) for c in covered[0]],
                "empirical": [float(c / size) for c in covered[1]],
            }
            ale = store.read(rk.path(group, rk.ALEATORIC_VAR))
            epi = store.read(rk.path(group, rk.EPISTEMIC_VAR))
            part["uncertainty"] = {
                "mean_aleatoric_var": ale.mean(axis=0).tolist(),
                "mean_epistemic_var": epi.mean(axis=0).tolist(),
            }
            del ale, epi
        else:
            if conformal_sets:
                cal_summary["level"] = level
                cal_summary["set_coverage"] = float(in_set / n)
                cal_summary["mean_set_size"] = float(set_size / n)
            mi = store.read(rk.path(group, rk.MUTUAL_INFORMATION))
            part["uncertainty"] = {
                "mean_entropy": float(store.read(entropy_key).mean()),
                "mean_mutual_information": float(mi.mean()),
            }
            del mi
        boot_seed = child(protocol.seed, "bootstrap")
        part["metrics"] = metrics.results(seed=boot_seed, n_boot=N_BOOT)
        part["calibration"] = cal_summary
        keys = [k for k in store.keys if k.startswith(f"{group}/")]
    return part, store.stored(keys), cal
