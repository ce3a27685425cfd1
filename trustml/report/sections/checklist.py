"""REFORMS checklist: where this report covers each item, or the author's claims and limits."""

from __future__ import annotations

from trustml.report.reforms import crosswalk
from trustml.report.sections._base import Content, ReportInput, Section

__all__ = ["SECTION", "build"]


def build(run: ReportInput) -> Content:
    """The cross-walk of :mod:`trustml.report.reforms`; always on the page.

    An item counts as covered only when the section that covers it is on the page above.
    """
    results = run.results
    return Content(crosswalk(results.summary, results.manifest, results.protocol_text, run.present))


SECTION = Section(
    "checklist", "REFORMS checklist", build, reads=frozenset({"claims", "limitations"})
)
