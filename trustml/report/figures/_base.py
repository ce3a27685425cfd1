"""What every report figure shares: the Agg canvas, the colours, the PNG encoding, array checks.

Figures are drawn with matplotlib's Agg canvas (never pyplot, so no global state). Colours are
colour-blind safe: Okabe-Ito for categories, cividis/viridis for magnitudes, a symmetric
diverging map for signed values.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trustml import results_keys as rk
from trustml.exceptions import DataError

__all__ = [
    "check_member_maps",
    "BLUE",
    "DPI",
    "GREEN",
    "GREY",
    "MAX_CHANNEL_ROWS",
    "MAX_LINE_CHANNELS",
    "MAX_SCATTER_POINTS",
    "MAX_TARGET_PANELS",
    "OKABE_ITO",
    "ORANGE",
    "VERMILLION",
    "as_2d",
    "axis_label",
    "floats",
    "grid_shape",
    "method_colour",
    "new_figure",
    "panel_names",
    "panel_units",
    "primary_path",
    "same_shape",
    "to_data_uri",
]

DPI = 110
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
BLUE, ORANGE, GREEN, VERMILLION, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#555555"
MAX_SCATTER_POINTS = 600
MAX_CHANNEL_ROWS = 4
MAX_LINE_CHANNELS = len(OKABE_ITO)
MAX_TARGET_PANELS = 6


def new_figure(width: float, height: float, *, layout: Any = "constrained") -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    """Encode ``fig`` as a ``data:image/png;base64,...`` URI (no metadata, so it is stable)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def axis_label(name: str, unit: str | None) -> str:
    """``name [unit]``, or ``name`` without a unit."""
    return f"{name} [{unit}]" if unit else name


def method_colour(i: int) -> str:
    """The colour of the ``i``-th compared method (cycles after seven)."""
    return OKABE_ITO[i % len(OKABE_ITO)]


def floats(value: Any) -> np.ndarray:
    """``value`` as a 1D float array; anything unusable (None, strings, ragged) gives empty."""
    try:
        a = np.asarray(value if value is not None else [], dtype=float).ravel()
    except (TypeError, ValueError):
        return np.zeros(0)
    return a


def grid_shape(n: int, ncols_max: int = 3) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n`` panels, at most ``ncols_max`` wide."""
    ncols = max(1, min(n, ncols_max))
    return -(-n // ncols), ncols


def panel_names(target_names: Sequence[str] | None, d: int) -> list[str]:
    """``d`` target names: the given ones, then ``target i``."""
    names = [str(t) for t in (target_names or [])][:d]
    return names + [f"target {i}" for i in range(len(names), d)]


def panel_units(units: Sequence[str | None] | None, d: int) -> list[str | None]:
    """``d`` units: the given ones, then ``None``."""
    return (list(units or []) + [None] * d)[:d]


def as_2d(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as float ``(n_samples, n_targets)`` (1D is one target); ``name`` is its path."""
    a = np.asarray(array, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise DataError(f"arrays[{name!r}] has shape {a.shape}, expected (n_samples, n_targets)")
    return a


def same_shape(a: np.ndarray, ref: np.ndarray, name: str, ref_name: str) -> None:
    """Raise a :class:`DataError` naming both arrays unless ``a`` has the shape of ``ref``."""
    if a.shape != ref.shape:
        raise DataError(
            f"arrays[{name!r}] has shape {a.shape}, expected the shape of {ref_name!r} {ref.shape}"
        )


def primary_path(name: str) -> str:
    """The ``arrays.h5`` path of array ``name`` of the primary method's test predictions."""
    return rk.path(rk.PRIMARY_TEST, name)


def check_member_maps(inputs: np.ndarray, maps: np.ndarray, where: str) -> None:
    """Refuse attribution maps that are not ``(n_members, *inputs.shape)``.

    ``where`` is the maps' path in arrays.h5, named in the error.
    """
    if maps.ndim != inputs.ndim + 1 or maps.shape[1:] != inputs.shape:
        raise DataError(
            f"arrays[{where!r}] has shape {maps.shape}, expected (n_members, *shape of "
            f"{rk.ATTRIBUTION_INPUTS}) = (K, {', '.join(map(str, inputs.shape))})"
        )
