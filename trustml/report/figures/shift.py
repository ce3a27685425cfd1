"""Shift-ladder figures: every metric and the mean uncertainty against the shift's intensity.

One panel per quantity, one line per compared method (in its colour everywhere in the report)
with its bootstrap 95% interval as error bars; each method's in-distribution test value is a
dashed line in its colour, and an acceptance bound on the quantity a dotted black line (or a
short black bar at the one level a criterion of that level bounds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from trustml.report.figures._base import floats, grid_shape, new_figure

__all__ = [
    "LadderBound",
    "LadderLine",
    "LadderPanel",
    "has_ladder_curves",
    "ladder_curves",
    "ladder_positions",
]

_BOUND_COLOUR = "#222222"
_DODGE = 0.025
"""Each method's points are shifted by this share of the x range, so error bars do not hide
one another."""


@dataclass(frozen=True)
class LadderLine:
    """One method on one panel: a value per level, optionally its interval and the
    in-distribution reference. ``None`` (or NaN) leaves a level out."""

    values: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None
    reference: float | None = None


@dataclass(frozen=True)
class LadderBound:
    """An acceptance bound drawn on a panel: at every level (``level`` of ``None``) or at the
    level with index ``level`` only."""

    threshold: float
    text: str
    level: int | None = None


@dataclass(frozen=True)
class LadderPanel:
    """One quantity against the level: its title and a line per method label."""

    title: str
    lines: Mapping[str, LadderLine]
    bounds: Sequence[LadderBound] = field(default_factory=tuple)


def ladder_positions(levels: Sequence[Any]) -> list[float]:
    """Where each level sits on the x axis: the level itself, the midpoint of a ``[lo, hi]``
    range; the level's index when some level is no number or two coincide."""
    out: list[float] = []
    for level in levels:
        v = floats(level)
        if v.size not in (1, 2) or not np.all(np.isfinite(v)):
            return [float(j) for j in range(len(levels))]
        out.append(float(v.mean()))
    if len(set(out)) != len(out):
        return [float(j) for j in range(len(levels))]
    return out


def _series(value: Sequence[float | None] | None, n: int) -> np.ndarray | None:
    if value is None or len(value) != n:
        return None
    return floats([np.nan if v is None else v for v in value])


def _usable(panel: LadderPanel, n: int) -> dict[str, LadderLine]:
    lines = {}
    for label, line in panel.lines.items():
        values = _series(line.values, n)
        if values is not None and np.isfinite(values).any():
            lines[str(label)] = line
    return lines


def has_ladder_curves(positions: Sequence[float], panels: Sequence[LadderPanel]) -> bool:
    """Whether :func:`ladder_curves` draws a figure (some panel has a finite value)."""
    return bool(positions) and any(_usable(p, len(positions)) for p in panels)


def ladder_curves(
    positions: Sequence[float],
    labels: Sequence[str],
    panels: Sequence[LadderPanel],
    *,
    colours: Mapping[str, str],
    xlabel: str,
) -> Figure | None:
    """Small multiples of each quantity against the level of a shift ladder.

    Parameters
    ----------
    positions : sequence of float
        Each level's x position (:func:`ladder_positions`); ``labels`` are its tick labels.
    panels : sequence of LadderPanel
        One panel each, in order; a panel without any finite value is left out. Every line is
        labelled with its method label, the reference line with ``"<label>: in-distribution
        test"`` and a bound with its text (what the tests and the legend read).
    colours : mapping of str to str
        Method label to its colour.
    xlabel : str
        What the level measures.

    Returns
    -------
    Figure or None
        ``None`` when no panel has anything to draw (:func:`has_ladder_curves`).
    """
    x = floats(positions)
    n = x.size
    drawn = [(p, _usable(p, n)) for p in panels]
    drawn = [(p, lines) for p, lines in drawn if lines]
    if not drawn:
        return None
    rows, cols = grid_shape(len(drawn))
    fig = new_figure(0.4 + 3.0 * cols, 0.7 + 2.5 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    span = float(x.max() - x.min()) if n > 1 else 1.0
    order = list(colours) + sorted({m for _, ls in drawn for m in ls} - set(colours))
    handles: dict[str, Any] = {}
    for ax, (panel, lines) in zip(axes, drawn, strict=False):
        methods = [m for m in order if m in lines]
        for k, label in enumerate(methods):
            line = lines[label]
            colour = colours.get(label, "#555555")
            at = x + (k - (len(methods) - 1) / 2) * _DODGE * span
            values = _series(line.values, n)
            assert values is not None  # _usable
            (h,) = ax.plot(at, values, color=colour, lw=1.6, marker="o", ms=3.5, label=label)
            handles.setdefault(label, h)
            low, high = _series(line.low, n), _series(line.high, n)
            if low is not None and high is not None:
                ok = np.isfinite(values) & np.isfinite(low) & np.isfinite(high)
                err = np.vstack([values - low, high - values])[:, ok]
                ax.errorbar(
                    at[ok],
                    values[ok],
                    yerr=np.clip(err, 0, None),
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1.0,
                    capsize=2.5,
                )
            if line.reference is not None and np.isfinite(line.reference):
                ax.axhline(
                    line.reference,
                    color=colour,
                    lw=0.9,
                    ls="--",
                    alpha=0.8,
                    label=f"{label}: in-distribution test",
                )
        for b in panel.bounds:
            _bound(ax, b, x, span)
        ax.set_title(panel.title, fontsize="medium")
        ax.set_xticks(x, [str(t) for t in labels][:n] if len(labels) >= n else None)
        ax.tick_params(labelsize="small")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes):
        if i >= len(drawn):
            ax.set_visible(False)
        elif i + cols >= len(drawn):  # the lowest panel of its column
            ax.set_xlabel(xlabel, fontsize="small")
    handles["in-distribution test"] = Line2D([], [], color="#555555", lw=0.9, ls="--")
    if any(b.level is None for p, _ in drawn for b in p.bounds):
        handles["acceptance bound"] = Line2D([], [], color=_BOUND_COLOUR, lw=1.3, ls=":")
    if any(b.level is not None for p, _ in drawn for b in p.bounds):
        handles["bound at one level"] = Line2D([], [], color=_BOUND_COLOUR, lw=2.4)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncols=min(len(handles), 5),
        fontsize="small",
        frameon=False,
    )
    return fig


def _bound(ax: Any, b: LadderBound, x: np.ndarray, span: float) -> None:
    if not np.isfinite(b.threshold):
        return
    if b.level is None:
        ax.axhline(b.threshold, color=_BOUND_COLOUR, lw=1.3, ls=":", label=b.text)
    elif 0 <= b.level < x.size:
        half = 3 * _DODGE * span
        ax.plot(
            [x[b.level] - half, x[b.level] + half],
            [b.threshold] * 2,
            color=_BOUND_COLOUR,
            lw=2.4,
            solid_capstyle="butt",
            label=b.text,
        )
