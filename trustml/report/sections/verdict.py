"""Verdict: pass or fail, and every acceptance criterion with its value and interval."""

from __future__ import annotations

from collections.abc import Mapping

from trustml.report._format import as_dict, bound_sign, format_number
from trustml.report.sections._base import Content, ReportInput, Section

__all__ = ["SECTION", "build"]


def build(run: ReportInput) -> Content:
    """The verdict banner and the acceptance table; always on the page."""
    s, methods = run.summary, run.methods
    status = str(s.get("verdict", "")).lower() or None
    by_label = {m.label: m for m in methods}
    primary_metrics = methods[0].metrics if methods else as_dict(s.get("metrics"))
    rows = []
    for item in s.get("acceptance") or []:
        if not isinstance(item, Mapping):
            continue
        metric = str(item.get("metric", "?"))
        label = item.get("method")
        source = by_label[label].metrics if label in by_label else primary_metrics
        bound = item.get("bound")
        sign = bound_sign(bound)
        rows.append(
            {
                "metric": metric,
                "method": label if label is not None else (methods[0].label if methods else None),
                "value": item.get("value"),
                "ci": item.get("ci", as_dict(source.get(metric)).get("ci")),
                "criterion": f"{sign} {format_number(item.get('threshold'))}",
                "passed": bool(item.get("passed")),
            }
        )
    any_failed = any(not r["passed"] for r in rows)
    inconsistent = (status == "pass" and any_failed) or (
        status == "fail" and rows and not any_failed
    )
    show_method = len(methods) > 1 or any(
        isinstance(i, Mapping) and "method" in i for i in s.get("acceptance") or []
    )
    return Content(
        {
            "status": status,
            "rows": rows,
            "inconsistent": bool(inconsistent),
            "show_method": show_method,
        }
    )


SECTION = Section("verdict", "Verdict", build, reads=frozenset({"verdict", "acceptance"}))
