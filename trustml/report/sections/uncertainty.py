"""Uncertainty: aleatoric against epistemic, spread-skill, entropy, and distribution shift."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.report import figures
from trustml.report._format import as_dict, metric_cell, number
from trustml.report.sections._base import Content, FigureSpec, ReportInput, Section
from trustml.report.sections._methods import Method, array_methods

__all__ = ["SECTION", "build"]

_SPREAD_SKILL_CAPTION = (
    "Spread-skill: test samples sorted by predicted standard deviation into "
    "equal-count bins; root-mean-square predicted std of each bin against the "
    "RMSE of its predictions. Reliable uncertainties follow the diagonal; "
    "points above it are over-confident."
)
_ENTROPY_CAPTION = (
    "Predictive entropy of the test samples the model classifies correctly and "
    "wrongly; useful uncertainty separates the two."
)
_IN_DISTRIBUTION = "test (in distribution)"
_SHIFT_COLUMNS = ("mean_std", "mean_epistemic_var", "mean_entropy", "mean_mutual_information")


def _test(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray | None:
    return arrays.get(rk.path(rk.PRIMARY_TEST, name))


def build(run: ReportInput) -> Content | None:
    """The uncertainty figures, the variance split and the shift table; ``None`` without any."""
    s, arrays = run.summary, run.arrays
    methods = array_methods(run.methods)
    d = as_dict(s.get("data"))
    names = [str(t) for t in d.get("target_names") or []]
    units = d.get("target_units")
    specs: list[FigureSpec] = []
    variance_rows: list[tuple[str, float, float, float | None]] = []
    al, ep = _test(arrays, rk.ALEATORIC_VAR), _test(arrays, rk.EPISTEMIC_VAR)
    if al is not None and ep is not None:
        caption = (
            "Aleatoric (expected noise in the data) against epistemic (disagreement of the "
            "model's members or posterior samples) standard deviation per test sample"
            + (f", {methods[0].label}" if len(methods) > 1 else "")
            + ". Epistemic uncertainty should shrink with more training data; aleatoric "
            "should not."
        )
        specs.append(
            FigureSpec(
                "uncertainty/aleatoric_epistemic",
                lambda: figures.aleatoric_epistemic(al, ep, target_names=names, units=units),
                caption,
                "Aleatoric against epistemic uncertainty",
            )
        )
        if np.ndim(al) and np.ndim(ep):  # scalars: the figure reports them
            variance_rows = _variance_rows(al, ep, names)
    targets = _test(arrays, rk.TARGETS)
    if targets is not None:
        series = {}
        for m in methods:
            mean, std = m.array(arrays, rk.MEAN), m.array(arrays, rk.STD)
            if mean is not None and std is not None:
                series[m.label] = (mean, std)
        if series and figures.has_spread_skill(series, targets):
            specs.append(
                FigureSpec(
                    "uncertainty/spread_skill",
                    lambda: figures.spread_skill(series, targets, target_names=names, units=units),
                    _SPREAD_SKILL_CAPTION,
                    "Spread-skill plot",
                )
            )
    labels, probs = _test(arrays, rk.LABELS), _test(arrays, rk.PROBS)
    if labels is not None and probs is not None:
        specs.append(
            FigureSpec(
                "uncertainty/entropy",
                lambda: figures.entropy_histogram(probs, labels),
                _ENTROPY_CAPTION,
                "Entropy of right and wrong predictions",
            )
        )
    shifts = _shifts(s, arrays, methods)
    if not specs and not variance_rows and shifts is None:
        return None
    all_specs = tuple(specs) + ((shifts["figure"],) if shifts and shifts["figure"] else ())
    return Content({"figures": specs, "variance": variance_rows, "shifts": shifts}, all_specs)


def _variance_rows(
    al: np.ndarray, ep: np.ndarray, names: list[str]
) -> list[tuple[str, float, float, float | None]]:
    """``(target, mean aleatoric, mean epistemic, epistemic share)`` per target."""
    al2, ep2 = np.asarray(al, dtype=float), np.asarray(ep, dtype=float)
    al2 = al2.reshape(al2.shape[0], -1)
    ep2 = ep2.reshape(ep2.shape[0], -1)
    out = []
    for j in range(min(al2.shape[1], ep2.shape[1])):
        a_mean, e_mean = float(np.nanmean(al2[:, j])), float(np.nanmean(ep2[:, j]))
        total = a_mean + e_mean
        out.append(
            (
                names[j] if j < len(names) else f"target {j}",
                a_mean,
                e_mean,
                e_mean / total if total > 0 else None,
            )
        )
    return out


def _shifts(
    s: Mapping[str, Any], arrays: Mapping[str, np.ndarray], methods: tuple[Method, ...]
) -> dict[str, Any] | None:
    """The primary method on each shifted test set next to the test split, and a figure.

    Shift ladders (entries with a ``ladder``) have their own section (``shift``).
    """
    shifts = {k: v for k, v in as_dict(s.get("shifts")).items() if "ladder" not in as_dict(v)}
    if not shifts:
        return None
    classification = s.get("task") == "classification"
    metrics0 = methods[0].metrics if methods else as_dict(s.get("metrics"))
    names: list[str] = []
    for src in [metrics0] + [as_dict(as_dict(v).get("metrics")) for v in shifts.values()]:
        names += [k for k in src if k not in names]
    test_std, test_probs = _test(arrays, rk.STD), _test(arrays, rk.PROBS)
    test_ep = _test(arrays, rk.EPISTEMIC_VAR)
    rows = [
        {
            "name": _IN_DISTRIBUTION,
            "n": as_dict(as_dict(s.get("data")).get("splits")).get("test"),
            "mean_std": float(np.nanmean(test_std)) if test_std is not None else None,
            "mean_epistemic_var": float(np.nanmean(test_ep)) if test_ep is not None else None,
            "mean_entropy": (
                float(np.mean(figures.predictive_entropy(test_probs)))
                if test_probs is not None and np.ndim(test_probs) == 2
                else None
            ),
            "mean_mutual_information": None,
            "cells": [metric_cell(metrics0.get(n)) for n in names],
        }
    ]
    series: dict[str, np.ndarray] = {}
    _add_series(series, _IN_DISTRIBUTION, test_probs, test_std, classification)
    for name, shift in shifts.items():
        sh = as_dict(shift)
        rows.append(
            {
                "name": str(name),
                "n": sh.get("n"),
                **{c: sh.get(c) for c in _SHIFT_COLUMNS},
                "cells": [metric_cell(as_dict(sh.get("metrics")).get(n)) for n in names],
            }
        )
        group = rk.shift(name)
        probs, std = arrays.get(rk.path(group, rk.PROBS)), arrays.get(rk.path(group, rk.STD))
        _add_series(series, str(name), probs, std, classification)
    columns = [c for c in _SHIFT_COLUMNS if any(number(r[c]) is not None for r in rows)]
    return {
        "metric_names": names,
        "columns": columns,
        "rows": rows,
        "figure": _shift_figure(series, classification),
    }


def _add_series(
    series: dict[str, np.ndarray],
    name: str,
    probs: np.ndarray | None,
    std: np.ndarray | None,
    classification: bool,
) -> None:
    """The per-sample uncertainty of one test set: entropy (classification) or mean std."""
    if classification and probs is not None and np.ndim(probs) == 2:
        series[name] = figures.predictive_entropy(probs)
    elif std is not None:
        series[name] = _per_sample_mean(std)


def _shift_figure(series: dict[str, np.ndarray], classification: bool) -> FigureSpec | None:
    if not figures.has_uncertainty_under_shift(series):
        return None
    quantity = "predictive entropy" if classification else "predicted std, mean over targets"
    unit = "nats" if classification else None
    return FigureSpec(
        "uncertainty/shift",
        lambda: figures.uncertainty_under_shift(series, quantity=quantity, unit=unit),
        f"Distribution of the {quantity} of the primary method on the in-distribution test "
        "split and on each shifted test set. Uncertainty that rises under shift warns the "
        "user; uncertainty that stays flat while errors grow does not.",
        "Uncertainty under distribution shift",
    )


def _per_sample_mean(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v.reshape(v.shape[0], -1).mean(axis=1) if v.ndim >= 1 and v.size else v.ravel()


SECTION = Section("uncertainty", "Uncertainty", build, reads=frozenset({"shifts"}))
