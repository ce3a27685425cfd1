"""The scoring stage (rank 0): calibrate every method on the calibration split, score it and
the reference predictors on the test split with bootstrap intervals, score the primary method
on the shifted test sets; and the acceptance criteria.

Arrays are named only through :mod:`trustml.results_keys`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.protocol import _methods, _search
from trustml.protocol._calibrate import Calibrated, calibrate
from trustml.protocol._data_spec import parse_criterion
from trustml.protocol._fit import Predictions, Trained
from trustml.protocol._metric_scores import N_BOOT, meets, quantities, score
from trustml.protocol._plan import Plan
from trustml.protocol._reference import reference_predictors
from trustml.protocol._shifts import examples_source, score_ladders, score_set
from trustml.protocol._splits import SplitScan, duplicates, scan_split, target_stats
from trustml.protocol._stream_eval import ArrayStore, score_staged
from trustml.protocol._stream_predict import StagedPredictions
from trustml.protocol.schema import Protocol, UncertaintySpec
from trustml.uq import Predictive
from trustml.utils.seeding import child

__all__ = ["COVERAGE_LEVELS", "N_BOOT", "Scored", "acceptance", "score", "score_run"]

#: Nominal levels of the coverage curve (regression).
COVERAGE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Scored:
    """What scoring hands on (rank 0).

    Attributes
    ----------
    methods : dict
        Method label -> its summary part (metrics, calibration, uncertainty, history, ...).
    arrays : dict
        ``arrays.h5`` path -> array, for the test split and the shifted test sets.
    reference : dict
        Reference predictor -> ``{"description", "metrics"}``.
    baseline : str
        The reference predictor that is the run's baseline.
    shifts : dict
        Shifted test set -> its summary (metrics and mean uncertainty of the primary method),
        and shift ladder -> its summary (every method at every level; see
        :func:`~trustml.protocol._shifts.score_ladders`), in the protocol's order.
    duplicates : dict
        Samples shared between splits, per pair of splits.
    target_stats : dict
        Per split, target statistics or class counts.
    attribution_targets : ndarray or None
        The output each attributed test example is explained for (``None``: no attribution).
    """

    methods: dict[str, dict[str, Any]]
    arrays: dict[str, np.ndarray]
    reference: dict[str, Any]
    baseline: str
    shifts: dict[str, Any]
    duplicates: dict[str, int]
    target_stats: dict[str, Any]
    attribution_targets: np.ndarray | None

    @property
    def baseline_metrics(self) -> dict[str, Any]:
        return self.reference[self.baseline]["metrics"]


def acceptance(
    criteria: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]],
    primary: str,
    shifts: Mapping[tuple[str, str | None, str], Mapping[str, Mapping[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """One row per bound: ``{"criterion", "metric", "method", "bound", "threshold", "value",
    "ci", "passed"}``, plus ``"shift"`` and ``"level"`` for a criterion of a shift.

    ``metrics`` maps each method label to its metrics; a criterion ``"rmse@label"`` applies to
    that method, a plain ``"rmse"`` to the ``primary`` one. ``shifts`` maps ``(shift, level
    label or None, method label)`` to metrics (:func:`~trustml.protocol._shifts.shift_metrics`)
    for criteria such as ``"ece@shift:warming:3"``.
    """
    rows = []
    for key, bound in criteria.items():
        c = parse_criterion(key)
        label = c.label or primary
        if c.shift is None:
            entry = metrics[label][c.metric]
        else:
            assert shifts is not None  # the schema checked that the shift exists
            entry = shifts[(c.shift, c.level, label)][c.metric]
        value = entry["value"]
        for kind in ("min", "max"):
            threshold = getattr(bound, kind)
            if threshold is None:
                continue
            passed = meets(value, kind, threshold)
            row = {
                "criterion": key,
                "metric": c.metric,
                "method": label,
                "bound": kind,
                "threshold": float(threshold),
                "value": value,
                "ci": entry["ci"],
                "passed": bool(passed),
            }
            if c.shift is not None:
                row["shift"], row["level"] = c.shift, c.level
            rows.append(row)
    return rows


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


def _score_method(
    protocol: Protocol,
    spec: UncertaintySpec,
    predictions: Predictions,
    y_cal: np.ndarray,
    y_test: np.ndarray,
    group: str,
) -> tuple[dict[str, Any], dict[str, np.ndarray], Calibrated]:
    """Calibrate one method on the calibration split and score it on the test split.

    Returns the method's summary part, its arrays (in ``group``) and its calibration.
    """
    pred_cal, pred_test = predictions.calibration, predictions.test
    assert pred_cal is not None and isinstance(pred_test, Predictive)  # rank 0, in memory
    level = 1.0 - protocol.calibration.alpha  # of the regression intervals
    cal = calibrate(protocol.calibration, pred_cal, y_cal, pred_test)
    calibrated = cal.test
    cal_summary: dict[str, Any] = {
        "method": protocol.calibration.method,
        "alpha": protocol.calibration.alpha,
        **cal.params,
    }
    arrays: dict[str, np.ndarray] = {}
    q = quantities(calibrated, level)
    part: dict[str, Any] = {"method": spec.method, "settings": spec.settings()}
    if protocol.task == "regression":
        cal_summary["level"] = level
        arrays.update({rk.path(group, k): v for k, v in q.items()})
        arrays[rk.path(group, rk.EPISTEMIC_VAR)] = calibrated.epistemic_var
        arrays[rk.path(group, rk.ALEATORIC_VAR)] = calibrated.aleatoric_var
        arrays[rk.path(group, rk.PIT)] = calibrated.cdf(y_test)
        arrays[rk.path(group, rk.PIT_RAW)] = pred_test.cdf(y_test)
        part["coverage_curve"] = _coverage_curve(pred_test, calibrated, y_test)
        part["uncertainty"] = {
            "mean_aleatoric_var": calibrated.aleatoric_var.mean(axis=0).tolist(),
            "mean_epistemic_var": calibrated.epistemic_var.mean(axis=0).tolist(),
        }
    else:
        arrays[rk.path(group, rk.PROBS)] = calibrated.probs
        arrays[rk.path(group, rk.PROBS_RAW)] = pred_test.probs
        arrays[rk.path(group, rk.MUTUAL_INFORMATION)] = calibrated.mutual_information
        if protocol.calibration.method == "conformal":
            sets = calibrated.predict_set()
            arrays[rk.path(group, rk.PREDICTION_SETS)] = sets
            cal_summary["level"] = 1.0 - protocol.calibration.alpha
            cal_summary["set_coverage"] = float(np.mean(sets[np.arange(len(y_test)), y_test]))
            cal_summary["mean_set_size"] = float(np.mean(sets.sum(axis=1)))
        part["uncertainty"] = {
            "mean_entropy": float(calibrated.entropy.mean()),
            "mean_mutual_information": float(calibrated.mutual_information.mean()),
        }
    boot_seed = child(protocol.seed, "bootstrap")
    part["metrics"] = score(protocol.metric_names, y_test, q, seed=boot_seed)
    part["calibration"] = cal_summary
    return part, arrays, cal


def _score_streamed(
    protocol: Protocol,
    spec: UncertaintySpec,
    predictions: Predictions,
    y_cal: np.ndarray,
    y_test: np.ndarray,
    group: str,
    *,
    targets: bool,
) -> tuple[dict[str, Any], dict[str, Any], Calibrated]:
    """:func:`_score_method` of a test split staged on disk (:mod:`._stream_eval`): the same
    summary part, its arrays stored in the staging folder (with the test targets when
    ``targets``); the staged predictions are removed once scored."""
    staged = predictions.test
    assert isinstance(staged, StagedPredictions)
    store = ArrayStore(staged.path.parent / "arrays.h5", keep=staged.keep)
    out = score_staged(
        protocol, spec, predictions.calibration, y_cal, staged, y_test, group, store,
        targets=targets,
    )  # fmt: skip
    staged.path.unlink(missing_ok=True)
    return out


def _score_shifts(
    protocol: Protocol,
    plan: Plan,
    predictions: Mapping[str, Predictive | None],
    transform: Any,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The primary method, calibrated, on every shifted test set: summaries and arrays."""
    task, boot_seed = protocol.task, child(protocol.seed, "bootstrap")
    shifts: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, pred in predictions.items():
        assert pred is not None  # rank 0
        sds = plan.shifts[name]
        y_shift = scan_split(sds, np.arange(len(sds)), task).y
        group = rk.shift(name)
        entry, part = score_set(protocol, transform(pred), y_shift, group, boot_seed)
        shifts[name] = {"n": len(sds), "source": sds.source, **entry}
        target = rk.TARGETS if task == "regression" else rk.LABELS
        arrays[rk.path(group, target)] = y_shift
        arrays.update(part)
    return shifts, arrays


def score_run(protocol: Protocol, plan: Plan, trained: Trained) -> Scored:
    """Calibrate and score every method, the reference predictors and the shifted test sets."""
    ds, splits, task = plan.dataset, plan.splits, protocol.task
    sequences = task == "regression" and ds.layout == "NTF"
    scans: dict[str, SplitScan] = {
        name: scan_split(ds, idx, task, last_step=sequences) for name, idx in splits.items()
    }
    ys = {name: scan.y for name, scan in scans.items()}
    y_cal, y_test = ys["calibration"], ys["test"]
    arrays = {rk.path(rk.PRIMARY_TEST, rk.TARGETS if task == "regression" else rk.LABELS): y_test}
    methods: dict[str, dict[str, Any]] = {}
    calibrations: dict[str, Calibrated] = {}
    for i, spec in enumerate(protocol.methods):
        group = rk.method_test(spec.name, primary=i == 0)
        predictions = trained.predictions[spec.name]
        if isinstance(predictions.test, StagedPredictions):  # too large to hold: in chunks
            part, part_arrays, calibrations[spec.name] = _score_streamed(
                protocol, spec, predictions, y_cal, y_test, group, targets=i == 0
            )
        else:
            part, part_arrays, calibrations[spec.name] = _score_method(
                protocol, spec, predictions, y_cal, y_test, group
            )
        part["primary"] = i == 0
        part["index"] = i  # results.json sorts keys: this keeps the protocol's order
        model = trained.models[spec.name]
        part["history"] = _methods.history(model)
        search = _search.record(model)
        if search is not None:
            assert isinstance(predictions.test, Predictive)  # a searched method is not streamed
            search["comparison"] = _search.score_comparison(
                protocol, part["metrics"], (predictions.calibration, predictions.test),
                trained.defaults[spec.name], y_cal, y_test,
                search["selection"]["best_single"], spec.members,
            )  # fmt: skip
            part["search"] = search
        diag = _methods.diagnostics(model, ds.read(splits["test"][:4])[0], spec.draws)
        if diag is not None:
            part["diagnostics"] = diag
        methods[spec.name] = part
        arrays.update(part_arrays)
    primary = calibrations[protocol.primary.name]

    boot_seed = child(protocol.seed, "bootstrap")
    predictors = reference_predictors(
        task, scans, level=1.0 - protocol.calibration.alpha, n_classes=plan.n_targets,
        input_width=ds.input_shape[-1],
    )  # fmt: skip
    reference = {
        name: {
            "description": description,
            "metrics": score(protocol.metric_names, y_test, qs, seed=boot_seed),
        }
        for name, (description, qs) in predictors.items()
    }
    singles, shift_arrays = _score_shifts(protocol, plan, trained.shifts, primary.transform)
    arrays.update(shift_arrays)
    ladders, ladder_arrays = score_ladders(
        protocol, plan.ladders, trained.ladders, {k: c.transform for k, c in calibrations.items()}
    )
    arrays.update(ladder_arrays)
    both = {**singles, **ladders}
    shifts = {name: both[name] for name in protocol.data.shifts}  # in the protocol's order

    attribution_targets = None
    if protocol.attribution is not None:
        _, idx, where = examples_source(protocol, ds, splits["test"], plan.shifts, plan.ladders)
        n = min(protocol.attribution.n_examples, len(idx))
        if task == "regression":
            attribution_targets = np.full(n, protocol.attribution.target)
        else:  # explain the class the calibrated model predicts (in memory or stored)
            probs = arrays[rk.path(rk.PRIMARY_TEST if where is None else where, rk.PROBS)]
            attribution_targets = np.asarray(probs[:n]).argmax(axis=1)
    return Scored(
        methods=methods,
        arrays=arrays,
        reference=reference,
        baseline=next(iter(reference)),
        shifts=shifts,
        duplicates=duplicates({name: scan.hashes for name, scan in scans.items()}),
        target_stats=target_stats(ys, task, plan.target_names, plan.n_targets),
        attribution_targets=attribution_targets,
    )
