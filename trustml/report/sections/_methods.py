"""The uncertainty methods a run compared, as every section reads them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.report._format import as_dict, number, or_default
from trustml.report.figures import method_colour

__all__ = ["READS", "Method", "array_methods", "compared_methods"]

READS = frozenset({"methods", "metrics", "calibration", "coverage_curve", "uncertainty"})
"""The summary keys :func:`compared_methods` reads."""

_PER_METHOD = ("metrics", "calibration", "coverage_curve", "history")
"""Fields a method without them takes from the top-level keys (which describe the primary)."""


@dataclass(frozen=True)
class Method:
    """One compared uncertainty method, with everything the results hold about it.

    ``group`` is where its test-split arrays are in ``arrays.h5``
    (:func:`trustml.results_keys.method_test`); ``colour`` is its colour in every figure.
    """

    label: str
    method: Any
    primary: bool
    colour: str
    group: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    coverage_curve: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def array(self, arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray | None:
        """This method's test-split array ``name`` (one of :data:`trustml.results_keys.ARRAYS`)."""
        return arrays.get(rk.path(self.group, name))


def compared_methods(s: Mapping[str, Any]) -> tuple[Method, ...]:
    """Every compared uncertainty method, the primary one first.

    Reads ``summary["methods"]``; a result without it (or whose primary entry lacks a field)
    falls back to the top-level keys, which always describe the primary method.
    """
    u = as_dict(s.get("uncertainty"))
    top = {
        "metrics": as_dict(s.get("metrics")),
        "calibration": as_dict(s.get("calibration")),
        "coverage_curve": as_dict(s.get("coverage_curve")),
        "history": as_dict(u.get("history")),
    }
    raw = as_dict(s.get("methods"))
    out: list[dict[str, Any]] = []
    for label, entry in raw.items():
        e = as_dict(entry)
        out.append(
            {
                "label": str(label),
                "method": e.get("method") or str(label),
                "primary": bool(e.get("primary")),
                "settings": as_dict(e.get("settings")),
                "diagnostics": as_dict(e.get("diagnostics")),
                **{key: as_dict(e.get(key)) for key in _PER_METHOD},
            }
        )
    # results.json sorts keys, so the protocol's order comes from each entry's "index".
    order = {str(k): number(as_dict(v).get("index")) for k, v in raw.items()}
    out.sort(key=lambda m: or_default(order[m["label"]], math.inf))
    if out and not any(m["primary"] for m in out):
        out[0]["primary"] = True
    out.sort(key=lambda m: not m["primary"])  # stable: the primary first, the rest in order
    if not out and (u or top["metrics"] or top["calibration"] or top["coverage_curve"]):
        settings = {k: v for k, v in u.items() if k not in ("method", "history", "diagnostics")}
        out.append(
            {
                "label": str(u.get("method") or "model"),
                "method": u.get("method"),
                "primary": True,
                "settings": settings,
                "diagnostics": as_dict(u.get("diagnostics")),
                **top,
            }
        )
    elif out:
        for key, value in top.items():
            if not out[0][key]:
                out[0][key] = value
    return tuple(
        Method(
            colour=method_colour(i),
            group=rk.method_test(m["label"], primary=m["primary"]),
            **m,
        )
        for i, m in enumerate(out)
    )


def array_methods(methods: tuple[Method, ...]) -> tuple[Method, ...]:
    """``methods``, or one unnamed primary method when the summary names none: its arrays at
    the primary test group are still drawn."""
    if methods:
        return methods
    return (
        Method(
            label="model",
            method=None,
            primary=True,
            colour=method_colour(0),
            group=rk.method_test("model", primary=True),
        ),
    )
