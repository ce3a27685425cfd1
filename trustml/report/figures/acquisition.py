"""Labeling-campaign figures: the test metric against the number of labels, per strategy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trustml.report._format import arrow
from trustml.report.figures._base import GREY, floats, method_colour, new_figure

__all__ = ["RANDOM", "Curve", "has_learning_curves", "learning_curves", "strategy_colours"]

RANDOM = "random"
"""The strategy every other one is compared with; drawn in grey."""
_RANDOM_COLOUR = "#333333"


@dataclass(frozen=True)
class Curve:
    """One strategy's learning curve: the mean over repeats and, optionally, its min-max band.

    ``mean``, ``low`` and ``high`` are per evaluation (the labels of :func:`learning_curves`);
    ``low``/``high`` of ``None`` (or of another length) draw no band; a missing or unusable
    ``mean`` draws no line.
    """

    mean: Sequence[float | None] | np.ndarray | None
    low: Sequence[float | None] | np.ndarray | None = None
    high: Sequence[float | None] | np.ndarray | None = None


def strategy_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per strategy: ``random`` dark grey, the others Okabe-Ito in their order."""
    colours, i = {}, 0
    for name in names:
        if name == RANDOM:
            colours[name] = _RANDOM_COLOUR
        else:
            colours[name] = method_colour(i)
            i += 1
    return colours


def learning_curves(
    labels: Sequence[float] | np.ndarray,
    curves: Mapping[str, Curve],
    *,
    metric: str,
    higher_is_better: bool | None = None,
    target: float | None = None,
    target_label: str | None = None,
    reached: Mapping[str, float | None] | None = None,
) -> Figure | None:
    """The test metric against the number of labels held, one line (and band) per strategy.

    Parameters
    ----------
    labels : sequence of float
        Labels held at each evaluation (the x values).
    curves : mapping of str to Curve
        Strategy name to its curve over ``labels``, in legend order; ``random`` is drawn in
        dark grey, the others in the colours of :func:`strategy_colours`.
    metric : str
        The metric's name, the y axis label (with an arrow for ``higher_is_better``).
    target, target_label : float and str, optional
        A dashed horizontal line at ``target``, labelled ``target_label`` in the legend.
    reached : mapping of str to float, optional
        Labels at which each strategy's mean reaches the target, marked on the target line.

    Returns
    -------
    Figure or None
        ``None`` when no curve has a finite value over ``labels``
        (:func:`has_learning_curves`).
    """
    x = floats(labels)
    usable = _usable(x, curves)
    if not usable:
        return None
    colours = strategy_colours([str(n) for n in curves])
    fig = new_figure(6.4, 4.0)
    ax = fig.subplots()
    for name, (mean, low, high) in usable.items():
        colour = colours[name]
        if low is not None and high is not None and np.any(high > low):
            ax.fill_between(x, low, high, color=colour, alpha=0.18, lw=0)
        ax.plot(x, mean, color=colour, lw=1.8, marker="o", ms=2.5, label=name)
    if target is not None and np.isfinite(target):
        ax.axhline(target, color=GREY, lw=1.1, ls="--", label=target_label or f"target {target:g}")
        for name, at in (reached or {}).items():
            if name in usable and at is not None and np.isfinite(at):
                ax.plot([at], [target], ls="none", marker="v", ms=7, color=colours[name])
    ax.set_ylabel(f"test {metric}{_arrow(higher_is_better)}")
    ax.set_xlabel("labelled training samples")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return fig


def has_learning_curves(labels: Sequence[float] | np.ndarray, curves: Mapping[str, Curve]) -> bool:
    """Whether :func:`learning_curves` draws a figure (some curve is usable over ``labels``)."""
    return bool(_usable(floats(labels), curves))


def _usable(
    x: np.ndarray, curves: Mapping[str, Curve]
) -> dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """``(mean, low, high)`` of every curve whose mean matches ``x`` and has a finite value."""
    out: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
    if x.size == 0:
        return out
    for name, curve in curves.items():
        mean = _values(curve.mean)
        if mean.shape != x.shape or not np.isfinite(mean).any():
            continue
        low, high = _values(curve.low), _values(curve.high)
        band = low.shape == x.shape and high.shape == x.shape
        out[str(name)] = (mean, low if band else None, high if band else None)
    return out


def _values(value: Sequence[float | None] | np.ndarray | None) -> np.ndarray:
    """Floats with ``None`` (JSON's non-finite) as NaN; unusable input gives an empty array."""
    if isinstance(value, np.ndarray):
        return floats(value)
    if not isinstance(value, list | tuple):
        return np.zeros(0)
    return floats([np.nan if v is None else v for v in value])


def _arrow(higher_is_better: bool | None) -> str:
    if higher_is_better is None:
        return ""
    return f" {arrow(higher_is_better)} ({'higher' if higher_is_better else 'lower'} is better)"
