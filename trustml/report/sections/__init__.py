"""The sections of a report, one module each, in page order.

Each module defines ``SECTION``, a :class:`~trustml.report.sections._base.Section` whose
``build`` turns a :class:`~trustml.report.sections._base.ReportInput` into its template's
context and its figure specs; its template is ``templates/<id>.html.j2``. To add a
section, write ``sections/<id>.py`` and its template, and list its ``SECTION`` in
:data:`SECTIONS` below, where it belongs on the page.
"""

from trustml.report.sections import (
    acquisition,
    attribution,
    bayes,
    calibration,
    checklist,
    data,
    model,
    other,
    performance,
    reproducibility,
    search,
    shift,
    uncertainty,
    verdict,
)
from trustml.report.sections._base import (
    Content,
    FigureSpec,
    ReportInput,
    ResultsLike,
    Section,
    ShownFigure,
)
from trustml.report.sections._methods import READS as _METHOD_READS
from trustml.report.sections._methods import Method, compared_methods

__all__ = [
    "KNOWN_SUMMARY_KEYS",
    "PAGE_KEYS",
    "SECTIONS",
    "Content",
    "FigureSpec",
    "Method",
    "ReportInput",
    "ResultsLike",
    "Section",
    "ShownFigure",
    "compared_methods",
]

SECTIONS: tuple[Section, ...] = (
    verdict.SECTION,
    data.SECTION,
    model.SECTION,
    performance.SECTION,
    search.SECTION,
    calibration.SECTION,
    uncertainty.SECTION,
    shift.SECTION,
    attribution.SECTION,
    bayes.SECTION,
    acquisition.SECTION,
    reproducibility.SECTION,
    checklist.SECTION,
    other.SECTION,
)
"""Every section, in page order. A section sees which sections above it are on the page."""

PAGE_KEYS = frozenset({"name", "task", "seed"})
"""Summary keys the page header shows."""

KNOWN_SUMMARY_KEYS: frozenset[str] = PAGE_KEYS.union(_METHOD_READS, *(s.reads for s in SECTIONS))
"""Summary keys some section reads; the others are listed under "Other results"."""
