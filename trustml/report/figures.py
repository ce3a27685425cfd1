"""Report figures, drawn with matplotlib's Agg canvas (never pyplot, so no global state).

Every function takes plain arrays and lists and returns a :class:`matplotlib.figure.Figure`;
:func:`to_data_uri` turns one into an embeddable PNG. Colours are colour-blind safe (Okabe-Ito
for categories, cividis/viridis for magnitudes, a symmetric diverging map for signed values).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from trustml.exceptions import DataError

__all__ = [
    "DPI",
    "attribution_example",
    "coverage_curve",
    "predicted_vs_true",
    "reliability_diagram",
    "to_data_uri",
    "training_curves",
]

DPI = 110
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
BLUE, ORANGE, VERMILLION, GREY = "#0072B2", "#E69F00", "#D55E00", "#555555"
MAX_SCATTER_POINTS = 600
MAX_CHANNEL_ROWS = 4
MAX_LINE_CHANNELS = len(OKABE_ITO)
_SLICE_AXIS_NAMES = {1: ("z",), 2: ("t", "z")}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    """Encode ``fig`` as a ``data:image/png;base64,...`` URI (no metadata, so it is stable)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(name: str, unit: str | None) -> str:
    return f"{name} [{unit}]" if unit else name


def training_curves(history: Mapping[str, Any]) -> Figure | None:
    """Training (solid) and validation (dashed) loss per epoch, one colour per ensemble member.

    ``history["loss"]`` is a list of per-epoch losses per member (members may differ in length);
    ``history["val_loss"]`` is optional and shaped alike. Returns ``None`` when there is no loss.
    """
    losses = [np.asarray(m, dtype=float).ravel() for m in history.get("loss") or []]
    losses = [m for m in losses if m.size]
    if not losses:
        return None
    val = [np.asarray(m, dtype=float).ravel() for m in history.get("val_loss") or []]
    colours = _member_colours(len(losses))
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    for k, loss in enumerate(losses):
        ax.plot(np.arange(1, loss.size + 1), loss, color=colours[k], lw=1.4, label=f"member {k}")
        if k < len(val) and val[k].size:
            ax.plot(np.arange(1, val[k].size + 1), val[k], color=colours[k], lw=1.2, ls="--")
    values = np.concatenate(losses + [v for v in val if v.size])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.set_title("Training loss per ensemble member")
    handles = [Line2D([], [], color=GREY, lw=1.4, label="training")]
    if any(v.size for v in val):
        handles.append(Line2D([], [], color=GREY, lw=1.2, ls="--", label="validation"))
    if len(losses) <= 8:
        handles += [
            Line2D([], [], color=colours[k], lw=2, label=f"member {k}") for k in range(len(losses))
        ]
    ax.legend(handles=handles, fontsize="small", ncols=2 if len(handles) > 5 else 1)
    ax.grid(alpha=0.3)
    return fig


def _member_colours(n: int) -> list[Any]:
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, n)]


def coverage_curve(curve: Mapping[str, Any]) -> Figure | None:
    """Empirical coverage of central prediction intervals against their nominal level.

    ``curve`` holds ``nominal`` and ``empirical`` (after calibration, when a calibrator ran)
    and optionally ``empirical_raw`` (before calibration). Points on the diagonal are calibrated;
    below it the intervals are over-confident. Returns ``None`` when the curve is missing.
    """
    nominal = np.asarray(curve.get("nominal") or [], dtype=float).ravel()
    empirical = np.asarray(curve.get("empirical") or [], dtype=float).ravel()
    raw = np.asarray(curve.get("empirical_raw") or [], dtype=float).ravel()
    if nominal.size == 0 or empirical.shape != nominal.shape:
        return None
    fig = _figure(4.4, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="ideal (diagonal)")
    if raw.shape == nominal.shape:
        ax.plot(nominal, raw, "s--", color=ORANGE, ms=4, lw=1.2, label="before calibration")
        label = "after calibration"
    else:
        label = "empirical"
    ax.plot(nominal, empirical, "o-", color=BLUE, ms=4, lw=1.5, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage of central interval")
    ax.set_ylabel("empirical coverage (test split)")
    ax.set_title("Interval calibration")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def predicted_vs_true(
    targets: np.ndarray,
    mean: np.ndarray,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    std: np.ndarray | None = None,
    target_names: Sequence[str] | None = None,
    units: Sequence[str | None] | None = None,
    max_points: int = MAX_SCATTER_POINTS,
) -> Figure:
    """Predicted mean against the true value, one panel per target, with prediction intervals.

    Arrays are ``(n_samples, n_targets)`` (1D means one target). Intervals are
    ``[lower, upper]`` when given, else ``mean +/- 2 std``. Points whose interval misses the truth
    are drawn as vermillion crosses. At most ``max_points`` evenly spaced samples are drawn; the
    coverage in each title uses them all.
    """
    y, mu = _as_2d(targets, "test/targets"), _as_2d(mean, "test/mean")
    lo: np.ndarray | None
    hi: np.ndarray | None
    _same_shape(mu, y, "test/mean", "test/targets")
    if lower is not None and upper is not None:
        lo, hi = _as_2d(lower, "test/lower"), _as_2d(upper, "test/upper")
        _same_shape(lo, y, "test/lower", "test/targets")
        _same_shape(hi, y, "test/upper", "test/targets")
        band = "prediction interval"
    elif std is not None:
        sd = _as_2d(std, "test/std")
        _same_shape(sd, y, "test/std", "test/targets")
        lo, hi = mu - 2 * sd, mu + 2 * sd
        band = "mean \u00b1 2\u03c3"
    else:
        lo = hi = None
        band = ""
    n, d = y.shape
    names = list(target_names or [])[:d] + [
        f"target {i}" for i in range(len(target_names or []), d)
    ]
    unit_list = list(units or []) + [None] * d
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))
    ncols = min(d, 3)
    nrows = -(-d // ncols)
    fig = _figure(3.6 * ncols, 3.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for j in range(d):
        ax = axes[j]
        yj, mj = y[idx, j], mu[idx, j]
        title = names[j]
        if lo is not None and hi is not None:
            inside_all = (lo[:, j] <= y[:, j]) & (y[:, j] <= hi[:, j])
            inside = inside_all[idx]
            err = np.vstack([np.clip(mj - lo[idx, j], 0, None), np.clip(hi[idx, j] - mj, 0, None)])
            ax.errorbar(yj, mj, yerr=err, fmt="none", ecolor=BLUE, alpha=0.25, lw=0.7)
            title += f"\ncoverage {inside_all.mean():.3f} (n={n})" if n else ""
        else:
            inside = np.ones(yj.shape, dtype=bool)
        ax.scatter(yj[inside], mj[inside], s=9, color=BLUE, label="interval covers truth")
        if (~inside).any():
            ax.scatter(
                yj[~inside],
                mj[~inside],
                s=14,
                marker="x",
                color=VERMILLION,
                label="interval misses truth",
            )
        finite = np.concatenate([yj, mj])
        finite = finite[np.isfinite(finite)]
        if finite.size:
            lo_lim, hi_lim = float(finite.min()), float(finite.max())
            pad = 0.05 * (hi_lim - lo_lim or 1.0)
            ax.plot(
                [lo_lim - pad, hi_lim + pad],
                [lo_lim - pad, hi_lim + pad],
                color=GREY,
                ls=":",
                lw=1,
                label="predicted = true",
            )
        ax.set_xlabel(_label(f"true {names[j]}", unit_list[j]))
        ax.set_ylabel(_label(f"predicted {names[j]}", unit_list[j]))
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3)
        if j == 0:
            handles, labels = ax.get_legend_handles_labels()
            if band:
                handles.append(Line2D([], [], color=BLUE, alpha=0.4, lw=1))
                labels.append(band)
            ax.legend(handles, labels, fontsize="x-small", loc="upper left")
    for ax in axes[d:]:
        ax.set_visible(False)
    return fig


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 10) -> Figure:
    """Accuracy against confidence of the top class, in ``n_bins`` equal-width bins.

    ``probs`` is ``(n_samples, n_classes)``, ``labels`` is ``(n_samples,)`` of class indices.
    """
    p = np.asarray(probs, dtype=float)
    y = np.asarray(labels).ravel()
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise DataError(
            f"arrays['test/probs'] has shape {p.shape} and arrays['test/labels'] {y.shape}; "
            "expected (n_samples, n_classes) and (n_samples,)"
        )
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    acc = np.bincount(which, weights=correct, minlength=n_bins) / np.maximum(counts, 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    fig = _figure(4.4, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="ideal (diagonal)", zorder=3)
    has = counts > 0
    ax.bar(
        centres[has],
        acc[has],
        width=1 / n_bins,
        color=BLUE,
        alpha=0.75,
        edgecolor="white",
        label="accuracy per confidence bin",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence of predicted class")
    ax.set_ylabel("accuracy (test split)")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def attribution_example(
    inputs: np.ndarray, maps: np.ndarray, *, title: str = "", input_label: str = "input"
) -> tuple[Figure, str]:
    """The input, the member-mean attribution and (for several members) its std, for one example.

    ``inputs`` is ``(n_channels, *spatial)``, ``maps`` is ``(n_members, n_channels, *spatial)``.
    No spatial axis draws bars per feature, one axis draws lines, two draw images; with three or
    more the leading spatial axes are cut at their central index (3D: central slice; 4D: central
    time step and slice). Returns the figure and a note saying which slice is shown.
    """
    x = np.asarray(inputs, dtype=float)
    a = np.asarray(maps, dtype=float)
    if a.ndim != x.ndim + 1 or a.shape[1:] != x.shape:
        raise DataError(
            f"arrays['attribution/maps'] has example shape {a.shape}, expected "
            f"(n_members, *inputs.shape) = (K, {', '.join(map(str, x.shape))})"
        )
    note = ""
    if x.ndim > 3:
        x, a, note = _central_slice(x, a)
    mean = a.mean(axis=0)
    std = a.std(axis=0) if a.shape[0] > 1 else None
    if x.ndim == 1:
        fig = _attribution_features(x, mean, std)
    elif x.ndim == 2:
        fig = _attribution_lines(x, mean, std, input_label)
    else:
        fig = _attribution_images(x, mean, std, input_label)
    if title:
        fig.suptitle(title + (f" ({note})" if note else ""), fontsize="medium")
    return fig, note


def _central_slice(x: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    n_cut = x.ndim - 3
    names = _SLICE_AXIS_NAMES.get(n_cut, tuple(f"axis {i + 1}" for i in range(n_cut)))
    parts = []
    for name in names:
        size = x.shape[1]
        centre = size // 2
        x, a = x[:, centre], a[:, :, centre]
        parts.append(f"{name} = {centre} of {size}")
    return x, a, "central slice: " + ", ".join(parts)


def _attribution_features(x: np.ndarray, mean: np.ndarray, std: np.ndarray | None) -> Figure:
    n = x.shape[0]
    pos = np.arange(n)
    fig = _figure(9.0, 3.0)
    ax_in, ax_at = fig.subplots(1, 2)
    ax_in.bar(pos, x, color=GREY)
    ax_in.set_title("input")
    ax_in.set_xlabel("feature")
    ax_in.set_ylabel("value")
    colours = np.where(mean >= 0, BLUE, VERMILLION)
    ax_at.bar(pos, mean, color=colours, yerr=std, ecolor="black", error_kw={"lw": 0.8})
    ax_at.axhline(0, color="black", lw=0.6)
    ax_at.set_title("attribution, member mean" + (" \u00b1 std" if std is not None else ""))
    ax_at.set_xlabel("feature")
    ax_at.set_ylabel("attribution")
    return fig


def _attribution_lines(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray | None, input_label: str
) -> Figure:
    n_channels = min(x.shape[0], MAX_LINE_CHANNELS)
    pos = np.arange(x.shape[1])
    fig = _figure(9.0, 3.0)
    ax_in, ax_at = fig.subplots(1, 2, sharex=True)
    for c in range(n_channels):
        colour = OKABE_ITO[c]
        ax_in.plot(pos, x[c], color=colour, lw=1.2, label=f"channel {c}")
        ax_at.plot(pos, mean[c], color=colour, lw=1.2, label=f"channel {c}")
        if std is not None:
            ax_at.fill_between(
                pos, mean[c] - std[c], mean[c] + std[c], color=colour, alpha=0.25, lw=0
            )
    ax_at.axhline(0, color="black", lw=0.6)
    shown = "" if n_channels == x.shape[0] else f" (channels 0-{n_channels - 1} of {x.shape[0]})"
    ax_in.set_title(input_label + shown)
    ax_at.set_title("attribution, member mean" + (" \u00b1 std" if std is not None else ""))
    for ax in (ax_in, ax_at):
        ax.set_xlabel("position")
        ax.grid(alpha=0.3)
    ax_in.set_ylabel("value")
    ax_at.set_ylabel("attribution")
    if n_channels > 1:
        ax_in.legend(fontsize="x-small")
    return fig


def _attribution_images(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray | None, input_label: str
) -> Figure:
    n_rows = min(x.shape[0], MAX_CHANNEL_ROWS)
    n_cols = 3 if std is not None else 2
    fig = _figure(3.2 * n_cols, 2.7 * n_rows + 0.4)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    vmax = float(np.nanmax(np.abs(mean[:n_rows]))) if mean.size else 0.0
    signed = Normalize(-(vmax or 1.0), vmax or 1.0)
    for c in range(n_rows):
        channel = f" (channel {c})" if x.shape[0] > 1 else ""
        panels = [
            (x[c], "cividis", None, input_label + channel, "value"),
            (mean[c], "RdBu_r", signed, "attribution, member mean" + channel, "attribution"),
        ]
        if std is not None:
            panels.append(
                (std[c], "viridis", None, "attribution, std over members" + channel, "std")
            )
        for ax, (img, cmap, norm, panel_title, cbar_label) in zip(axes[c], panels, strict=True):
            im = ax.imshow(img, cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_title(panel_title, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
            cbar = fig.colorbar(im, ax=ax, shrink=0.85)
            cbar.set_label(cbar_label, fontsize="small")
            cbar.ax.tick_params(labelsize="x-small")
    if x.shape[0] > n_rows:
        fig.text(0.01, 0.0, f"channels 0-{n_rows - 1} of {x.shape[0]} shown", fontsize="x-small")
    return fig


def _as_2d(array: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(array, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise DataError(f"arrays[{name!r}] has shape {a.shape}, expected (n_samples, n_targets)")
    return a


def _same_shape(a: np.ndarray, ref: np.ndarray, name: str, ref_name: str) -> None:
    if a.shape != ref.shape:
        raise DataError(
            f"arrays[{name!r}] has shape {a.shape}, expected the shape of {ref_name!r} {ref.shape}"
        )
