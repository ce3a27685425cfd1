"""Post-hoc calibration fitted on the calibration split only."""

from trustml.calibration.conformal import ConformalRegressor, conformal_quantile

__all__ = ["ConformalRegressor", "conformal_quantile"]
