"""How the report writes numbers and reads loosely typed values from the results.

The formatters are the template's filters (``num``, ``ci``, ``count``, ``pct``); the readers
turn whatever a results file holds (maybe an older or a hand-edited one) into the plain types
the sections expect, never raising.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "arrow",
    "as_dict",
    "bound_sign",
    "flat_dict",
    "flatten",
    "format_ci",
    "format_count",
    "format_number",
    "format_pct",
    "metric_cell",
    "number",
    "or_default",
    "pretty",
    "rows",
]

_MISSING = "\u2014"


def arrow(higher_is_better: Any) -> str:
    """A metric's direction: ``"↑"`` when higher is better, ``"↓"`` when lower is, ``""`` when
    neither is known (``higher_is_better`` is not a bool)."""
    if higher_is_better is True:
        return "\u2191"
    return "\u2193" if higher_is_better is False else ""


def format_number(value: Any) -> str:
    """Format a number for the report: 4 significant digits, ``—`` for missing values."""
    if value is None:
        return _MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}" if math.isfinite(value) else str(float(value))
    return str(value)


def format_ci(ci: Any) -> str:
    """``[lo, hi]`` of a two-element interval, else ``—``."""
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return f"[{format_number(ci[0])}, {format_number(ci[1])}]"
    return _MISSING


def format_count(value: Any) -> str:
    """An integer with thousands separators, else ``—``."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _MISSING


def format_pct(value: Any) -> str:
    """A fraction as a percentage with one decimal, else ``—``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{100 * value:.1f}%"
    return _MISSING


def pretty(value: Any) -> str:
    """A scalar or flat list as formatted numbers; anything else as indented JSON."""
    if isinstance(value, str | int | float) or value is None:
        return format_number(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return "[" + ", ".join(format_number(v) for v in value) + "]"
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def as_dict(value: Any) -> dict[str, Any]:
    """A copy of ``value`` when it is a mapping, else an empty dict."""
    return dict(value) if isinstance(value, Mapping) else {}


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (booleans, strings and NaN are no numbers)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return None


def or_default(value: float | None, default: float) -> float:
    """``value``, or ``default`` when it is ``None``."""
    return default if value is None else value


def rows(mapping: Mapping[str, Any], skip: set[str] | frozenset[str]) -> list[tuple[str, str]]:
    """``(key, pretty value)`` of every entry whose key is not in ``skip``."""
    return [(str(k), pretty(v)) for k, v in mapping.items() if k not in skip]


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Add the leaves of nested mappings to ``out`` under dotted keys (``train.epochs``)."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def flat_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """The leaves of ``value`` under dotted keys."""
    out: dict[str, Any] = {}
    flatten("", value, out)
    return out


def metric_cell(metric: Any) -> dict[str, Any]:
    """``{"value", "ci"}`` of one metric entry of the results."""
    m = as_dict(metric)
    return {"value": m.get("value"), "ci": m.get("ci")}


def bound_sign(bound: Any) -> str:
    """``≥`` for an acceptance ``min`` bound, ``≤`` for a ``max`` one."""
    return {"min": "\u2265", "max": "\u2264"}.get(str(bound), str(bound or ""))
