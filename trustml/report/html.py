"""Render a :class:`~trustml.report.results.RunResults` as one self-contained HTML page.

The page has inline CSS, figures embedded as base64 PNG and no scripts or external URLs, so a
reviewer can read it offline. Every string from the results is HTML-escaped (jinja2 autoescape).

The page is its sections (:data:`trustml.report.sections.SECTIONS`), in order (ids in
brackets): verdict [verdict], data and splits [data], model and training [model], predictive
performance [performance], calibration [calibration], uncertainty [uncertainty], attribution
[attribution], Bayesian diagnostics [bayes], labeling campaign [acquisition], reproducibility [reproducibility], REFORMS
checklist [checklist], and other results [other] for summary keys this version does not know.
Verdict, reproducibility and checklist are always there; every other section appears when the
results hold something for it, so results of older runs, of classification or of regression
all render.

Rendering collects each section's context and figure specs, draws the figures (or takes them
from ``drawn``, e.g. drawn on other MPI ranks: :func:`figure_jobs` lists them with a stable key
and a cost weight, :func:`draw_figures` draws a share of them) and renders the templates.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Mapping
from dataclasses import replace
from typing import Any

import jinja2

from trustml.report import figures, sections
from trustml.report._format import format_ci, format_count, format_number, format_pct
from trustml.report._stored import bounded_view, row_stride, subsampled
from trustml.report.sections import (
    KNOWN_SUMMARY_KEYS,
    Content,
    FigureSpec,
    ReportInput,
    ResultsLike,
    Section,
    ShownFigure,
    compared_methods,
)

# Re-exported for reading; the sections use their own module's values.
from trustml.report.sections.attribution import MAX_EXAMPLES, MAX_GRID_ROWS
from trustml.report.sections.bayes import MAX_DIAGNOSTIC_ROWS

__all__ = [
    "KNOWN_SUMMARY_KEYS",
    "MAX_DIAGNOSTIC_ROWS",
    "MAX_EXAMPLES",
    "MAX_GRID_ROWS",
    "SECTIONS",
    "draw_figures",
    "figure_jobs",
    "format_number",
    "render_html",
]

SECTIONS: tuple[tuple[str, str], ...] = tuple((s.id, s.title) for s in sections.SECTIONS)
"""Section ids and titles, in page order."""


def render_html(
    results: ResultsLike, *, outdir: str | None = None, drawn: Mapping[str, Any] | None = None
) -> str:
    """Render ``results`` as one self-contained HTML page.

    Parameters
    ----------
    results : RunResults
        What a run produced; only ``summary``, ``arrays``, ``manifest`` and ``protocol_text``
        are read.
    outdir : str, optional
        The results directory, shown in the reproduce commands (``OUTDIR`` when not given).
    drawn : dict, optional
        Figures drawn beforehand by :func:`draw_figures` (e.g. on other MPI ranks), keyed as
        :func:`figure_jobs` lists them; figures missing from it are drawn here.

    Returns
    -------
    str
        The HTML page.

    Raises
    ------
    DataError
        If arrays that belong together have inconsistent shapes (the message names them).
    """
    done = dict(drawn or {})
    context: dict[str, Any] = {
        "title": str(results.summary.get("name") or "unnamed run"),
        "task": results.summary.get("task"),
        "seed": results.summary.get("seed"),
        "subsampled": _subsampled(results.arrays),
    }
    shown: list[tuple[Section, bool]] = []
    for section, content in _build(results, outdir):
        # Each section's figures are drawn before the next is built, as the page reads.
        uris = {f.key: done[f.key] if f.key in done else _draw(f) for f in _figures(content)}
        context[section.id] = _resolve(content.context, uris) if content else None
        shown.append((section, content is not None))
    context["sections"] = [(s.id, s.title) for s, on in shown if on]
    context["page"] = [(s.template, on) for s, on in shown]
    return _environment().get_template("report.html.j2").render(**context)


def figure_jobs(results: ResultsLike) -> list[tuple[str, float]]:
    """The figures the report of ``results`` holds, in page order, without drawing any.

    Returns
    -------
    list of (str, float)
        ``(key, weight)`` per figure: a stable key (``"calibration/reliability"``) for
        :func:`draw_figures` and ``render_html(drawn=)``, and a rough relative drawing cost (1
        for a one-panel plot) for sharing the work out.
    """
    return [(f.key, f.weight) for _, content in _build(results, None) for f in _figures(content)]


def draw_figures(results: ResultsLike, keys: Collection[str]) -> dict[str, Any]:
    """Draw the figures named in ``keys`` (from :func:`figure_jobs`), and only those.

    The result, merged over the workers that drew the figures, is ``render_html``'s ``drawn``.
    Keys of figures this report does not have are ignored.
    """
    wanted = frozenset(keys)
    return {
        f.key: _draw(f)
        for _, content in _build(results, None)
        for f in _figures(content)
        if f.key in wanted
    }


def _build(results: ResultsLike, outdir: str | None) -> Iterator[tuple[Section, Content | None]]:
    """Every section with what it shows (``None``: not on the page), built in page order."""
    run = ReportInput(
        results=results,
        outdir=outdir or "OUTDIR",
        methods=compared_methods(results.summary),
        known_keys=KNOWN_SUMMARY_KEYS,
        view=bounded_view(results.arrays),
    )
    present: list[str] = []
    for section in sections.SECTIONS:
        content = section.build(replace(run, present=frozenset(present)))
        if content is not None:
            present.append(section.id)
        yield section, content


def _subsampled(arrays: Mapping[str, Any]) -> dict[str, int] | None:
    """What the page says when its figures read a subsample of the largest arrays."""
    cut = subsampled(arrays)
    if not cut:
        return None
    rows = max(n for _, n in cut.values())
    return {"rows": rows, "stride": row_stride(rows), "read": len(range(0, rows, row_stride(rows)))}


def _figures(content: Content | None) -> tuple[FigureSpec, ...]:
    return content.figures if content is not None else ()


def _draw(spec: FigureSpec) -> str | None:
    """The PNG data URI of the figure ``spec`` draws (``None`` if it draws none)."""
    fig = spec.draw()
    return figures.to_data_uri(fig) if fig is not None else None


def _resolve(value: Any, uris: Mapping[str, str | None]) -> Any:
    """``value`` with every figure spec in it replaced by the figure as drawn.

    A figure that drew nothing becomes ``None``, and is dropped from lists.
    """
    if isinstance(value, FigureSpec):
        uri = uris[value.key]
        return None if uri is None else ShownFigure(uri, value.caption, value.alt)
    if isinstance(value, dict):
        return {k: _resolve(v, uris) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [
            _resolve(v, uris)
            for v in value
            if not (isinstance(v, FigureSpec) and uris[v.key] is None)
        ]
        return items if isinstance(value, list) else tuple(items)
    return value


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trustml.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    env.filters["ci"] = format_ci
    env.filters["count"] = format_count
    env.filters["pct"] = format_pct
    return env
