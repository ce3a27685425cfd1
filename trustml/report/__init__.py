"""Reports: a run's results -> ``results.json``, ``arrays.h5``, ``manifest.json``, ``report.html``.

The report layer reads only a :class:`RunResults`; it never imports models, training or
attribution code, so any report can be rebuilt from a results directory without a GPU.

- ``results.py``: :class:`RunResults`, its files, :func:`rebuild_report`; the JSON Schema of
  ``results.json`` (``results.schema.json``, whose ``$defs/arrays`` ``_schema.py`` generates
  from :mod:`trustml.results_keys`, the names of ``arrays.h5``).
- ``html.py``: the page. It builds every section, draws the figures (or takes those drawn on
  other MPI ranks) and renders ``templates/report.html.j2``.
- ``sections/``: one module per section, a function from the results to its template's context
  and its figure specs; ``sections.SECTIONS`` lists them in page order. Its template is
  ``templates/<id>.html.j2``.
- ``figures/``: the matplotlib drawing, one module per section that draws.
- ``reforms.py``: the REFORMS checklist items; ``_format.py``: how numbers are written.
- ``_stored.py``: :class:`StoredArray`, an array of ``arrays`` too large to load, read in
  parts; the report reads a subsample of rows of the largest arrays.
"""

from trustml.report._stored import StoredArray
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
    "StoredArray",
    "json_bytes",
    "rebuild_report",
    "render_html",
    "results_schema",
    "write_report",
]
