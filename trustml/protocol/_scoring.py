"""Metric evaluation with bootstrap intervals, trivial baselines, and acceptance criteria."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from trustml import metrics as M

N_BOOT = 1000


def score(
    names: list[str],
    y: np.ndarray,
    quantities: Mapping[str, np.ndarray],
    *,
    seed: Any,
    n_boot: int = N_BOOT,
) -> dict[str, dict[str, Any]]:
    """``{metric: {"value": v, "ci": [lo, hi]}}`` on the test split, with bootstrap 95 % CIs.

    The task is read from the quantities given (``probs`` -> classification).
    """
    task = "classification" if "probs" in quantities else "regression"
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = M.METRICS.get(name)
        needs = spec.needs(task)

        def fn(y_: np.ndarray, *q: np.ndarray, _spec=spec, _needs=needs) -> float:
            return _spec.compute(task, y_, **dict(zip(_needs, q, strict=True)))

        arrays = [y, *(quantities[q] for q in needs)]
        value = float(fn(*arrays))
        lo, hi = M.bootstrap_ci(fn, *arrays, n_boot=n_boot, level=0.95, seed=seed)
        out[name] = {"value": value, "ci": [float(lo), float(hi)]}
    return out


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


def acceptance(
    criteria: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per bound: ``{"metric", "bound", "threshold", "value", "ci", "passed"}``."""
    rows = []
    for name, bound in criteria.items():
        value = metrics[name]["value"]
        for kind in ("min", "max"):
            threshold = getattr(bound, kind)
            if threshold is None:
                continue
            passed = value >= threshold if kind == "min" else value <= threshold
            rows.append(
                {
                    "metric": name,
                    "bound": kind,
                    "threshold": float(threshold),
                    "value": value,
                    "ci": metrics[name]["ci"],
                    "passed": bool(passed),
                }
            )
    return rows
