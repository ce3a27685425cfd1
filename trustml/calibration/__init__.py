"""Post-hoc calibration, fitted on a calibration split only.

Every calibrator follows one contract (:class:`Calibrator`): ``fit(predictive_cal, y_cal)``
returns ``self``, ``transform(predictive)`` returns a new, calibrated
:class:`~trustml.Predictive` whose ``calibration`` field records what changed, ``params`` holds
the fitted numbers worth reporting, and ``tasks`` names the tasks it calibrates.

- :class:`TemperatureScaling`: classification; one temperature on member logits.
- :class:`IsotonicRecalibration`: regression; isotonic map of the PIT (quantile recalibration).
- :class:`SplitConformal`: regression intervals and classification prediction sets.

Examples
--------
>>> import numpy as np
>>> from trustml import Predictive
>>> from trustml.calibration import SplitConformal
>>> p = Predictive.regression(np.zeros((2, 50, 1)), np.ones((2, 50, 1)))
>>> y = np.random.default_rng(0).normal(size=(50, 1))
>>> lo, hi = SplitConformal(alpha=0.2).fit(p, y).transform(p).interval(0.8)
"""

from trustml.calibration._base import Calibrator
from trustml.calibration.conformal import SplitConformal, conformal_quantile
from trustml.calibration.isotonic import IsotonicRecalibration
from trustml.calibration.temperature import TemperatureScaling
from trustml.uq.predictive import CalibrationMap

__all__ = [
    "CalibrationMap",
    "Calibrator",
    "IsotonicRecalibration",
    "SplitConformal",
    "TemperatureScaling",
    "conformal_quantile",
]
