"""Run a validated protocol end to end: data -> splits -> model -> uncertainty -> calibration
-> metrics -> attribution -> acceptance -> results.

Everything a protocol can get wrong is checked before training starts, so an invalid protocol
fails in seconds and writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
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
from trustml.data import BaseDataset, HDF5Dataset, load_builtin, split_indices
from trustml.distributed import Comm, MemberCheckpoints, abort_on_error, get_comm, run_key
from trustml.exceptions import ProtocolError, TrustmlInputError
from trustml.explain import completeness_check
from trustml.models import build_from_factory, build_model, model_summary
from trustml.protocol import _scoring
from trustml.protocol._parallel import attribute_sharded, predict_sharded, train_ensemble
from trustml.protocol.schema import Protocol
from trustml.report import RunResults
from trustml.uq import DeepEnsemble, Predictive
from trustml.utils.seeding import child

__all__ = ["RunOutcome", "run_protocol", "resolve_outdir"]

log = logging.getLogger("trustml")

#: Methods and options of protocol v1 this release runs; the schema knows the rest.
_AVAILABLE = {
    "uncertainty.method": ("deep_ensemble",),
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


def resolve_outdir(protocol: Protocol, out: str | Path | None) -> Path:
    """``--out`` wins, then ``report.out``, then ``reports/<name>``."""
    if out is not None:
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
    method = protocol.uncertainty.method
    if method not in _AVAILABLE["uncertainty.method"]:
        raise ProtocolError(
            f"{method!r} is not available in this trustml release yet; available: "
            + ", ".join(_AVAILABLE["uncertainty.method"]),
            key="uncertainty.method",
        )
    cal = _AVAILABLE["calibration.method"][protocol.task]
    if protocol.calibration.method not in cal:
        raise ProtocolError(
            f"{protocol.calibration.method!r} is not available for {protocol.task} in this "
            f"trustml release yet; available: {', '.join(cal)}",
            key="calibration.method",
        )


def _load_dataset(protocol: Protocol, base_dir: Path) -> BaseDataset:
    spec = protocol.data
    if spec.builtin is not None:
        return load_builtin(spec.builtin, seed=child(protocol.seed, "data"), **spec.options)
    h = spec.hdf5
    path = Path(h.path)
    if not path.is_absolute():
        path = base_dir / path
    return HDF5Dataset(path, inputs=h.inputs, targets=h.targets, groups=h.groups, validate=True)


def _count_classes(ds: BaseDataset) -> int:
    top = -1
    for _, yb, _ in ds.iter_batches(batch_size=4096):
        if np.any(yb < 0):
            raise TrustmlInputError(f"{ds.source}: class labels must be >= 0")
        top = max(top, int(yb.max()))
    return top + 1


def _plan(protocol: Protocol, base_dir: Path, comm: Comm) -> _Plan:
    _check_available(protocol)
    device = _device(protocol, comm)
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
    split = protocol.data.split
    splits = split_indices(
        len(ds),
        {"train": split.train, "calibration": split.calibration, "test": split.test},
        seed=child(protocol.seed, "split"),
        groups=ds.groups,
    )
    for name, idx in splits.items():
        if len(idx) < 2:
            raise ProtocolError(
                f"the {name} split has {len(idx)} samples; use more data or a larger fraction",
                key="data.split",
            )
    m = protocol.model

    def make_model() -> torch.nn.Module:
        if m.builtin is not None:
            return build_model(
                m.builtin, input_shape=tuple(ds.input_shape), output_dim=output_dim, **m.options
            )
        return build_from_factory(
            m.factory, input_shape=tuple(ds.input_shape), output_dim=output_dim, **m.options
        )

    try:
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
    return _Plan(ds, splits, make_model, output_dim, n_targets, names, device)


def _targets(ds: BaseDataset, idx: np.ndarray, task: str) -> np.ndarray:
    _, y = ds.read(idx)
    return (
        np.asarray(y, dtype=np.int64)
        if task == "classification"
        else np.asarray(y, dtype=np.float64).reshape(len(idx), -1)
    )


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
        under ``OUT/checkpoints/``; running the same protocol again resumes from them.
    write : bool
        Write the report folder (``False`` returns the results only, and checkpoints nothing).
    progress : bool, optional
        Progress bars; default only on a terminal (and only on rank 0).
    comm : mpi4py communicator or trustml Comm, optional
        Default: ``MPI.COMM_WORLD`` when started by ``mpiexec``/``srun``, else one process.
        Members, predictions and attributions are spread over the ranks; the numbers do not
        depend on the number of ranks. Rank 0 alone holds the results and writes the report.

    Returns
    -------
    RunOutcome
        ``results`` is ``None`` on ranks other than 0; ``verdict`` is known on every rank.
    """
    comm = get_comm(comm)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    # Every rank validates alike: an invalid protocol fails on all of them, before any work.
    plan = _plan(protocol, Path(base_dir), comm)
    outdir = resolve_outdir(protocol, out) if write else None
    with abort_on_error(comm):
        return _execute(protocol, protocol_text, plan, outdir, comm, progress, command, Path(base_dir), started)


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
    ds, splits, task = plan.dataset, plan.splits, protocol.task
    fingerprint = comm.bcast(ds.fingerprint() if comm.rank == 0 else None)
    show = (progress if progress is not None else sys.stderr.isatty()) and comm.rank == 0

    u = protocol.uncertainty
    key = run_key(
        {
            "seed": protocol.seed,
            "data": fingerprint,
            "split": protocol.data.split.model_dump(),
            "task": task,
            "model": protocol.model.model_dump(),
            "uncertainty": u.model_dump(),
            "device": plan.device.type,
        }
    )
    store = MemberCheckpoints(outdir / "checkpoints", key) if outdir is not None else None
    if comm.rank == 0:
        log.info(
            "training a %d-member deep ensemble on %d samples%s",
            u.members,
            len(splits["train"]),
            f" over {comm.size} ranks" if comm.size > 1 else "",
        )
    ensemble = DeepEnsemble(
        plan.make_model, members=u.members, task=task, seed=protocol.seed, device=plan.device
    )
    fit_options = {
        "epochs": u.train.epochs,
        "batch_size": u.train.batch_size,
        "lr": u.train.lr,
        "weight_decay": u.train.weight_decay,
        "progress": show,
    }
    ensemble = train_ensemble(
        ensemble, ds.subset(splits["train"]), fit_options, comm=comm, checkpoints=store
    )
    pred_cal = predict_sharded(ensemble, ds, splits["calibration"], comm=comm)
    pred_test = predict_sharded(ensemble, ds, splits["test"], comm=comm)

    # Calibration and scoring need every prediction: rank 0 alone from here, but attribution,
    # which is sharded again, needs the classes it explains.
    stage: dict[str, Any] | None = None
    if comm.rank == 0:
        stage = _score(protocol, plan, pred_cal, pred_test)
    attribution_summary = None
    if protocol.attribution is not None:
        targets = comm.bcast(stage["attribution_targets"] if stage is not None else None)
        attribution_summary = _attribute(protocol, plan, ensemble, targets, comm, stage)

    verdict = None
    results = None
    if comm.rank == 0:
        assert stage is not None
        acceptance = _scoring.acceptance(protocol.acceptance, stage["metrics"])
        verdict = "pass" if all(a["passed"] for a in acceptance) else "fail"
        summary = _summary(protocol, plan, ensemble, stage, acceptance, verdict, fingerprint)
        if attribution_summary is not None:
            summary["attribution"] = attribution_summary
        manifest = _manifest(protocol, protocol_text, fingerprint, plan.device, command)
        manifest.update(
            {
                "protocol_dir": str(base_dir.resolve()),
                "mpi_world_size": comm.size,
                "wall_time_s": round(time.perf_counter() - started, 2),
            }
        )
        results = RunResults(
            summary=summary, arrays=stage["arrays"], manifest=manifest, protocol_text=protocol_text
        )
        if outdir is not None:
            results.write(outdir, keep=("checkpoints",))
    verdict = comm.bcast(verdict)
    return RunOutcome(results, outdir, verdict)


def _score(
    protocol: Protocol, plan: _Plan, pred_cal: Predictive, pred_test: Predictive
) -> dict[str, Any]:
    """Calibrate on the calibration split, score the test split (rank 0)."""
    ds, splits, task = plan.dataset, plan.splits, protocol.task
    y_cal = _targets(ds, splits["calibration"], task)
    y_test = _targets(ds, splits["test"], task)
    y_train = _targets(ds, splits["train"], task)

    arrays: dict[str, np.ndarray] = {}
    summary_cal: dict[str, Any] = {
        "method": protocol.calibration.method,
        "alpha": protocol.calibration.alpha,
    }
    # Fitted on the calibration split only; everything after this block (metrics, arrays,
    # attribution targets) sees the calibrated test predictive.
    pred_test_raw = pred_test
    pred_test, cal_info = _calibrate(protocol, pred_cal, y_cal, pred_test_raw)
    summary_cal.update(cal_info)
    coverage_curve = None
    if task == "regression":
        level = 1.0 - protocol.calibration.alpha
        summary_cal["level"] = level
        lower, upper = pred_test.interval(level)
        quantities = {"mean": pred_test.mean, "std": pred_test.std, "lower": lower, "upper": upper}
        arrays.update({f"test/{k}": v for k, v in quantities.items()})
        arrays["test/targets"] = y_test
        arrays["test/epistemic_var"] = pred_test.epistemic_var
        arrays["test/aleatoric_var"] = pred_test.aleatoric_var
        coverage_curve = _coverage_curve(pred_test_raw, pred_test, y_test)
        baseline = _scoring.regression_baseline(y_train, len(y_test), level)
    else:
        quantities = {"probs": pred_test.probs}
        arrays["test/probs"] = pred_test.probs
        arrays["test/labels"] = y_test
        if protocol.calibration.method == "conformal":
            sets = pred_test.predict_set()
            arrays["test/prediction_sets"] = sets
            summary_cal["level"] = 1.0 - protocol.calibration.alpha
            summary_cal["set_coverage"] = float(np.mean(sets[np.arange(len(y_test)), y_test]))
            summary_cal["mean_set_size"] = float(np.mean(sets.sum(axis=1)))
        baseline = _scoring.classification_baseline(y_train, len(y_test), plan.n_targets)

    boot_seed = child(protocol.seed, "bootstrap")
    attribution_targets = None
    if protocol.attribution is not None:
        n = min(protocol.attribution.n_examples, len(splits["test"]))
        if task == "regression":
            attribution_targets = np.full(n, protocol.attribution.target)
        else:  # explain the class the calibrated model predicts
            attribution_targets = pred_test.probs[:n].argmax(axis=1)
    return {
        "arrays": arrays,
        "calibration": summary_cal,
        "coverage_curve": coverage_curve,
        "metrics": _scoring.score(protocol.metric_names, y_test, quantities, seed=boot_seed),
        "baseline_metrics": _scoring.score(protocol.metric_names, y_test, baseline, seed=boot_seed),
        "attribution_targets": attribution_targets,
    }


def _summary(
    protocol: Protocol,
    plan: _Plan,
    ensemble: DeepEnsemble,
    stage: dict[str, Any],
    acceptance: list[dict[str, Any]],
    verdict: str,
    fingerprint: str,
) -> dict[str, Any]:
    ds, u = plan.dataset, protocol.uncertainty
    summary_model = model_summary(ensemble.members_[0])
    summary: dict[str, Any] = {
        "name": protocol.name,
        "task": protocol.task,
        "seed": protocol.seed,
        "verdict": verdict,
        "metrics": stage["metrics"],
        "baseline_metrics": stage["baseline_metrics"],
        "acceptance": acceptance,
        "data": {
            "source": ds.source,
            "n_samples": len(ds),
            "input_shape": list(ds.input_shape),
            "target_names": plan.target_names,
            "splits": {k: len(v) for k, v in plan.splits.items()},
            "fingerprint": fingerprint,
        },
        "model": {
            "name": protocol.model.builtin or protocol.model.factory,
            "n_parameters": summary_model["n_parameters"],
            "summary": summary_model["text"],
        },
        "uncertainty": {
            "method": u.method,
            "members": u.members,
            "train": u.train.model_dump(),
            "history": ensemble.history_,
        },
        "calibration": stage["calibration"],
    }
    if stage["coverage_curve"] is not None:
        summary["coverage_curve"] = stage["coverage_curve"]
    return summary


def _calibrate(
    protocol: Protocol, pred_cal: Predictive, y_cal: np.ndarray, pred_test: Predictive
) -> tuple[Predictive, dict[str, Any]]:
    """Fit the protocol's calibrator on the calibration split; return the calibrated test
    predictive and what to report about the fit."""
    method = protocol.calibration.method
    if method == "none":
        return pred_test, {}
    info: dict[str, Any] = {"n_calibration": len(y_cal)}
    if method == "conformal":
        conf = SplitConformal(alpha=protocol.calibration.alpha).fit(pred_cal, y_cal)
        if protocol.task == "regression":
            info["std_multiplier"] = conf.q_.tolist()
        else:
            info.update({"score": conf.score, "threshold": conf.q_})
        return conf.transform(pred_test), info
    if method == "temperature":
        ts = TemperatureScaling().fit(pred_cal, y_cal)
        info.update(
            {
                "temperature": ts.temperature_,
                "nll_calibration_before": ts.nll_before_,
                "nll_calibration_after": ts.nll_after_,
            }
        )
        return ts.transform(pred_test), info
    iso = IsotonicRecalibration().fit(pred_cal, y_cal)
    info["n_knots"] = [int(x.size) for x, _ in iso.knots_]
    return iso.transform(pred_test), info


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


def _attribute(
    protocol: Protocol,
    plan: _Plan,
    ensemble: DeepEnsemble,
    targets: np.ndarray,
    comm: Comm,
    stage: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Attribute the first test examples, sharded over ranks; rank 0 stores and checks them."""
    spec = protocol.attribution
    assert spec is not None
    idx = plan.splits["test"][: len(targets)]
    method = spec.methods[0]
    target: int | np.ndarray = int(targets[0]) if protocol.task == "regression" else targets
    attr = attribute_sharded(
        ensemble,
        plan.dataset,
        idx,
        target,
        method=method,
        comm=comm,
        internal_batch_size=64,
        # Only integrated gradients has a path to integrate along; other methods reject it.
        **({"n_steps": spec.n_steps} if method == "integrated_gradients" else {}),
    )
    if comm.rank != 0:
        return None
    assert stage is not None and attr is not None
    arrays = stage["arrays"]
    arrays["attribution/inputs"] = plan.dataset.read(idx)[0]
    arrays["attribution/maps"] = attr.members.astype(np.float32)
    arrays["attribution/target_index"] = np.asarray(targets)
    if protocol.task == "regression":
        target_text = f"predicted mean of {plan.target_names[spec.target]}"
    else:
        target_text = "logit of the predicted class"
    checks = {}
    if "completeness" in spec.checks:
        checks["completeness"] = completeness_check(attr).as_dict()
    return {"method": method, "n_examples": int(len(idx)), "target": target_text, "checks": checks}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _manifest(
    protocol: Protocol, text: str, fingerprint: str, device: torch.device, command: list[str] | None
) -> dict[str, Any]:
    return {
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
