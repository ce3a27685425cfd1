"""What every calibrator shares: input checks, the fitted check, target conversion, and the
fitted parameters it reports."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from trustml.exceptions import NotFittedError
from trustml.uq.predictive import Predictive

__all__ = ["Calibrator"]


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


class Calibrator:
    """Base of the calibrators: ``fit(predictive_cal, y_cal) -> self``,
    ``transform(predictive) -> Predictive``, and :attr:`params`, the fitted numbers to report.

    Subclasses set :attr:`tasks` (and ``_fitted_attr`` when ``n_calibration_`` is not the
    last attribute ``fit`` sets), implement ``fit`` and ``transform``, and report their own
    fitted numbers in ``_fitted_params``.
    """

    #: The tasks whose predictives this calibrator calibrates.
    tasks: ClassVar[tuple[str, ...]] = ("regression", "classification")
    _fitted_attr: ClassVar[str] = "n_calibration_"
    n_outputs_: int  # set by fit: number of targets (regression) or classes
    n_calibration_: int  # set by fit: samples of the calibration split

    @property
    def params(self) -> dict[str, Any]:
        """The fitted numbers worth reporting, JSON-ready: ``n_calibration`` (samples of the
        calibration split) and the method's own (e.g. ``temperature``).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        """
        self._check_is_fitted()
        return {"n_calibration": int(self.n_calibration_), **self._fitted_params()}

    def _fitted_params(self) -> dict[str, Any]:
        """The method's own fitted numbers (the hook :attr:`params` calls)."""
        return {}

    def fit(self, predictive: Predictive, y: Any) -> Calibrator:
        """Fit on a calibration-split predictive and its targets or labels; return ``self``."""
        raise NotImplementedError

    def transform(self, predictive: Predictive) -> Predictive:
        """``predictive``, calibrated."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({args})"

    def _check_predictive(self, pred: Any) -> Predictive:
        name = type(self).__name__
        if not isinstance(pred, Predictive):
            raise TypeError(f"{name} expects a trustml Predictive, got {type(pred).__name__}")
        if pred.task not in self.tasks:
            raise ValueError(
                f"{name} calibrates {' and '.join(self.tasks)} predictives, got a {pred.task} one"
            )
        if pred.calibration is not None and not pred.calibration.in_members:
            raise ValueError(
                f"{name}: this predictive is already calibrated ({pred.calibration.method!r}); "
                "fit and transform the model's own predictive instead"
            )
        return pred

    def _check_is_fitted(self) -> None:
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with a "
                "calibration-split predictive and its targets before using it."
            )

    def _check_same_shape(self, pred: Predictive) -> None:
        """``transform`` input must have the fitted number of targets / classes."""
        width = pred.members.shape[2]
        if width != self.n_outputs_:
            kind = "targets" if pred.task == "regression" else "classes"
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.n_outputs_} {kind}, got a predictive "
                f"with {width}"
            )

    @staticmethod
    def _regression_targets(pred: Predictive, y: Any) -> np.ndarray:
        """``y`` as float64 ``(N, D)``; ``(N,)`` is accepted when ``D == 1``."""
        shape = pred.members.shape[1:]
        a = np.asarray(_numpy(y), dtype=np.float64)
        if a.shape == shape[:1] and shape[1] == 1:
            a = a[:, None]
        if a.shape != shape:
            raise ValueError(f"Expected y of shape {shape} to match the predictive, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("Expected finite targets y")
        return a

    @staticmethod
    def _labels(pred: Predictive, labels: Any) -> np.ndarray:
        """Integer labels ``(N,)`` in ``[0, C)``."""
        n, c = pred.members.shape[1:]
        a = _numpy(labels)
        if a.shape != (n,):
            raise ValueError(
                f"Expected labels of shape ({n},) to match the predictive, got {a.shape}"
            )
        if a.dtype.kind == "f" and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        if a.dtype.kind not in "iub" or np.any((a < 0) | (a >= c)):
            raise ValueError(f"Expected integer class labels in [0, {c})")
        return a.astype(np.int64)

    def fit_transform(self, pred: Predictive, y: Any) -> Predictive:
        """``fit(pred, y).transform(pred)``: calibrated predictive of the calibration split."""
        return self.fit(pred, y).transform(pred)
