"""Metrics as pure functions of numpy arrays or torch tensors (no ``nn.Module``).

Predictions come first and the target last: ``nll_gaussian(mean, std, y)``,
``coverage(lower, upper, y)``, ``ece(probs, labels)``. Per-sample scores return the mean over
samples as a Python ``float``, or the per-sample values with ``reduction="none"``; curves and
diagnostics return arrays or small dataclasses. Inputs are validated once and read as float64;
a non-finite value, a shape mismatch or an invalid probability raises
:class:`~trustml.exceptions.TrustmlInputError` naming the array. ``METRICS`` maps the protocol's
metric names to :class:`MetricSpec` descriptors.

Examples
--------
>>> import trustml.metrics as tmm
>>> tmm.rmse([1.0, 4.0], [1.0, 2.0])
1.4142135623730951
>>> tmm.METRICS.get("crps").needs("regression")
('mean', 'std')
"""

from trustml.metrics.bootstrap import bootstrap_ci
from trustml.metrics.classification import (
    ReliabilityCurve,
    accuracy,
    adaptive_ece,
    brier,
    ece,
    mce,
    nll_categorical,
    reliability_curve,
)
from trustml.metrics.diagnostics import SpreadSkill, pit, spread_skill
from trustml.metrics.ood import auroc_ood
from trustml.metrics.regression import (
    DEFAULT_LEVELS,
    calibration_curve_regression,
    coverage,
    crps_ensemble,
    crps_gaussian,
    interval_width,
    mae,
    nll_gaussian,
    rmse,
)
from trustml.metrics.specs import METRICS, TASKS, MetricImpl, MetricSpec, metric_names

__all__ = [
    "DEFAULT_LEVELS",
    "METRICS",
    "TASKS",
    "MetricImpl",
    "MetricSpec",
    "ReliabilityCurve",
    "SpreadSkill",
    "accuracy",
    "adaptive_ece",
    "auroc_ood",
    "bootstrap_ci",
    "brier",
    "calibration_curve_regression",
    "coverage",
    "crps_ensemble",
    "crps_gaussian",
    "ece",
    "interval_width",
    "mae",
    "mce",
    "metric_names",
    "nll_categorical",
    "nll_gaussian",
    "pit",
    "reliability_curve",
    "rmse",
    "spread_skill",
]
