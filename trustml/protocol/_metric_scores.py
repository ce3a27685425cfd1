"""Scoring one set of predictions: metric values with bootstrap CIs, from a predictive.

Shared by the scoring stage, the shift ladders and the labeling campaign.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml import metrics as M
from trustml.uq import Predictive

__all__ = ["N_BOOT", "meets", "quantities", "score"]

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


def quantities(pred: Predictive, level: float) -> dict[str, np.ndarray]:
    """What the metrics read from a predictive (regression: at the interval ``level``)."""
    if pred.task == "classification":
        return {"probs": pred.probs}
    lower, upper = pred.interval(level)
    return {"mean": pred.mean, "std": pred.std, "lower": lower, "upper": upper}


def meets(value: float | None, bound: str, threshold: float) -> bool:
    """Whether a metric value meets an acceptance bound (``"min"``: ``>=``, ``"max"``: ``<=``).
    A missing or NaN value never does."""
    return value is not None and bool(value >= threshold if bound == "min" else value <= threshold)
