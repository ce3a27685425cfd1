"""Run a validated protocol end to end: data -> splits -> model -> uncertainty -> calibration
-> metrics -> attribution -> acceptance -> results.

Everything a protocol can get wrong is checked before training starts, so an invalid protocol
fails in seconds and writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustml.calibration import IsotonicRecalibration, SplitConformal, TemperatureScaling
from trustml.data import (
    BaseDataset,
    HDF5Dataset,
    check_targets_vary,
    load_builtin,
    split_indices,
)
from trustml.distributed import Comm, abort_on_error, get_comm
from trustml.exceptions import (
    ProtocolError,
    RunFailed,
    RunInterrupted,
    TrustmlInputError,
)
from trustml.models import build_from_factory, build_model, model_summary
from trustml.protocol import _methods, _scoring, _sizes
from trustml.protocol._attribution import attribute_and_check
from trustml.protocol._parallel import predict_sharded, write_shared
from trustml.protocol._stages import claimed, left_behind, run_stage
from trustml.protocol.schema import HDF5Source, Protocol, UncertaintySpec
from trustml.report import RunResults
from trustml.uq import Predictive
from trustml.utils.rundir import check_outdir
from trustml.utils.seeding import child

__all__ = ["RunOutcome", "run_protocol", "run_stage", "resolve_outdir", "dataset_fingerprint"]

log = logging.getLogger("trustml")

#: Calibration methods of protocol v1 this release runs per task; the schema knows the rest.
_AVAILABLE = {
    "calibration.method": {
        "regression": ("conformal", "isotonic", "none"),
        "classification": ("conformal", "temperature", "none"),
    },
}
COVERAGE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class RunOutcome:
    """What :func:`run_protocol` returns: the results (rank 0) and where they were written."""

    results: RunResults | None
    outdir: Path | None
    verdict: str

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@dataclass
class _Plan:
    """Everything resolved from the protocol before any training."""

    dataset: BaseDataset
    splits: dict[str, np.ndarray]
    make_model: Any
    output_dim: int
    n_targets: int
    target_names: list[str]
    device: torch.device
    shifts: dict[str, BaseDataset]


def resolve_outdir(protocol: Protocol, out: str | Path | None) -> Path:
    """``--out`` wins, then ``report.out``, then ``reports/<name>``."""
    if out is not None:
        if not str(out).strip():  # Path("") would be the current directory
            raise TrustmlInputError("--out: an empty path; name the folder to write the report to")
        return Path(out)
    if protocol.report.out:
        return Path(protocol.report.out)
    return Path("reports") / protocol.name


def _device(protocol: Protocol, comm: Comm) -> torch.device:
    if protocol.device == "cuda" and not torch.cuda.is_available():
        raise ProtocolError("'cuda' was asked for but no CUDA device is available", key="device")
    if protocol.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    # One GPU per rank: rank r on a node uses local GPU r mod n_gpus.
    return torch.device("cuda", comm.local_rank % torch.cuda.device_count())


def _check_available(protocol: Protocol) -> None:
    cal = _AVAILABLE["calibration.method"][protocol.task]
    if protocol.calibration.method not in cal:
        raise ProtocolError(
            f"{protocol.calibration.method!r} is not available for {protocol.task} in this "
            f"trustml release yet; available: {', '.join(cal)}",
            key="calibration.method",
        )


def _open_hdf5(h: HDF5Source, base_dir: Path) -> BaseDataset:
    path = Path(h.path)
    if not path.is_absolute():
        path = base_dir / path
    return HDF5Dataset(path, inputs=h.inputs, targets=h.targets, groups=h.groups, validate=True)


def _load_dataset(protocol: Protocol, base_dir: Path) -> BaseDataset:
    spec = protocol.data
    if spec.builtin is not None:
        return load_builtin(spec.builtin, seed=child(protocol.seed, "data"), **spec.options)
    return _open_hdf5(spec.hdf5, base_dir)


def _load_shifts(protocol: Protocol, base_dir: Path, main: BaseDataset) -> dict[str, BaseDataset]:
    """The distribution-shifted test sets, checked against the main dataset's shapes."""
    out: dict[str, BaseDataset] = {}
    for name, spec in protocol.data.shifts.items():
        key = f"data.shifts.{name}"
        if spec.hdf5 is not None:
            ds = _open_hdf5(spec.hdf5, base_dir)
        else:
            builtin = spec.builtin or protocol.data.builtin
            if builtin is None:
                raise ProtocolError("give 'builtin' or 'hdf5' (the main data is not a builtin)", key=key)
            options = {**(protocol.data.options if builtin == protocol.data.builtin else {}), **spec.options}
            try:
                ds = load_builtin(builtin, seed=child(protocol.seed, f"shift/{name}"), **options)
            except TrustmlInputError as exc:
                raise ProtocolError(str(exc), key=key) from None
        if tuple(ds.input_shape) != tuple(main.input_shape) or ds.task_hint != main.task_hint:
            raise ProtocolError(
                f"inputs {list(ds.input_shape)} ({ds.task_hint}) do not match the main data's "
                f"{list(main.input_shape)} ({main.task_hint})",
                key=key,
            )
        out[name] = ds
    return out


def dataset_fingerprint(protocol: Protocol, base_dir: str | Path = ".") -> str:
    """The fingerprint of the protocol's main dataset (what ``trustml verify`` checks first)."""
    return _load_dataset(protocol, Path(base_dir)).fingerprint()


def _split(protocol: Protocol, ds: BaseDataset) -> dict[str, np.ndarray]:
    split = protocol.data.split
    fractions = {"train": split.train, "calibration": split.calibration, "test": split.test}
    if split.order == "temporal":
        from trustml.data import temporal_split_indices

        return temporal_split_indices(len(ds), fractions, gap=split.gap, groups=ds.groups)
    return split_indices(len(ds), fractions, seed=child(protocol.seed, "split"), groups=ds.groups)


#: More classes than this and than samples means the labels are not 0..C-1 class indices.
_MAX_CLASSES = 100_000


def _count_classes(ds: BaseDataset) -> int:
    top = -1
    for _, yb, _ in ds.iter_batches(batch_size=4096):
        if np.any(yb < 0):
            raise TrustmlInputError(f"{ds.source}: class labels must be >= 0")
        top = max(top, int(yb.max()))
    if top + 1 > max(_MAX_CLASSES, len(ds)):
        raise TrustmlInputError(
            f"{ds.source}: class labels run up to {top}, but there are only {len(ds)} samples; "
            "labels must be class indices 0..C-1"
        )
    return top + 1


def _plan(protocol: Protocol, base_dir: Path, comm: Comm) -> _Plan:
    _check_available(protocol)
    device = _device(protocol, comm)
    _sizes.check_data_size(protocol)
    ds = _load_dataset(protocol, base_dir)
    if ds.task_hint != protocol.task:
        raise ProtocolError(
            f"the data's targets look like {ds.task_hint} ({ds.source}), but task is {protocol.task!r}",
            key="task",
        )
    if protocol.task == "regression":
        n_targets = int(np.prod(ds.target_shape)) if ds.target_shape else 1
        output_dim = 2 * n_targets
    else:
        n_targets = _count_classes(ds)
        output_dim = n_targets
    names = list(getattr(ds, "target_names", None) or [f"y{i}" for i in range(n_targets)])
    spec = protocol.attribution
    if spec is not None and protocol.task == "regression" and spec.target >= n_targets:
        raise ProtocolError(
            f"must be < {n_targets} (the number of targets), got {spec.target}",
            key="attribution.target",
        )
    if spec is not None and "localization" in spec.checks and not getattr(ds, "has_masks", False):
        raise ProtocolError(
            f"'localization' needs ground-truth masks, and {ds.source} has none",
            key="attribution.checks",
        )
    splits = _split(protocol, ds)
    for name, idx in splits.items():
        if len(idx) < 2:
            raise ProtocolError(
                f"the {name} split has {len(idx)} samples; use more data or a larger fraction",
                key="data.split",
            )
    if protocol.task == "regression":
        check_targets_vary(ds, splits["train"], split="train")
    m = protocol.model

    def make_model() -> torch.nn.Module:
        if m.builtin is not None:
            return build_model(
                m.builtin, input_shape=tuple(ds.input_shape), output_dim=output_dim, **m.options
            )
        return build_from_factory(
            m.factory, input_shape=tuple(ds.input_shape), output_dim=output_dim, **m.options
        )

    _sizes.check_model_size(protocol, make_model, comm)
    try:
        with run_stage("building the model"):
            probe = make_model()
    except TrustmlInputError as exc:
        raise ProtocolError(str(exc), key="model") from None
    x0, _ = ds.read(splits["train"][:2])
    with torch.no_grad():
        try:
            out = probe(torch.as_tensor(x0, dtype=torch.float32))
        except Exception as exc:  # a user's model failing on the data is a protocol error
            raise ProtocolError(
                f"the model fails on inputs of shape {list(x0.shape)}: {exc}".splitlines()[0],
                key="model",
            ) from None
    if out.ndim != 2 or out.shape[1] != output_dim:
        expected = (
            f"2*D = {output_dim} (means, then raw scales)"
            if protocol.task == "regression"
            else f"{output_dim} logits"
        )
        raise ProtocolError(
            f"the model outputs shape {list(out.shape)}; expected [N, {expected}]", key="model"
        )
    if spec is not None and "gradcam" in spec.methods:
        if not any(isinstance(mod, torch.nn.modules.conv._ConvNd) for mod in probe.modules()):
            raise ProtocolError(
                f"'gradcam' explains a convolution layer, and the model "
                f"({m.builtin or m.factory}) has none; choose another attribution method",
                key="attribution.methods",
            )
    for i in range(len(protocol.methods)):
        _methods.check_method(protocol, i, probe)
    shifts = _load_shifts(protocol, base_dir, ds)
    return _Plan(ds, splits, make_model, output_dim, n_targets, names, device, shifts)


def run_protocol(
    protocol: Protocol,
    protocol_text: str,
    *,
    base_dir: str | Path = ".",
    out: str | Path | None = None,
    write: bool = True,
    progress: bool | None = None,
    command: list[str] | None = None,
    comm: Any = None,
    force: bool = False,
) -> RunOutcome:
    """Run ``protocol`` and (by default) write its report atomically.

    Parameters
    ----------
    protocol : Protocol
        A validated protocol (see :func:`trustml.protocol.load_protocol`).
    protocol_text : str
        The protocol file's text, stored with the results.
    base_dir : path
        Relative HDF5 paths in the protocol resolve against it (the protocol file's folder).
    out : path, optional
        Output folder; see :func:`resolve_outdir`. Finished ensemble members are checkpointed
        under ``OUT/checkpoints/<method label>/``; running the same protocol again resumes
        from them.
    write : bool
        Write the report folder (``False`` returns the results only, and checkpoints nothing).
    progress : bool, optional
        Progress bars; default only on a terminal (and only on rank 0).
    comm : mpi4py communicator or trustml Comm, optional
        Default: ``MPI.COMM_WORLD`` when started by ``mpiexec``/``srun``, else one process.
        Members, predictions and attributions are spread over the ranks; the numbers do not
        depend on the number of ranks. Rank 0 alone holds the results and writes the report.
    force : bool
        Write into an output folder that is neither new, empty nor a trustml run folder
        (only trustml's own files in it are replaced; see :mod:`trustml.utils.rundir`).

    Returns
    -------
    RunOutcome
        ``results`` is ``None`` on ranks other than 0; ``verdict`` is known on every rank.

    Raises
    ------
    TrustmlInputError
        The protocol, its data or the output folder is invalid (nothing is written).
    RunFailed
        The run could not finish; the message names the stage, the cause and what was kept.
    RunInterrupted
        Ctrl-C (or SIGTERM, under the CLI); the message says what was kept.
    """
    comm = get_comm(comm)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _check_threads(comm)
    started, wall_start = time.perf_counter(), time.time()
    outdir = check_outdir(resolve_outdir(protocol, out), force=force) if write else None
    try:
        # Every rank validates alike: an invalid protocol fails on all of them, before any work.
        plan = _plan(protocol, Path(base_dir), comm)
        with claimed(outdir, force, comm), abort_on_error(comm):
            return _execute(
                protocol, protocol_text, plan, outdir, comm, progress, command,
                Path(base_dir), started,
            )  # fmt: skip
    except RunFailed as exc:
        raise RunFailed(exc.stage, exc.cause, left=left_behind(outdir, wall_start)) from exc.__cause__
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; {left_behind(outdir, wall_start)}") from None


def _check_threads(comm: Comm) -> str | None:
    """Warn (rank 0) when the ranks on one node ask for more torch threads than it has cores.

    Oversubscribed ranks spin-wait on each other's cores and run many times slower. Returns
    the warning, or ``None``.
    """
    if comm.size == 1:
        return None
    threads = torch.get_num_threads()
    per_node = max(comm.allgather(comm.local_rank)) + 1
    cores = os.cpu_count() or 1
    if threads * per_node <= cores:
        return None
    message = (
        f"{per_node} ranks on a node of {cores} cores each use {threads} torch threads "
        f"({threads * per_node} threads): set OMP_NUM_THREADS={max(1, cores // per_node)} "
        "so that ranks do not slow each other down (results are identical across rank counts "
        "at equal threads per rank)"
    )
    if comm.rank == 0:
        log.warning(message)
    return message


def _execute(
    protocol: Protocol,
    protocol_text: str,
    plan: _Plan,
    outdir: Path | None,
    comm: Comm,
    progress: bool | None,
    command: list[str] | None,
    base_dir: Path,
    started: float,
) -> RunOutcome:
    ds, splits = plan.dataset, plan.splits
    fingerprint = comm.bcast(ds.fingerprint() if comm.rank == 0 else None)
    show = bool(progress if progress is not None else sys.stderr.isatty()) and comm.rank == 0
    timings: dict[str, float] = {}

    fitted: dict[str, Any] = {}
    predictions: dict[str, tuple[Predictive | None, Predictive | None]] = {}
    train = ds.subset(splits["train"])
    for i, spec in enumerate(protocol.methods):
        t0 = time.perf_counter()
        with run_stage(f"training {spec.name!r}"):
            model = _methods.fit_method(
                protocol, i, train=train, make_model=plan.make_model, device=plan.device,
                fingerprint=fingerprint, comm=comm,
                checkpoint_dir=outdir / "checkpoints" if outdir is not None else None,
                progress=show,
            )  # fmt: skip
        t1 = time.perf_counter()
        opts = _methods.predict_options(spec)
        with run_stage(f"predicting with {spec.name!r}"):
            predictions[spec.name] = (
                predict_sharded(model, ds, splits["calibration"], comm=comm, **opts),
                predict_sharded(model, ds, splits["test"], comm=comm, **opts),
            )
        fitted[spec.name] = model
        timings[f"{spec.name}.fit"] = round(t1 - t0, 2)
        timings[f"{spec.name}.predict"] = round(time.perf_counter() - t1, 2)
    primary = protocol.primary
    with run_stage("predicting the shifted test sets"):
        shift_predictions = {
            name: predict_sharded(
                fitted[primary.name], sds, np.arange(len(sds)), comm=comm,
                **_methods.predict_options(primary),
            )  # fmt: skip
            for name, sds in plan.shifts.items()
        }

    # Calibration and scoring need every prediction: rank 0 alone from here, but attribution,
    # which is sharded again, needs the classes it explains.
    stage: dict[str, Any] | None = None
    if comm.rank == 0:
        t0 = time.perf_counter()
        with run_stage("scoring"):
            stage = _score(protocol, plan, predictions, shift_predictions, fitted)
        timings["scoring"] = round(time.perf_counter() - t0, 2)
    attribution_summary = None
    if protocol.attribution is not None:
        t0 = time.perf_counter()
        targets = comm.bcast(stage["attribution_targets"] if stage is not None else None)
        with run_stage("attribution"):
            attribution_summary = attribute_and_check(
                protocol, plan.dataset, plan.splits["test"], fitted[primary.name], targets,
                comm=comm, arrays=stage["arrays"] if stage is not None else None,
                target_names=plan.target_names,
            )  # fmt: skip
        timings["attribution"] = round(time.perf_counter() - t0, 2)

    verdict = None
    results = None
    if comm.rank == 0:
        assert stage is not None
        by_label = {label: part["metrics"] for label, part in stage["methods"].items()}
        acceptance = _scoring.acceptance(protocol.acceptance, by_label, primary.name)
        verdict = "pass" if all(a["passed"] for a in acceptance) else "fail"
        summary = _summary(protocol, plan, fitted, stage, acceptance, verdict, fingerprint)
        if attribution_summary is not None:
            summary["attribution"] = attribution_summary
        manifest = _manifest(protocol, protocol_text, fingerprint, plan.device, command)
        manifest.update(
            {
                "protocol_dir": str(base_dir.resolve()),
                "mpi_world_size": comm.size,
                "timings_s": timings,
                "wall_time_s": round(time.perf_counter() - started, 2),
            }
        )
        extras = {}
        if outdir is not None:  # the posteriors of Bayesian methods, for ArviZ users
            for label, model in fitted.items():
                data = _methods.posterior_netcdf(model)
                if data is not None:
                    extras[f"posterior_{label}.nc"] = data
        results = RunResults(
            summary=summary,
            arrays=stage["arrays"],
            manifest=manifest,
            protocol_text=protocol_text,
            extras=extras,
        )
    if outdir is not None:  # every rank draws part of the report's figures
        with run_stage("writing the report"):
            write_shared(results, outdir, comm=comm)
    verdict = comm.bcast(verdict)
    return RunOutcome(results, outdir, verdict)


def _quantities(pred: Predictive, level: float | None) -> dict[str, np.ndarray]:
    """What the metrics read from a predictive (regression: at the interval ``level``)."""
    if pred.task == "classification":
        return {"probs": pred.probs}
    lower, upper = pred.interval(level)
    return {"mean": pred.mean, "std": pred.std, "lower": lower, "upper": upper}


def _score_method(
    protocol: Protocol,
    spec: UncertaintySpec,
    pred_cal: Predictive,
    pred_test: Predictive,
    y_cal: np.ndarray,
    y_test: np.ndarray,
    prefix: str,
) -> tuple[dict[str, Any], dict[str, np.ndarray], Predictive, Any]:
    """Calibrate one method on the calibration split and score it on the test split.

    Returns the method's summary part, its arrays (under ``prefix``), the calibrated test
    predictive and the fitted calibrator (``Predictive -> Predictive``).
    """
    task = protocol.task
    level = 1.0 - protocol.calibration.alpha if task == "regression" else None
    calibrated, transform, info = _calibrate(protocol, pred_cal, y_cal, pred_test)
    cal_summary: dict[str, Any] = {
        "method": protocol.calibration.method,
        "alpha": protocol.calibration.alpha,
        **info,
    }
    arrays: dict[str, np.ndarray] = {}
    quantities = _quantities(calibrated, level)
    part: dict[str, Any] = {"method": spec.method, "settings": spec.settings()}
    if task == "regression":
        cal_summary["level"] = level
        arrays.update({f"{prefix}/{k}": v for k, v in quantities.items()})
        arrays[f"{prefix}/epistemic_var"] = calibrated.epistemic_var
        arrays[f"{prefix}/aleatoric_var"] = calibrated.aleatoric_var
        arrays[f"{prefix}/pit"] = calibrated.cdf(y_test)
        arrays[f"{prefix}/pit_raw"] = pred_test.cdf(y_test)
        part["coverage_curve"] = _coverage_curve(pred_test, calibrated, y_test)
        part["uncertainty"] = {
            "mean_aleatoric_var": calibrated.aleatoric_var.mean(axis=0).tolist(),
            "mean_epistemic_var": calibrated.epistemic_var.mean(axis=0).tolist(),
        }
    else:
        arrays[f"{prefix}/probs"] = calibrated.probs
        arrays[f"{prefix}/probs_raw"] = pred_test.probs
        arrays[f"{prefix}/mutual_information"] = calibrated.mutual_information
        if protocol.calibration.method == "conformal":
            sets = calibrated.predict_set()
            arrays[f"{prefix}/prediction_sets"] = sets
            cal_summary["level"] = 1.0 - protocol.calibration.alpha
            cal_summary["set_coverage"] = float(np.mean(sets[np.arange(len(y_test)), y_test]))
            cal_summary["mean_set_size"] = float(np.mean(sets.sum(axis=1)))
        part["uncertainty"] = {
            "mean_entropy": float(calibrated.entropy.mean()),
            "mean_mutual_information": float(calibrated.mutual_information.mean()),
        }
    boot_seed = child(protocol.seed, "bootstrap")
    part["metrics"] = _scoring.score(protocol.metric_names, y_test, quantities, seed=boot_seed)
    part["calibration"] = cal_summary
    return part, arrays, calibrated, transform


def _score(
    protocol: Protocol,
    plan: _Plan,
    predictions: dict[str, tuple[Predictive | None, Predictive | None]],
    shift_predictions: dict[str, Predictive | None],
    fitted: dict[str, Any],
) -> dict[str, Any]:
    """Calibrate every method on the calibration split, score the test split and the shifted
    test sets, and the reference predictors (rank 0)."""
    ds, splits, task = plan.dataset, plan.splits, protocol.task
    sequences = task == "regression" and ds.layout == "NTF"
    scans = {
        name: _scoring.scan_split(ds, idx, task, last_step=sequences)
        for name, idx in splits.items()
    }
    ys = {name: scan[0] for name, scan in scans.items()}
    y_cal, y_test, y_train = ys["calibration"], ys["test"], ys["train"]
    arrays: dict[str, np.ndarray] = {}
    arrays["test/targets" if task == "regression" else "test/labels"] = y_test
    methods: dict[str, Any] = {}
    primary = protocol.primary.name
    transforms: dict[str, Any] = {}
    calibrated_primary: Predictive | None = None
    for i, spec in enumerate(protocol.methods):
        pred_cal, pred_test = predictions[spec.name]
        assert pred_cal is not None and pred_test is not None
        prefix = "test" if i == 0 else f"methods/{spec.name}/test"
        part, part_arrays, calibrated, transform = _score_method(
            protocol, spec, pred_cal, pred_test, y_cal, y_test, prefix
        )
        part["primary"] = i == 0
        part["index"] = i  # results.json sorts keys: this keeps the protocol's order
        part["history"] = _methods.history(fitted[spec.name])
        diag = _methods.diagnostics(fitted[spec.name], ds.read(splits["test"][:4])[0], spec.draws)
        if diag is not None:
            part["diagnostics"] = diag
        methods[spec.name] = part
        arrays.update(part_arrays)
        transforms[spec.name] = transform
        if i == 0:
            calibrated_primary = calibrated
    assert calibrated_primary is not None

    level = 1.0 - protocol.calibration.alpha
    boot_seed = child(protocol.seed, "bootstrap")
    reference: dict[str, Any] = {}
    if task == "regression":
        base = _scoring.regression_baseline(y_train, len(y_test), level)
        reference["climatology"] = {
            "description": "the training targets' mean and std for every test sample",
            "metrics": _scoring.score(protocol.metric_names, y_test, base, seed=boot_seed),
        }
        n_targets = y_train.shape[1]
        if sequences and ds.input_shape[-1] >= n_targets:
            last = {name: scan[2] for name, scan in scans.items()}
            pers = _scoring.persistence_baseline(last["train"], y_train, last["test"], level)
            reference["persistence"] = {
                "description": "the last input time step, with the training persistence-error std",
                "metrics": _scoring.score(protocol.metric_names, y_test, pers, seed=boot_seed),
            }
    else:
        base = _scoring.classification_baseline(y_train, len(y_test), plan.n_targets)
        reference["class_frequency"] = {
            "description": "the training class frequencies for every test sample",
            "metrics": _scoring.score(protocol.metric_names, y_test, base, seed=boot_seed),
        }
    baseline_name = "climatology" if task == "regression" else "class_frequency"

    shifts: dict[str, Any] = {}
    for name, pred in shift_predictions.items():
        assert pred is not None
        sds = plan.shifts[name]
        y_shift = _scoring.scan_split(sds, np.arange(len(sds)), task)[0]
        calibrated = transforms[primary](pred)
        q = _quantities(calibrated, level if task == "regression" else None)
        entry: dict[str, Any] = {
            "n": len(sds),
            "source": sds.source,
            "metrics": _scoring.score(protocol.metric_names, y_shift, q, seed=boot_seed),
        }
        if task == "regression":
            entry["mean_std"] = float(calibrated.std.mean())
            entry["mean_epistemic_var"] = float(calibrated.epistemic_var.mean())
            arrays[f"shifts/{name}/targets"] = y_shift
            arrays.update({f"shifts/{name}/{k}": v for k, v in q.items()})
            arrays[f"shifts/{name}/epistemic_var"] = calibrated.epistemic_var
        else:
            entry["mean_entropy"] = float(calibrated.entropy.mean())
            entry["mean_mutual_information"] = float(calibrated.mutual_information.mean())
            arrays[f"shifts/{name}/labels"] = y_shift
            arrays[f"shifts/{name}/probs"] = calibrated.probs
        shifts[name] = entry

    attribution_targets = None
    if protocol.attribution is not None:
        n = min(protocol.attribution.n_examples, len(splits["test"]))
        if task == "regression":
            attribution_targets = np.full(n, protocol.attribution.target)
        else:  # explain the class the calibrated model predicts
            attribution_targets = calibrated_primary.probs[:n].argmax(axis=1)
    hashes = {name: scan[1] for name, scan in scans.items()}
    return {
        "arrays": arrays,
        "methods": methods,
        "reference": reference,
        "baseline_metrics": reference[baseline_name]["metrics"],
        "shifts": shifts,
        "duplicates": _scoring.duplicates(hashes),
        "target_stats": _scoring.target_stats(ys, task, plan.target_names, plan.n_targets),
        "attribution_targets": attribution_targets,
    }


def _summary(
    protocol: Protocol,
    plan: _Plan,
    fitted: dict[str, Any],
    stage: dict[str, Any],
    acceptance: list[dict[str, Any]],
    verdict: str,
    fingerprint: str,
) -> dict[str, Any]:
    ds, spec = plan.dataset, protocol.primary
    first = stage["methods"][spec.name]
    model = fitted[spec.name]
    net = model.members_[0] if hasattr(model, "members_") else plan.make_model()
    summary_model = model_summary(net)
    groups_disjoint = None
    if ds.groups is not None:
        g = {k: set(np.asarray(ds.groups)[v].tolist()) for k, v in plan.splits.items()}
        groups_disjoint = not (
            g["train"] & g["test"] or g["train"] & g["calibration"] or g["calibration"] & g["test"]
        )
    summary: dict[str, Any] = {
        "name": protocol.name,
        "task": protocol.task,
        "seed": protocol.seed,
        "verdict": verdict,
        "metrics": first["metrics"],
        "baseline_metrics": stage["baseline_metrics"],
        "reference": stage["reference"],
        "methods": stage["methods"],
        "acceptance": acceptance,
        "data": {
            "source": ds.source,
            "n_samples": len(ds),
            "input_shape": list(ds.input_shape),
            "target_names": plan.target_names,
            "splits": {k: len(v) for k, v in plan.splits.items()},
            "split_order": protocol.data.split.order,
            "fingerprint": fingerprint,
            "groups_disjoint": groups_disjoint,
            "duplicates": stage["duplicates"],
            "target_stats": stage["target_stats"],
        },
        "model": {
            "name": protocol.model.builtin or protocol.model.factory,
            "n_parameters": summary_model["n_parameters"],
            "summary": summary_model["text"],
        },
        "uncertainty": {
            **spec.settings(),
            "label": spec.name,
            "history": first["history"],
        },
        "calibration": first["calibration"],
        "claims": protocol.claims,
        "limitations": protocol.limitations,
    }
    if "coverage_curve" in first:
        summary["coverage_curve"] = first["coverage_curve"]
    if stage["shifts"]:
        summary["shifts"] = stage["shifts"]
    return summary


def _calibrate(
    protocol: Protocol, pred_cal: Predictive, y_cal: np.ndarray, pred_test: Predictive
) -> tuple[Predictive, Any, dict[str, Any]]:
    """Fit the protocol's calibrator on the calibration split; return the calibrated test
    predictive, the calibrator (``Predictive -> Predictive``) and what to report about it."""
    method = protocol.calibration.method
    if method == "none":
        return pred_test, (lambda p: p), {}
    info: dict[str, Any] = {"n_calibration": len(y_cal)}
    if method == "conformal":
        conf = SplitConformal(alpha=protocol.calibration.alpha).fit(pred_cal, y_cal)
        if protocol.task == "regression":
            info["std_multiplier"] = conf.q_.tolist()
        else:
            info.update({"score": conf.score, "threshold": conf.q_})
        return conf.transform(pred_test), conf.transform, info
    if method == "temperature":
        ts = TemperatureScaling().fit(pred_cal, y_cal)
        info.update(
            {
                "temperature": ts.temperature_,
                "nll_calibration_before": ts.nll_before_,
                "nll_calibration_after": ts.nll_after_,
            }
        )
        return ts.transform(pred_test), ts.transform, info
    iso = IsotonicRecalibration().fit(pred_cal, y_cal)
    info["n_knots"] = [int(x.size) for x, _ in iso.knots_]
    return iso.transform(pred_test), iso.transform, info


def _coverage_curve(
    pred_raw: Predictive, pred_calibrated: Predictive, y_test: np.ndarray
) -> dict[str, list[float]]:
    """Empirical vs nominal coverage of central intervals, before and after calibration."""
    raw, calibrated = [], []
    for level in COVERAGE_LEVELS:
        lo, hi = pred_raw.interval(level)
        raw.append(float(np.mean((y_test >= lo) & (y_test <= hi))))
        lo, hi = pred_calibrated.interval(level)
        calibrated.append(float(np.mean((y_test >= lo) & (y_test <= hi))))
    return {"nominal": list(COVERAGE_LEVELS), "empirical_raw": raw, "empirical": calibrated}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the trustml source tree, when it is a git checkout (else ``None``)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def _manifest(
    protocol: Protocol, text: str, fingerprint: str, device: torch.device, command: list[str] | None
) -> dict[str, Any]:
    return {
        "git_commit": _git_commit(),
        "methods": [m.name for m in protocol.methods],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        "seed": protocol.seed,
        "protocol_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "data_fingerprint": fingerprint,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            d: _version(d)
            for d in (
                "trustml",
                "torch",
                "numpy",
                "scipy",
                "pyro-ppl",
                "captum",
                "h5py",
                "arviz",
                "mpi4py",
            )
        },
    }
