"""Calibration: each method's calibrator, coverage curves, PIT histograms, reliability."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.report import figures
from trustml.report._format import as_dict, flat_dict, pretty
from trustml.report.sections._base import Content, FigureSpec, ReportInput, Section
from trustml.report.sections._methods import Method, array_methods

__all__ = ["SECTION", "build"]

_PIT_CAPTION = (
    "Histogram of probability integral transform (PIT) values on the test split, all "
    "targets pooled, before (dashed outline) and after (filled) calibration. A flat "
    "histogram at density 1 is calibrated; a U shape is over-confident, a hump "
    "under-confident, a slope biased."
)
_RELIABILITY_CAPTION = (
    "Reliability diagram on the test split: accuracy against mean confidence of "
    "the predicted class per confidence bin (dashed: before calibration). "
    "Points below the diagonal mean over-confident probabilities; the lower "
    "panel counts samples per bin."
)


def build(run: ReportInput) -> Content | None:
    """The calibrators' settings and the calibration figures; ``None`` when there are none."""
    methods = array_methods(run.methods)
    cals = {m.label: flat_dict(m.calibration) for m in methods if m.calibration}
    keys: list[str] = []
    for flat in cals.values():
        keys += [k for k in flat if k not in keys]
    table = [(k, [pretty(cals[lbl].get(k)) for lbl in cals]) for k in keys]
    specs = [
        spec
        for spec in (
            _coverage(methods),
            _pit(run.arrays, methods),
            _predicted_vs_true(run.summary, run.arrays, methods),
            _reliability(run.arrays, methods),
        )
        if spec is not None
    ]
    if not table and not specs:
        return None
    return Content({"labels": list(cals), "settings": table, "figures": specs}, tuple(specs))


def _coverage(methods: tuple[Method, ...]) -> FigureSpec | None:
    curves = {m.label: m.coverage_curve for m in methods if m.coverage_curve}
    if not figures.has_coverage_curves(curves):
        return None
    caption = (
        "Empirical coverage of central prediction intervals on the test split against "
        "their nominal level"
        + (", every method overlaid in its own colour" if len(curves) > 1 else "")
        + "; dashed: before calibration, solid: after. Points below the diagonal mean "
        "over-confident intervals."
    )
    return FigureSpec(
        "calibration/coverage",
        lambda: figures.coverage_curves(curves),
        caption,
        "Coverage against nominal level",
    )


def _pit(arrays: Mapping[str, np.ndarray], methods: tuple[Method, ...]) -> FigureSpec | None:
    pits = {}
    for m in methods:
        after, before = m.array(arrays, rk.PIT), m.array(arrays, rk.PIT_RAW)
        if after is not None or before is not None:
            pits[m.label] = (after, before)
    if not figures.has_pit_histograms(pits):
        return None
    return FigureSpec(
        "calibration/pit", lambda: figures.pit_histograms(pits), _PIT_CAPTION, "PIT histograms"
    )


def _predicted_vs_true(
    s: Mapping[str, Any], arrays: Mapping[str, np.ndarray], methods: tuple[Method, ...]
) -> FigureSpec | None:
    targets = arrays.get(rk.path(rk.PRIMARY_TEST, rk.TARGETS))
    mean = arrays.get(rk.path(rk.PRIMARY_TEST, rk.MEAN))
    if targets is None or mean is None:
        return None
    d = as_dict(s.get("data"))

    def draw() -> Any:
        return figures.predicted_vs_true(
            targets,
            mean,
            lower=arrays.get(rk.path(rk.PRIMARY_TEST, rk.LOWER)),
            upper=arrays.get(rk.path(rk.PRIMARY_TEST, rk.UPPER)),
            std=arrays.get(rk.path(rk.PRIMARY_TEST, rk.STD)),
            target_names=[str(t) for t in d.get("target_names") or []],
            units=d.get("target_units"),
        )

    caption = (
        (f"{methods[0].label}: p" if len(methods) > 1 else "P")
        + "redicted mean against the true value on the test split, with calibrated "
        "prediction intervals; crosses mark intervals that miss the truth."
    )
    return FigureSpec(
        "calibration/predicted_vs_true", draw, caption, "Predicted against true values"
    )


def _reliability(
    arrays: Mapping[str, np.ndarray], methods: tuple[Method, ...]
) -> FigureSpec | None:
    labels = arrays.get(rk.path(rk.PRIMARY_TEST, rk.LABELS))
    if labels is None:
        return None
    many = len(methods) > 1
    series: dict[str, np.ndarray] = {}
    styles: dict[str, tuple[str, str]] = {}
    for m in methods:
        probs, raw = m.array(arrays, rk.PROBS), m.array(arrays, rk.PROBS_RAW)
        prefix = f"{m.label}, " if many else ""
        if raw is not None:
            key = f"{prefix}before calibration"
            series[key] = raw
            styles[key] = (m.colour if many else figures.ORANGE, "--")
        if probs is not None:
            key = f"{prefix}after calibration" if raw is not None or many else m.label
            series[key] = probs
            styles[key] = (m.colour, "-")
    if not series:
        return None
    return FigureSpec(
        "calibration/reliability",
        lambda: figures.reliability_diagram(series, labels, styles=styles),
        _RELIABILITY_CAPTION,
        "Reliability diagram",
    )


SECTION = Section(
    "calibration", "Calibration", build, reads=frozenset({"calibration", "coverage_curve"})
)
