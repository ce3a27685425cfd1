"""Metric evaluation with bootstrap intervals, trivial baselines, and acceptance criteria."""

from __future__ import annotations

import hashlib
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


def acceptance(
    criteria: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]],
    primary: str,
) -> list[dict[str, Any]]:
    """One row per bound: ``{"criterion", "metric", "method", "bound", "threshold", "value",
    "ci", "passed"}``.

    ``metrics`` maps each method label to its metrics; a criterion ``"rmse@label"`` applies to
    that method, a plain ``"rmse"`` to the ``primary`` one.
    """
    rows = []
    for key, bound in criteria.items():
        name, _, label = key.partition("@")
        label = label or primary
        entry = metrics[label][name]
        value = entry["value"]
        for kind in ("min", "max"):
            threshold = getattr(bound, kind)
            if threshold is None:
                continue
            # A NaN metric never passes.
            passed = value is not None and (
                value >= threshold if kind == "min" else value <= threshold
            )
            rows.append(
                {
                    "criterion": key,
                    "metric": name,
                    "method": label,
                    "bound": kind,
                    "threshold": float(threshold),
                    "value": value,
                    "ci": entry["ci"],
                    "passed": bool(passed),
                }
            )
    return rows


def scan_split(
    ds: Any, indices: np.ndarray, task: str, *, last_step: bool = False, batch_size: int = 1024
) -> tuple[np.ndarray, list[bytes], np.ndarray | None]:
    """One streamed pass over a split: what scoring needs from its samples.

    Returns
    -------
    y : ndarray
        Class labels ``(n,)`` int64, or regression targets ``(n, D)`` float64.
    hashes : list of bytes
        A digest of every sample's input values (exact duplicates have equal digests).
    last : ndarray of shape (n, F) or None
        With ``last_step``: the last time step of sequence inputs ``(n, T, F)``.
    """
    ys, hashes, lasts = [], [], []
    for start in range(0, len(indices), batch_size):
        x, y = ds.read(indices[start : start + batch_size])
        x = np.ascontiguousarray(x)
        hashes.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x)
        ys.append(y)
        if last_step:
            lasts.append(x[:, -1, :])
    y = np.concatenate(ys)
    y = y.astype(np.int64) if task == "classification" else y.astype(np.float64).reshape(len(y), -1)
    return y, hashes, np.concatenate(lasts) if last_step else None


def duplicates(hashes: Mapping[str, list[bytes]]) -> dict[str, int]:
    """Samples of the later split whose inputs also occur in the earlier one, per pair."""
    sets = {k: set(v) for k, v in hashes.items()}
    out = {}
    for a, b in (("train", "test"), ("train", "calibration"), ("calibration", "test")):
        out[f"{a}_{b}"] = int(sum(h in sets[a] for h in hashes[b]))
    return out


def target_stats(
    ys: Mapping[str, np.ndarray], task: str, names: list[str], n_classes: int
) -> dict[str, Any]:
    """Per split: mean/std/min/max of each target, or class counts."""
    out: dict[str, Any] = {}
    for split, y in ys.items():
        if task == "classification":
            out[split] = {"class_counts": np.bincount(y, minlength=n_classes).tolist()}
            continue
        out[split] = {
            name: {
                "mean": float(y[:, j].mean()),
                "std": float(y[:, j].std(ddof=1)) if len(y) > 1 else 0.0,
                "min": float(y[:, j].min()),
                "max": float(y[:, j].max()),
            }
            for j, name in enumerate(names)
        }
    return out
