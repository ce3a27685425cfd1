"""Metrics as pure functions of numpy arrays or torch tensors (no ``nn.Module``).

Scalar metrics return a Python ``float``; curves return numpy arrays. Inputs are validated
once and read as float64; a non-finite value, a shape mismatch or an invalid probability raises
:class:`~trustml.exceptions.TrustmlInputError` naming the array. ``METRICS`` maps the protocol's
metric names to :class:`MetricSpec` descriptors.

Examples
--------
>>> import trustml.metrics as tmm
>>> tmm.rmse([1.0, 2.0], [1.0, 4.0])
1.4142135623730951
>>> tmm.METRICS.get("crps").needs("regression")
('mean', 'std')
"""

from trustml.metrics.bootstrap import bootstrap_ci
from trustml.metrics.classification import (
    ReliabilityCurve,
    accuracy,
    brier_score,
    expected_calibration_error,
    nll_categorical,
    reliability_curve,
)
from trustml.metrics.regression import (
    DEFAULT_LEVELS,
    calibration_curve_regression,
    coverage,
    crps_ensemble,
    crps_gaussian,
    gaussian_nll,
    interval_width,
    mae,
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
    "accuracy",
    "bootstrap_ci",
    "brier_score",
    "calibration_curve_regression",
    "coverage",
    "crps_ensemble",
    "crps_gaussian",
    "expected_calibration_error",
    "gaussian_nll",
    "interval_width",
    "mae",
    "metric_names",
    "nll_categorical",
    "reliability_curve",
    "rmse",
]
