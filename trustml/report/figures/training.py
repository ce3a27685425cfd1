"""Model and training figures: loss curves per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from trustml.report.figures._base import GREY, OKABE_ITO, floats, grid_shape, new_figure

__all__ = ["has_training_curves", "training_curves"]


def training_curves(histories: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """Training (solid) and validation (dashed) loss per epoch, one panel per method.

    Parameters
    ----------
    histories : mapping of str to mapping
        Method label to its history. ``history["loss"]`` is either one list of per-epoch
        losses (a single network, e.g. MC dropout or SVI) or one such list per ensemble member
        (members may differ in length); ``history["val_loss"]`` is optional and shaped alike.

    Returns
    -------
    Figure or None
        ``None`` when no method has a loss curve.
    """
    panels = _panels(histories)
    if not panels:
        return None
    nrows, ncols = grid_shape(len(panels), 2)
    fig = new_figure(5.2 * ncols if ncols > 1 else 6.4, 3.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (label, losses, val) in zip(axes, panels, strict=False):
        colours = _member_colours(len(losses))
        single = len(losses) == 1
        for k, loss in enumerate(losses):
            name = "network" if single else f"member {k}"
            ax.plot(np.arange(1, loss.size + 1), loss, color=colours[k], lw=1.4, label=name)
            if k < len(val) and val[k].size:
                ax.plot(np.arange(1, val[k].size + 1), val[k], color=colours[k], lw=1.2, ls="--")
        values = np.concatenate(losses + [v for v in val if v.size])
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() / values.min() > 30:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.set_title(
            f"{label}: training loss" + ("" if single else f" of {len(losses)} members"),
            fontsize="medium",
        )
        handles = [Line2D([], [], color=GREY, lw=1.4, label="training")]
        if any(v.size for v in val):
            handles.append(Line2D([], [], color=GREY, lw=1.2, ls="--", label="validation"))
        if not single and len(losses) <= 8:
            handles += [
                Line2D([], [], color=colours[k], lw=2, label=f"member {k}")
                for k in range(len(losses))
            ]
        ax.legend(handles=handles, fontsize="x-small", ncols=2 if len(handles) > 5 else 1)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig


def has_training_curves(histories: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether :func:`training_curves` draws a figure (some method has a loss curve)."""
    return bool(_panels(histories))


def _panels(
    histories: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """``(label, losses, validation losses)`` of every method with a loss curve."""
    panels = []
    for label, history in histories.items():
        if not isinstance(history, Mapping):
            continue
        losses, val = _curves(history.get("loss")), _curves(history.get("val_loss"))
        if losses:
            panels.append((str(label), losses, val))
    return panels


def _curves(value: Any) -> list[np.ndarray]:
    """Per-member loss curves from a flat list (one network) or a list of lists."""
    if not isinstance(value, list | tuple) or not value:
        return []
    if all(isinstance(v, int | float) or v is None for v in value):
        curve = floats([np.nan if v is None else v for v in value])
        return [curve] if curve.size else []
    out = []
    for member in value:
        if isinstance(member, list | tuple):
            curve = floats([np.nan if v is None else v for v in member])
            if curve.size:
                out.append(curve)
    return out


def _member_colours(n: int) -> list[Any]:
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, n)]
