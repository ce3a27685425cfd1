"""What a report section is: a function from the results to its context and figure specs.

A section module defines ``SECTION = Section(id, title, build, reads=...)``. ``build`` gets a
:class:`ReportInput` and returns a :class:`Content` (``None`` leaves the section off the page):
the context its template ``templates/<id>.html.j2`` reads under the name ``<id>``, and
a :class:`FigureSpec` for every figure, placed in that context where the figure goes. The page
(:mod:`trustml.report.html`) draws the specs, possibly on other MPI ranks, and puts a
:class:`ShownFigure` in place of each before rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trustml.report.sections._methods import Method

__all__ = ["Content", "FigureSpec", "ReportInput", "ResultsLike", "Section", "ShownFigure"]


class ResultsLike(Protocol):
    """What a report reads of a :class:`~trustml.report.results.RunResults`."""

    @property
    def summary(self) -> Mapping[str, Any]: ...

    @property
    def arrays(self) -> Mapping[str, np.ndarray]: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...

    @property
    def protocol_text(self) -> str: ...


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a section, before it is drawn.

    Parameters
    ----------
    key : str
        Stable and unique on the page, ``<section>/<figure>`` (``"calibration/reliability"``,
        ``"attribution/integrated_gradients/examples"``): the key of :func:`figure_jobs`,
        :func:`draw_figures` and ``render_html(drawn=)`` in :mod:`trustml.report.html`.
    draw : callable
        ``draw()`` returns the :class:`matplotlib.figure.Figure`. A section makes a spec only for
        a figure that has something to draw (the figures module's ``has_<name>`` says so).
    caption, alt : str
        The caption under the figure and the image's alternative text.
    weight : float
        Rough drawing cost relative to a one-panel plot, for sharing the figures over ranks.
    """

    key: str
    draw: Callable[[], Any]
    caption: str
    alt: str
    weight: float = 1.0


@dataclass(frozen=True)
class ShownFigure:
    """A drawn figure as the template reads it: ``uri`` is a ``data:image/png;base64`` URI."""

    uri: str
    caption: str
    alt: str


@dataclass(frozen=True)
class Content:
    """What a section puts on the page: its template's context and the figures in it."""

    context: Any
    figures: tuple[FigureSpec, ...] = ()


@dataclass(frozen=True)
class ReportInput:
    """What every section builder reads: the results, and what the page derives from them once.

    Attributes
    ----------
    results : ResultsLike
        The run's results.
    outdir : str
        The results directory as the reproduce commands show it (``OUTDIR`` when unknown).
    methods : tuple of Method
        The compared uncertainty methods, the primary first (:func:`compared_methods`).
    known_keys : frozenset of str
        Summary keys that some section (or the page header) reads.
    present : frozenset of str
        Ids of the sections above this one that are on the page.
    view : mapping, optional
        The arrays as sections read them (:func:`trustml.report._stored.bounded_view`: a
        subsample of rows of the largest); ``results.arrays`` when not given.
    """

    results: ResultsLike
    outdir: str
    methods: tuple[Method, ...]
    known_keys: frozenset[str] = frozenset()
    present: frozenset[str] = frozenset()
    view: Mapping[str, Any] | None = None

    @property
    def summary(self) -> Mapping[str, Any]:
        """``results.json``."""
        return self.results.summary

    @property
    def arrays(self) -> Mapping[str, np.ndarray]:
        """``arrays.h5``, keyed by the paths of :mod:`trustml.results_keys` (at most
        :data:`~trustml.report._stored.REPORT_ROWS` rows of each, see ``view``)."""
        return self.results.arrays if self.view is None else self.view


@dataclass(frozen=True)
class Section:
    """One section of the report.

    Parameters
    ----------
    id : str
        Its anchor on the page and the name its template reads its context under.
    title : str
        Its heading in the page's navigation.
    build : callable
        ``build(ReportInput) -> Content | None``; ``None`` leaves the section off the page.
    reads : frozenset of str
        The top-level summary keys it shows (the others appear under "Other results").
    """

    id: str
    title: str
    build: Callable[[ReportInput], Content | None]
    reads: frozenset[str] = frozenset()

    @property
    def template(self) -> str:
        """Its template, ``<id>.html.j2`` in ``trustml/report/templates``."""
        return f"{self.id}.html.j2"
