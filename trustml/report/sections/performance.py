"""Predictive performance: every metric of every method and reference predictor, best in bold.

Which way a metric is better comes from the metrics registry
(:attr:`trustml.metrics.specs.MetricSpec.higher_is_better`). Only metrics that score the
predictions against the truth are ranked: one computed from the predictions alone (interval
width) can be won by a useless predictor (zero-width intervals), so narrower is only better at
equal coverage. Names the registry does not know get no direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trustml.metrics.specs import METRICS
from trustml.report._format import arrow, as_dict, metric_cell, number
from trustml.report.sections._base import Content, ReportInput, Section

__all__ = ["SECTION", "build", "direction"]


def direction(name: str) -> bool | None:
    """``True`` when a higher value of metric ``name`` ranks a predictor better, ``False``
    when a lower one does, ``None`` when its value alone does not rank predictors."""
    if name not in METRICS:
        return None
    spec = METRICS.get(name)
    if not any(impl.uses_target for impl in spec.impls.values()):
        return None
    return spec.higher_is_better


def build(run: ReportInput) -> Content | None:
    """One row per method and reference, one column per metric; ``None`` without metrics."""
    s, methods = run.summary, run.methods
    refs = _references(s)
    if not any(m.metrics for m in methods) and not refs:
        return None
    names: list[str] = []
    for src in [m.metrics for m in methods] + [r["metrics"] for r in refs]:
        names += [k for k in src if k not in names]
    table = [
        {
            "label": m.label,
            "kind": "method",
            "detail": m.method if m.method != m.label else None,
            "primary": m.primary,
            "cells": [metric_cell(m.metrics.get(n)) for n in names],
        }
        for m in methods
    ]
    table += [
        {
            "label": r["label"],
            "kind": "reference",
            "detail": r["description"],
            "primary": False,
            "cells": [metric_cell(r["metrics"].get(n)) for n in names],
        }
        for r in refs
    ]
    directions = [direction(n) for n in names]
    best = [_best(table, j, higher) for j, higher in enumerate(directions)]
    headers = [(n, arrow(higher)) for n, higher in zip(names, directions, strict=True)]
    return Content({"headers": headers, "rows": table, "best": best, "has_reference": bool(refs)})


def _best(table: list[dict[str, Any]], j: int, higher: bool | None) -> int | None:
    """The row of the best value in column ``j`` (the first of equals), if it can be ranked."""
    values = [number(row["cells"][j].get("value")) for row in table]
    candidates = [(v, i) for i, v in enumerate(values) if v is not None]
    if higher is None or len(candidates) < 2:
        return None
    if higher:
        return max(candidates, key=lambda t: (t[0], -t[1]))[1]
    return min(candidates)[1]


def _references(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    ref = as_dict(s.get("reference"))
    if ref:
        return [
            {
                "label": str(name),
                "description": as_dict(r).get("description"),
                "metrics": as_dict(as_dict(r).get("metrics")),
            }
            for name, r in ref.items()
        ]
    baseline = as_dict(s.get("baseline_metrics"))
    if baseline:
        description = (
            "class frequencies of the training split"
            if s.get("task") == "classification"
            else "training mean and spread (climatology)"
        )
        return [{"label": "baseline", "description": description, "metrics": baseline}]
    return []


SECTION = Section(
    "performance",
    "Predictive performance",
    build,
    reads=frozenset({"reference", "baseline_metrics"}),
)
