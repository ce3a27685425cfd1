"""Reports: a run's results -> ``results.json``, ``arrays.h5``, ``manifest.json``, ``report.html``.

The report layer reads only a :class:`RunResults`; it never imports models, training or
attribution code, so any report can be rebuilt from a results directory without a GPU.
"""

from trustml.report.html import render_html
from trustml.report.results import (
    FORMAT_VERSION,
    RESULT_FILES,
    RunResults,
    json_bytes,
    rebuild_report,
    results_schema,
    write_report,
)

__all__ = [
    "FORMAT_VERSION",
    "RESULT_FILES",
    "RunResults",
    "json_bytes",
    "rebuild_report",
    "render_html",
    "results_schema",
    "write_report",
]
