"""The calibration of one method: the protocol's calibrator, fitted on the calibration split.

:data:`CALIBRATORS` is the dispatch table, keyed by the schema's names
(:data:`trustml.protocol._names.CALIBRATION_METHODS`, which adds ``"none"``). What a
calibration reports comes from the calibrator's public ``params``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trustml.calibration import (
    Calibrator,
    IsotonicRecalibration,
    SplitConformal,
    TemperatureScaling,
)
from trustml.exceptions import ProtocolError
from trustml.protocol._names import NO_CALIBRATION
from trustml.protocol.schema import CalibrationSpec, Protocol
from trustml.uq import Predictive

__all__ = ["CALIBRATORS", "Calibrated", "available", "calibrate", "check_available"]


@dataclass(frozen=True)
class _Calibration:
    """A calibrator class and its options from the protocol's ``calibration`` mapping."""

    calibrator: type[Calibrator]
    options: Callable[[CalibrationSpec], dict[str, Any]] = field(default=lambda spec: {})

    def build(self, spec: CalibrationSpec) -> Calibrator:
        return self.calibrator(**self.options(spec))


#: The runner's calibration methods, keyed by the schema's names (``calibration.method``).
CALIBRATORS: dict[str, _Calibration] = {
    "temperature": _Calibration(TemperatureScaling),
    "isotonic": _Calibration(IsotonicRecalibration),
    "conformal": _Calibration(SplitConformal, lambda spec: {"alpha": spec.alpha}),
}


@dataclass(frozen=True)
class Calibrated:
    """One method's calibration.

    Attributes
    ----------
    test : Predictive
        The calibrated test-split predictive.
    transform : callable
        ``Predictive -> Predictive``: the fitted calibrator (the identity for ``none``).
    params : dict
        What to report about the fitted calibrator (its ``params``; ``{}`` for ``none``).
    """

    test: Predictive
    transform: Callable[[Predictive], Predictive]
    params: dict[str, Any]


def available(task: str) -> tuple[str, ...]:
    """The calibration methods this release runs for ``task``."""
    names = sorted(n for n, c in CALIBRATORS.items() if task in c.calibrator.tasks)
    return (*names, NO_CALIBRATION)


def check_available(protocol: Protocol) -> None:
    """Refuse a calibration method the schema knows but this release does not run for the task."""
    names = available(protocol.task)
    if protocol.calibration.method not in names:
        raise ProtocolError(
            f"{protocol.calibration.method!r} is not available for {protocol.task} in this "
            f"trustml release yet; available: {', '.join(names)}",
            key="calibration.method",
        )


def _identity(pred: Predictive) -> Predictive:
    return pred


def calibrate(
    spec: CalibrationSpec, pred_cal: Predictive, y_cal: np.ndarray, pred_test: Predictive
) -> Calibrated:
    """Fit the protocol's calibrator on the calibration split and calibrate the test split."""
    if spec.method == NO_CALIBRATION:
        return Calibrated(pred_test, _identity, {})
    calibrator = CALIBRATORS[spec.method].build(spec).fit(pred_cal, y_cal)
    return Calibrated(calibrator.transform(pred_test), calibrator.transform, calibrator.params)
