"""Shift ladders: one named shift at ordered intensity levels, every method scored at each.

Ovadia et al. (NeurIPS 2019) score every uncertainty method at increasing shift intensity;
this is that protocol for a trustml run. A ladder level is a test set:

- an ``option`` ladder regenerates the builtin dataset with the option set to each level
  (the same generator seed at every level, so levels differ by the option alone);
- a ``corruption`` ladder corrupts the main test split at each level
  (:class:`trustml.data.CorruptedDataset`, every sample with its own seeded draw).

Nothing is re-trained per level: each method's fitted model predicts each level, and the
calibration fitted on the in-distribution calibration split is applied unchanged. The
summary of a ladder is ``{"ladder": {...}, "levels": [...], "holds": [...]}``; single
shifted sets keep their own layout (scored in :mod:`trustml.protocol._scoring`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.data import CORRUPTIONS, BaseDataset, CorruptedDataset, channel_stats, load_builtin
from trustml.distributed import Comm
from trustml.exceptions import ProtocolError, TrustmlInputError
from trustml.protocol import _methods
from trustml.protocol._data_spec import parse_criterion
from trustml.protocol._metric_scores import meets, quantities, score
from trustml.protocol._parallel import predict_sharded
from trustml.protocol._splits import scan_split
from trustml.protocol.schema import Protocol
from trustml.uq import Predictive
from trustml.utils.seeding import child

__all__ = [
    "Ladder",
    "check_like_main",
    "shift_builtin",
    "examples_source",
    "holds_along",
    "load_ladders",
    "predict_ladders",
    "score_ladders",
    "score_set",
    "shift_metrics",
]

#: Layouts a corruption applies to: channel-first grids with 1 to 3 spatial axes.
_GRID_LAYOUTS = (None, "NCL", "NCHW", "NCDHW")


@dataclass(frozen=True)
class Ladder:
    """One shift ladder, resolved.

    Attributes
    ----------
    name : str
    kind : str
        ``"option"`` or ``"corruption"``.
    parameter : str
        The builtin option or the corruption swept.
    levels : list
        The levels as given (numbers, or lists for a range option).
    labels : list of str
        The levels as written in acceptance keys, tables and figures.
    unit : str
        What a level measures (an option ladder's ``unit``, or ``""``; a corruption's own).
    source : str
        Where each level's samples come from.
    datasets : list of BaseDataset
        One test set per level.
    """

    name: str
    kind: str
    parameter: str
    levels: list[Any]
    labels: list[str]
    unit: str
    source: str
    datasets: list[BaseDataset]

    def describe(self) -> dict[str, Any]:
        """The ladder's entry in the results (without the scores)."""
        return {
            "kind": self.kind,
            "parameter": self.parameter,
            "unit": self.unit,
            "source": self.source,
            "levels": self.levels,
            "labels": self.labels,
        }


def _option_value(level: Any) -> Any:
    # A whole number goes to a builtin option as an int (``n``, ``size``); a range as a list.
    if isinstance(level, list):
        return [float(v) for v in level]
    return int(level) if float(level).is_integer() else float(level)


def shift_builtin(protocol: Protocol, name: str, missing: str) -> tuple[str, dict[str, Any]]:
    """The builtin dataset shift ``name`` draws from (its own, else the main data's) and its
    options: the main data's when it is the same builtin, overridden by the shift's own.

    Raises ``ProtocolError(missing)`` naming the shift when neither gives a builtin.
    """
    spec = protocol.data.shifts[name]
    builtin = spec.builtin or protocol.data.builtin
    if builtin is None:
        raise ProtocolError(missing, key=f"data.shifts.{name}")
    same = builtin == protocol.data.builtin
    return builtin, {**(protocol.data.options if same else {}), **spec.options}


def check_like_main(ds: BaseDataset, main: BaseDataset, key: str) -> None:
    """A shifted test set must have the main data's input shape and task."""
    if tuple(ds.input_shape) != tuple(main.input_shape) or ds.task_hint != main.task_hint:
        raise ProtocolError(
            f"inputs {list(ds.input_shape)} ({ds.task_hint}) do not match the main data's "
            f"{list(main.input_shape)} ({main.task_hint})",
            key=key,
        )


def _option_ladder(protocol: Protocol, name: str, main: BaseDataset) -> Ladder:
    spec = protocol.data.shifts[name]
    key = f"data.shifts.{name}"
    builtin, base = shift_builtin(
        protocol, name, "an option ladder needs 'builtin' (the main data is not one)"
    )
    assert spec.option is not None  # an option ladder
    option: str = spec.option
    seed = child(protocol.seed, f"shift/{name}")
    datasets: list[BaseDataset] = []
    for j, level in enumerate(spec.levels or []):
        try:
            options = {**base, option: _option_value(level)}
            ds = load_builtin(builtin, seed=seed, **options)
        except TrustmlInputError as exc:
            raise ProtocolError(str(exc), key=f"{key}.levels[{j}]") from None
        datasets.append(ds)
    return Ladder(
        name, "option", option, list(spec.levels or []), spec.level_labels,
        spec.unit or "", f"builtin:{builtin}", datasets,
    )  # fmt: skip


def _corruption_ladder(
    protocol: Protocol, name: str, main: BaseDataset, test: np.ndarray
) -> Ladder:
    spec = protocol.data.shifts[name]
    key = f"data.shifts.{name}"
    assert spec.corruption is not None  # a corruption ladder
    if main.layout not in _GRID_LAYOUTS or len(main.input_shape) not in (2, 3, 4):
        raise ProtocolError(
            f"corruptions apply to channel-first grids with 1 to 3 spatial axes; the data's "
            f"inputs are {list(main.input_shape)} (layout {main.layout})",
            key=f"{key}.corruption",
        )
    split = main.subset(test)
    reference = channel_stats(split)
    datasets: list[BaseDataset] = []
    for j, (level, label) in enumerate(zip(spec.levels or [], spec.level_labels, strict=True)):
        if isinstance(level, list):
            raise ProtocolError("a corruption level is one number", key=f"{key}.levels[{j}]")
        try:
            datasets.append(
                CorruptedDataset(
                    split,
                    spec.corruption,
                    level,
                    seed=child(protocol.seed, f"shift/{name}/{label}"),
                    channels=spec.channels,
                    reference=reference,
                )  # fmt: skip
            )
        except TrustmlInputError as exc:
            where = "channels" if "channels" in str(exc) else f"levels[{j}]"
            raise ProtocolError(str(exc), key=f"{key}.{where}") from None
    return Ladder(
        name, "corruption", spec.corruption, list(spec.levels or []), spec.level_labels,
        CORRUPTIONS.get(spec.corruption).unit, f"test split + {spec.corruption}", datasets,
    )  # fmt: skip


def load_ladders(protocol: Protocol, main: BaseDataset, test: np.ndarray) -> dict[str, Ladder]:
    """Every shift ladder of the protocol, its level datasets checked against the main data.

    Raises
    ------
    ProtocolError
        An option the builtin does not take, a level it refuses, a corruption level out of
        range, or inputs that do not match the main data's (naming the key).
    """
    out: dict[str, Ladder] = {}
    for name, spec in protocol.data.shifts.items():
        if not spec.is_ladder:
            continue
        if spec.option is not None:
            ladder = _option_ladder(protocol, name, main)
        else:
            ladder = _corruption_ladder(protocol, name, main, test)
        for j, ds in enumerate(ladder.datasets):
            check_like_main(ds, main, f"data.shifts.{name}.levels[{j}]")
        out[name] = ladder
    return out


def predict_ladders(
    protocol: Protocol, ladders: Mapping[str, Ladder], models: Mapping[str, Any], comm: Comm
) -> dict[str, list[dict[str, Predictive | None]]]:
    """Every method's raw predictive of every ladder level (``None`` off rank 0)."""
    return {
        name: [
            {
                spec.name: predict_sharded(
                    models[spec.name],
                    ds,
                    np.arange(len(ds)),
                    comm=comm,
                    **_methods.predict_options(spec),
                )  # fmt: skip
                for spec in protocol.methods
            }
            for ds in ladder.datasets
        ]
        for name, ladder in ladders.items()
    }


def score_set(
    protocol: Protocol, calibrated: Predictive, y: np.ndarray, group: str, seed: Any
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One calibrated method on one shifted test set (a single shift or a ladder level):
    metrics with CIs, mean uncertainty, and its prediction arrays in ``group``."""
    q = quantities(calibrated, 1.0 - protocol.calibration.alpha)
    entry: dict[str, Any] = {"metrics": score(protocol.metric_names, y, q, seed=seed)}
    arrays: dict[str, np.ndarray] = {}
    if protocol.task == "regression":
        entry["mean_std"] = float(calibrated.std.mean())
        entry["mean_epistemic_var"] = float(calibrated.epistemic_var.mean())
        arrays.update({rk.path(group, k): v for k, v in q.items()})
        arrays[rk.path(group, rk.EPISTEMIC_VAR)] = calibrated.epistemic_var
    else:
        entry["mean_entropy"] = float(calibrated.entropy.mean())
        entry["mean_mutual_information"] = float(calibrated.mutual_information.mean())
        arrays[rk.path(group, rk.PROBS)] = calibrated.probs
    return entry, arrays


def score_ladders(
    protocol: Protocol,
    ladders: Mapping[str, Ladder],
    predicted: Mapping[str, list[dict[str, Predictive | None]]],
    transforms: Mapping[str, Callable[[Predictive], Predictive]],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every method, calibrated, at every level of every ladder (rank 0).

    Parameters
    ----------
    transforms : dict
        Method label -> its calibration (fitted on the calibration split), applied unchanged.

    Returns
    -------
    summary : dict
        Ladder name -> ``{"ladder", "levels": [{"level", "label", "n", "methods": {label:
        {"metrics", mean uncertainty}}}], "holds": [...]}`` (see :func:`holds_along`).
    arrays : dict
        ``arrays.h5`` path -> array: each level's targets or labels and each method's
        calibrated predictions.
    """
    boot_seed = child(protocol.seed, "bootstrap")
    target = rk.TARGETS if protocol.task == "regression" else rk.LABELS
    summary: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, ladder in ladders.items():
        levels = []
        for j, ds in enumerate(ladder.datasets):
            y = scan_split(ds, np.arange(len(ds)), protocol.task).y
            arrays[rk.path(rk.ladder_level(name, j), target)] = y
            methods = {}
            for label, pred in predicted[name][j].items():
                assert pred is not None  # rank 0
                methods[label], part = score_set(
                    protocol,
                    transforms[label](pred),
                    y,
                    rk.ladder_method(name, j, label),
                    boot_seed,
                )
                arrays.update(part)
            levels.append(
                {
                    "level": ladder.levels[j],
                    "label": ladder.labels[j],
                    "n": len(ds),
                    "methods": methods,
                }
            )
        entry = {"ladder": ladder.describe(), "levels": levels}
        entry["holds"] = holds_along(protocol, entry)
        summary[name] = entry
    return summary, arrays


def holds_along(protocol: Protocol, ladder: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Where each method's acceptance criteria stop holding along a ladder.

    A criterion of the test split without a label (``ece``) is checked for every method, a
    labelled one (``ece@laplace``) for its method; criteria of a shift are not repeated here.

    Returns
    -------
    list of dict
        One row per (criterion, bound, method): ``{"criterion", "metric", "method", "bound",
        "threshold", "passed": [bool per level], "holds_through": label of the last level
        before the first failure, or None when the first level fails already}``. A NaN metric
        never passes.
    """
    rows = []
    labels = [m.name for m in protocol.methods]
    for key, bound in protocol.acceptance.items():
        c = parse_criterion(key)
        if c.shift is not None:
            continue
        for label in [c.label] if c.label else labels:
            for kind in ("min", "max"):
                threshold = getattr(bound, kind)
                if threshold is None:
                    continue
                passed = []
                for level in ladder["levels"]:
                    value = level["methods"][label]["metrics"][c.metric]["value"]
                    finite = value is not None and bool(np.isfinite(value))
                    passed.append(finite and meets(value, kind, threshold))
                first_fail = passed.index(False) if False in passed else len(passed)
                rows.append(
                    {
                        "criterion": key,
                        "metric": c.metric,
                        "method": label,
                        "bound": kind,
                        "threshold": float(threshold),
                        "passed": passed,
                        "holds_through": (
                            ladder["levels"][first_fail - 1]["label"] if first_fail else None
                        ),
                    }
                )
    return rows


def shift_metrics(
    shifts: Mapping[str, Any], primary: str
) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    """``(shift, level label or None, method label) -> metrics`` of every scored shift: what an
    acceptance key ``metric[@label]@shift:NAME[:LEVEL]`` reads."""
    out: dict[tuple[str, str | None, str], dict[str, Any]] = {}
    for name, entry in shifts.items():
        if "ladder" in entry:
            for level in entry["levels"]:
                for label, part in level["methods"].items():
                    out[(name, level["label"], label)] = part["metrics"]
        else:  # a single shifted set: the primary method only
            out[(name, None, primary)] = entry["metrics"]
    return out


def examples_source(
    protocol: Protocol,
    main: BaseDataset,
    test: np.ndarray,
    shifts: Mapping[str, BaseDataset],
    ladders: Mapping[str, Ladder],
) -> tuple[BaseDataset, np.ndarray, str | None]:
    """Where ``attribution`` takes its examples: ``(dataset, indices, probs group)``.

    The test split (``attribution.examples_from: test``), a single shifted set (``shift:NAME``) or a
    ladder level (``shift:NAME:LEVEL``). The group is where the primary method's calibrated
    probabilities of those samples are in ``arrays.h5`` (``None`` for the test split).
    """
    spec = protocol.attribution
    if spec is None or spec.examples_from == "test":
        return main, test, None
    c = parse_criterion(f"attribution@{spec.examples_from}")
    assert c.shift is not None  # the schema checked attribution.examples_from
    if c.level is None:
        ds = shifts[c.shift]
        return ds, np.arange(len(ds)), rk.shift(c.shift)
    ladder = ladders[c.shift]
    j = ladder.labels.index(c.level)
    ds = ladder.datasets[j]
    return ds, np.arange(len(ds)), rk.ladder_method(c.shift, j, protocol.primary.name)
