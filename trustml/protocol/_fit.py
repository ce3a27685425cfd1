"""The training stage: fit every uncertainty method on the training split and predict the
calibration and test splits, the levels of every shift ladder and, with the primary method,
the single shifted test sets.

Members, predictions and their shards are spread over the ranks; the predictions are
gathered on rank 0 (``None`` elsewhere).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustml.distributed import Comm
from trustml.protocol import _methods
from trustml.protocol._parallel import PREDICT_BATCH, predict_sharded
from trustml.protocol._plan import Plan
from trustml.protocol._search import fit_default
from trustml.protocol._shifts import predict_ladders
from trustml.protocol._stages import run_stage
from trustml.protocol._stream_eval import StreamStaging, stream_bytes
from trustml.protocol._stream_predict import StagedPredictions, predict_to_h5
from trustml.protocol.schema import Protocol, UncertaintySpec
from trustml.uq import Predictive

__all__ = ["Predictions", "Trained", "fit_and_predict"]


@dataclass(frozen=True)
class Predictions:
    """One method's raw predictive of the calibration and test splits (``None`` off rank 0).

    A test split whose member predictions exceed
    :func:`~trustml.protocol._stream_eval.stream_bytes` is not gathered: ``test`` is then
    the :class:`~trustml.protocol._stream_predict.StagedPredictions` it was written to (on
    every rank), which scoring reads in chunks.
    """

    calibration: Predictive | None
    test: Predictive | StagedPredictions | None


@dataclass(frozen=True)
class Trained:
    """What training hands on.

    Attributes
    ----------
    models : dict
        Method label -> the fitted model (identical on every rank).
    predictions : dict
        Method label -> its :class:`Predictions`.
    shifts : dict
        Shifted test set name -> the primary method's raw predictive (``None`` off rank 0).
    ladders : dict
        Shift ladder name -> per level, method label -> its raw predictive (``None`` off
        rank 0).
    defaults : dict
        Label of a method with a hyper-parameter search -> the (calibration, test) raw
        predictives of the plain default-configuration ensemble it is compared with.
    timings : dict
        ``"<label>.fit"`` and ``"<label>.predict"`` -> seconds.
    """

    models: dict[str, Any]
    predictions: dict[str, Predictions]
    shifts: dict[str, Predictive | None]
    timings: dict[str, float]
    ladders: dict[str, list[dict[str, Predictive | None]]] = field(default_factory=dict)
    defaults: dict[str, tuple[Predictive | None, Predictive | None]] = field(default_factory=dict)


def fit_and_predict(
    protocol: Protocol,
    plan: Plan,
    *,
    fingerprint: str,
    comm: Comm,
    checkpoint_dir: Path | None,
    progress: bool,
    outdir: Path | None = None,
) -> Trained:
    """Fit every method of the protocol (in its order) and predict with it.

    Finished ensemble members are checkpointed under ``checkpoint_dir/<label>/`` (when given).
    A test split too large to gather (:func:`_streamed`) is predicted into a staging folder
    of ``outdir`` (default: the folder above ``checkpoint_dir``; a temporary folder when
    neither is given).
    """
    if outdir is None and checkpoint_dir is not None:
        outdir = checkpoint_dir.parent
    staging = StreamStaging(outdir, comm)
    ds, splits = plan.dataset, plan.splits
    timings: dict[str, float] = {}
    models: dict[str, Any] = {}
    predictions: dict[str, Predictions] = {}
    defaults: dict[str, tuple[Predictive | None, Predictive | None]] = {}
    train = ds.subset(splits["train"])
    validation = ds.subset(splits["validation"]) if "validation" in splits else None
    for i, spec in enumerate(protocol.methods):
        t0 = time.perf_counter()
        with run_stage(f"training {spec.name!r}"):
            model = _methods.fit_method(
                protocol, i, train=train, make_model=plan.make_model, device=plan.device,
                fingerprint=fingerprint, comm=comm, checkpoint_dir=checkpoint_dir,
                progress=progress, validation=validation,
            )  # fmt: skip
        t1 = time.perf_counter()
        opts = _methods.predict_options(spec)
        with run_stage(f"predicting with {spec.name!r}"):
            test: Predictive | StagedPredictions | None
            if _streamed(spec, len(splits["test"]), plan.n_targets, protocol.task):
                folder = staging.folder()
                test = predict_to_h5(
                    model, ds, splits["test"], folder / f"{spec.name}.test.h5", comm=comm,
                    batch_size=PREDICT_BATCH, keep=staging.keep, **opts,
                )  # fmt: skip
            else:
                test = predict_sharded(model, ds, splits["test"], comm=comm, **opts)
            predictions[spec.name] = Predictions(
                predict_sharded(model, ds, splits["calibration"], comm=comm, **opts), test
            )
        models[spec.name] = model
        timings[f"{spec.name}.fit"] = round(t1 - t0, 2)
        timings[f"{spec.name}.predict"] = round(time.perf_counter() - t1, 2)
        if spec.search is not None:
            t2 = time.perf_counter()
            with run_stage(f"training the default ensemble {spec.name!r} is compared with"):
                defaults[spec.name] = fit_default(
                    protocol, i, ds=ds, splits=splits, make_model=plan.make_model,
                    device=plan.device, fingerprint=fingerprint, comm=comm,
                    checkpoint_dir=checkpoint_dir, progress=progress,
                )  # fmt: skip
            timings[f"{spec.name}.default"] = round(time.perf_counter() - t2, 2)
    primary = protocol.primary
    with run_stage("predicting the shifted test sets"):
        shifts = {
            name: predict_sharded(
                models[primary.name],
                sds,
                np.arange(len(sds)),
                comm=comm,
                **_methods.predict_options(primary),
            )  # fmt: skip
            for name, sds in plan.shifts.items()
        }
    ladders = {}
    if plan.ladders:
        t0 = time.perf_counter()
        with run_stage("predicting the shift ladders"):
            ladders = predict_ladders(protocol, plan.ladders, models, comm)
        timings["ladders.predict"] = round(time.perf_counter() - t0, 2)
    return Trained(models, predictions, shifts, timings, ladders, defaults)


def _streamed(spec: UncertaintySpec, n_test: int, width: int, task: str) -> bool:
    """Whether the method's test-split member predictions (``K x N x W`` float64, twice for
    regression's means and stds) exceed :func:`~trustml.protocol._stream_eval.stream_bytes`.

    ``K`` is the method's members or posterior draws. A method with a hyper-parameter search
    is never streamed (its comparison with the default ensemble scores in memory).
    """
    if spec.search is not None:
        return False
    k = spec.draws or spec.members
    return 8 * k * n_test * width * (2 if task == "regression" else 1) > stream_bytes()
