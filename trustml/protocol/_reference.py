"""The reference predictors a run is compared with: trivial forecasts from the training split.

Regression: climatology (the training mean and spread for every test sample) and, for sequence
inputs, persistence (the last input time step). Classification: the training class frequencies.
Each is a dict of the predictive quantities the metrics read (``mean``, ``std``, ``lower``,
``upper`` or ``probs``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats

from trustml.protocol._splits import SplitScan

__all__ = [
    "classification_baseline",
    "persistence_baseline",
    "reference_predictors",
    "regression_baseline",
]


def regression_baseline(y_train: np.ndarray, n_test: int, level: float) -> dict[str, np.ndarray]:
    """The trivial predictor: the training mean and spread for every test sample."""
    mean = y_train.mean(axis=0)
    std = y_train.std(axis=0, ddof=1)
    half = stats.norm.ppf(0.5 + level / 2.0) * std
    tile = lambda v: np.broadcast_to(v, (n_test, *v.shape)).copy()  # noqa: E731
    return {
        "mean": tile(mean),
        "std": tile(std),
        "lower": tile(mean - half),
        "upper": tile(mean + half),
    }


def classification_baseline(
    y_train: np.ndarray, n_test: int, n_classes: int
) -> dict[str, np.ndarray]:
    """The trivial predictor: training class frequencies for every test sample."""
    freq = np.bincount(y_train, minlength=n_classes).astype(np.float64)
    freq = (freq + 1e-3) / (freq + 1e-3).sum()  # no exact zeros: NLL stays finite
    return {"probs": np.broadcast_to(freq, (n_test, n_classes)).copy()}


def persistence_baseline(
    x_last_train: np.ndarray,
    y_train: np.ndarray,
    x_last_test: np.ndarray,
    level: float,
) -> dict[str, np.ndarray]:
    """Persistence for sequences: tomorrow equals today.

    The mean is the last time step of the input's first ``D`` features; the spread is the
    std of the persistence error on the training split (``D`` = number of targets).
    """
    d = y_train.shape[1]
    resid = y_train - x_last_train[:, :d]
    std = resid.std(axis=0, ddof=1)
    mean = x_last_test[:, :d].astype(np.float64)
    half = stats.norm.ppf(0.5 + level / 2.0) * std
    return {
        "mean": mean,
        "std": np.broadcast_to(std, mean.shape).copy(),
        "lower": mean - half,
        "upper": mean + half,
    }


def reference_predictors(
    task: str,
    scans: Mapping[str, SplitScan],
    *,
    level: float,
    n_classes: int,
    input_width: int,
) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """``{name: (description, quantities on the test split)}``; the first is the baseline.

    Persistence is offered when the scans carry last time steps (sequence inputs) and the
    inputs have at least as many features as there are targets (``input_width``).
    """
    y_train, n_test = scans["train"].y, len(scans["test"].y)
    if task != "regression":
        return {
            "class_frequency": (
                "the training class frequencies for every test sample",
                classification_baseline(y_train, n_test, n_classes),
            )
        }
    out = {
        "climatology": (
            "the training targets' mean and std for every test sample",
            regression_baseline(y_train, n_test, level),
        )
    }
    last_train, last_test = scans["train"].last, scans["test"].last
    if last_train is not None and last_test is not None and input_width >= y_train.shape[1]:
        out["persistence"] = (
            "the last input time step, with the training persistence-error std",
            persistence_baseline(last_train, y_train, last_test, level),
        )
    return out
