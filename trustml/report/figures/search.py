"""Hyper-parameter search figures: the validation objective over trials, and the selection.

The left panel shows every trial's validation objective against its number (points), the best
score found so far (a step line), the trials the ensemble took (rings, with how often each was
taken) and the trials that diverged (crosses on the top edge). The right panel shows the
mixture's validation objective as the selection adds members, against the best single trial.
Every objective is lower-is-better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trustml.report.figures._base import BLUE, GREY, VERMILLION, floats, new_figure

__all__ = [
    "DIVERGED",
    "OFF_SCALE",
    "RUNNING_BEST",
    "SELECTED",
    "TRACE",
    "TRIAL",
    "has_search_trials",
    "search_trials",
]

TRIAL, RUNNING_BEST, SELECTED = "trial", "best so far", "selected"
DIVERGED, OFF_SCALE, TRACE = "diverged", "above the axis", "ensemble"
"""The legend labels of the figure's artists (tests find the lines by them)."""

_TIMES = "\u00d7"
_CLIP = 4.0
"""Scores beyond the 75th percentile plus this many times its distance to the best are drawn
as triangles on the top edge, so one runaway trial does not flatten the others."""


def has_search_trials(numbers: Sequence[float], scores: Sequence[float | None]) -> bool:
    """Whether :func:`search_trials` draws a figure (some trial has a finite score)."""
    x, y = _xy(numbers, scores)
    return bool(x.size) and bool(np.isfinite(y).any())


def search_trials(
    numbers: Sequence[float],
    scores: Sequence[float | None],
    *,
    objective: str,
    selected: Mapping[int, int] | None = None,
    trace: Sequence[float | None] | None = None,
    best_single: float | None = None,
    strategy: str = "greedy",
    colour: str = BLUE,
) -> Figure | None:
    """The validation objective over trials and, when ``trace`` is given, the selection trace.

    Parameters
    ----------
    numbers : sequence of int
        Trial numbers, shape ``(n_trials,)`` (the x values).
    scores : sequence of float or None
        Validation objective per trial, shape ``(n_trials,)``; ``None`` or NaN: diverged.
    objective : str
        The objective's name, the y axis label.
    selected : mapping of int to int, optional
        Trial number to how often the ensemble took it.
    trace : sequence of float, optional
        The mixture's objective after each selection step, shape ``(members,)``.
    best_single : float, optional
        The best single trial's score, a dashed reference on the trace panel.
    strategy : str
        ``greedy`` or ``top_k``, for the trace panel's title.
    colour : str
        The method's colour.

    Returns
    -------
    Figure or None
        ``None`` when no trial has a finite score (:func:`has_search_trials`).
    """
    x, y = _xy(numbers, scores)
    if not x.size or not np.isfinite(y).any():
        return None
    steps = floats([np.nan if v is None else v for v in trace or ()])
    two = bool(np.isfinite(steps).any())
    fig = new_figure(9.6 if two else 6.4, 4.2)
    axes = fig.subplots(1, 2, width_ratios=[2, 1]) if two else [fig.subplots()]
    _trials_panel(axes[0], x, y, objective, dict(selected or {}), colour)
    if two:
        _trace_panel(axes[1], steps, objective, best_single, strategy, colour)
    return fig


def _xy(numbers: Sequence[float], scores: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    x = floats(numbers)
    y = floats([np.nan if v is None else v for v in scores])
    return (x, y) if x.shape == y.shape else (np.zeros(0), np.zeros(0))


def _trials_panel(
    ax, x: np.ndarray, y: np.ndarray, objective: str, selected: dict[int, int], colour: str
) -> None:
    ok = np.isfinite(y)
    ax.plot(x[ok], y[ok], ls="none", marker="o", ms=4.5, color=colour, alpha=0.75, label=TRIAL)
    best = np.fmin.accumulate(y)
    ax.step(x, best, where="post", color=GREY, lw=1.4, label=RUNNING_BEST)
    picked = [(n, c) for n, c in sorted(selected.items()) if c > 0]
    px = np.array([float(n) for n, _ in picked])
    py = np.array([y[x == n][0] if np.any(x == n) else np.nan for n, _ in picked], dtype=float)
    top = max(_top(y[ok]), float(np.nanmax(py)) if np.isfinite(py).any() else -np.inf)
    ax.set_ylim(*_margins(float(np.min(y[ok])), top))
    if px.size:
        ax.plot(px, np.minimum(py, top), ls="none", marker="o", ms=11, mfc="none",
                mec=VERMILLION, mew=1.8, label=SELECTED)  # fmt: skip
        for (_, c), xi, yi in zip(picked, px, py, strict=True):
            if np.isfinite(yi):
                ax.annotate(f"{_TIMES}{c}", (xi, min(yi, top)), textcoords="offset points",
                            xytext=(6, 5), fontsize="small", color=VERMILLION)  # fmt: skip
    over = ok & (y > top)
    edge = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    if over.any():
        ax.plot(x[over], np.full(int(over.sum()), 0.98), ls="none", marker="^", ms=6,
                color=colour, transform=edge, label=f"{OFF_SCALE} ({int(over.sum())})")  # fmt: skip
    if (~ok).any():
        ax.plot(x[~ok], np.full(int((~ok).sum()), 0.98), ls="none", marker="x", ms=6,
                color=GREY, transform=edge, label=f"{DIVERGED} ({int((~ok).sum())})")  # fmt: skip
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {objective} \u2193")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("trials in the order proposed", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=5,
              frameon=False)  # fmt: skip


def _trace_panel(
    ax, steps: np.ndarray, objective: str, best_single: float | None, strategy: str, colour: str
) -> None:
    sizes = np.arange(1, steps.size + 1, dtype=float)
    ax.plot(sizes, steps, marker="o", ms=4, lw=1.6, color=colour, label=TRACE)
    if best_single is not None and np.isfinite(best_single):
        ax.axhline(best_single, color=GREY, lw=1.1, ls="--", label="best single trial")
    ax.set_xlabel("ensemble members")
    ax.set_ylabel(f"validation {objective} of the mixture \u2193")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    how = "top-k selection" if strategy == "top_k" else "greedy selection"
    ax.set_title(how, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")


def _top(y: np.ndarray) -> float:
    """The upper axis limit's data value: the largest score, unless it runs away."""
    low, q75, high = float(np.min(y)), float(np.percentile(y, 75)), float(np.max(y))
    cap = q75 + _CLIP * (q75 - low)
    return high if high <= cap or q75 <= low else cap


def _margins(low: float, high: float) -> tuple[float, float]:
    """Room below, and more above: the top edge holds the diverged and off-scale markers."""
    pad = 0.08 * (high - low) if high > low else max(abs(low) * 0.05, 0.05)
    return low - pad, high + 2 * pad
