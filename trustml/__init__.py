"""trustml: how far can a deep-learning model of scientific data be trusted?

Names are imported lazily, so ``trustml --help`` does not pay for torch.

>>> import trustml as tm
>>> ens = tm.DeepEnsemble(make_net, members=5, task="regression", seed=0).fit(x, y)  # doctest: +SKIP
>>> pred = ens.predict(x_test)                                                       # doctest: +SKIP
>>> lower, upper = pred.interval(0.9)                                                 # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = _metadata.version("trustml")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

_LAZY = {
    "DeepEnsemble": "trustml.uq",
    "BayesianNN": "trustml.uq",
    "MCDropout": "trustml.uq",
    "Laplace": "trustml.uq",
    "Predictive": "trustml.uq",
    "SplitConformal": "trustml.calibration",
    "TemperatureScaling": "trustml.calibration",
    "IsotonicRecalibration": "trustml.calibration",
    "DataError": "trustml.exceptions",
    "NotFittedError": "trustml.exceptions",
    "ProtocolError": "trustml.exceptions",
    "TrustmlError": "trustml.exceptions",
    "TrustmlInputError": "trustml.exceptions",
}
_SUBMODULES = ("calibration", "data", "explain", "metrics", "models", "protocol", "report", "uq")

__all__ = sorted([*_LAZY, *_SUBMODULES, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from trustml import calibration, data, explain, metrics, models, protocol, report, uq
    from trustml.calibration import IsotonicRecalibration, SplitConformal, TemperatureScaling
    from trustml.exceptions import (
        DataError,
        NotFittedError,
        ProtocolError,
        TrustmlError,
        TrustmlInputError,
    )
    from trustml.uq import DeepEnsemble, Predictive


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"trustml.{name}")
    else:
        raise AttributeError(f"module 'trustml' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
