"""Other results: summary keys that no section of this version reads, shown as they are."""

from __future__ import annotations

from trustml.report._format import pretty
from trustml.report.sections._base import Content, ReportInput, Section

__all__ = ["SECTION", "build"]


def build(run: ReportInput) -> Content | None:
    """``(key, value)`` of every unknown summary key, sorted; ``None`` when there are none."""
    s = run.summary
    other = [(k, pretty(s[k])) for k in sorted(s) if k not in run.known_keys]
    return Content(other) if other else None


SECTION = Section("other", "Other results", build)
