"""Attribution map figures: the input, the member-mean attribution and its spread.

Inputs of any dimension are drawn: per-feature bars (no spatial axis), lines (one), images
(two), and for three or more spatial axes the central slice of the leading ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from trustml import results_keys as rk
from trustml.exceptions import DataError
from trustml.report.figures._base import (
    BLUE,
    GREY,
    MAX_CHANNEL_ROWS,
    MAX_LINE_CHANNELS,
    OKABE_ITO,
    VERMILLION,
    check_member_maps,
    new_figure,
)

__all__ = [
    "attribution_example",
    "attribution_grid",
    "slice_note",
    "uncertainty_maps",
    "uncertainty_panel_note",
]

_SLICE_AXIS_NAMES = {1: ("z",), 2: ("t", "z")}


def attribution_grid(
    inputs: np.ndarray,
    maps: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    input_label: str = "input",
) -> tuple[Figure, str]:
    """Input, member-mean attribution and its std over members for several image-like examples.

    One row per example (and input channel, up to ``MAX_CHANNEL_ROWS``). The attribution mean of
    each row is divided by its largest absolute value, so it lies in [-1, 1] on one shared
    colour bar; the std is divided by the same number, so it reads as uncertainty relative to
    the strongest attribution of that example. Inputs keep their own units and colour bars.

    Parameters
    ----------
    inputs : numpy.ndarray
        ``(n_examples, n_channels, *spatial)`` with at least two spatial axes; with more, the
        leading ones are cut at their central index.
    maps : numpy.ndarray
        ``(n_members, n_examples, n_channels, *spatial)``.
    titles : sequence of str, optional
        One row label per example.
    input_label : str
        What the input is.

    Returns
    -------
    (Figure, str)
        The figure and a note saying which slice is shown (empty for 2D inputs).
    """
    x = np.asarray(inputs, dtype=float)
    a = np.asarray(maps, dtype=float)
    if x.ndim < 3:
        raise DataError(
            f"arrays['{rk.ATTRIBUTION_INPUTS}'] has shape {x.shape}; a grid needs "
            "(n_examples, n_channels, height, width, ...)"
        )
    check_member_maps(x, a, rk.attribution_maps())
    note = ""
    if x.ndim > 4:
        xs, as_, notes = [], [], []
        for m in range(x.shape[0]):
            xm, am, note = _central_slice(x[m], a[:, m])
            xs.append(xm)
            as_.append(am)
            notes.append(note)
        x, a = np.stack(xs), np.stack(as_, axis=1)
        note = notes[0]
    n_examples, n_channels = x.shape[:2]
    channels = min(n_channels, MAX_CHANNEL_ROWS)
    mean = a.mean(axis=0)
    std = a.std(axis=0) if a.shape[0] > 1 else None
    rows = [(m, c) for m in range(n_examples) for c in range(channels)]
    n_rows = len(rows)
    panels = 3 if std is not None else 2
    row_h = 1.85
    fig = new_figure(2.5 * panels + 0.9, row_h * n_rows + 1.1, layout=None)
    height = row_h * n_rows + 1.1
    gs = fig.add_gridspec(
        n_rows + 1,
        3 * panels,
        width_ratios=[1.0, 0.05, 0.42] * panels,
        height_ratios=[1.0] * n_rows + [0.06],
        left=0.11,
        right=0.97,
        top=1.0 - 0.45 / height,
        bottom=0.45 / height,
        wspace=0.08,
        hspace=0.35,
    )
    names = list(titles or [])
    rel_norm = Normalize(-1.0, 1.0)
    std_max = 0.0
    std_images = []
    mean_image = None
    image_axes: list[Any] = []
    for r, (m, c) in enumerate(rows):
        scale = float(np.nanmax(np.abs(mean[m, c]))) if mean[m, c].size else 0.0
        scale = scale if scale > 0 and np.isfinite(scale) else 1.0
        channel = f", channel {c}" if n_channels > 1 else ""
        ax_in = fig.add_subplot(gs[r, 0])
        im_in = ax_in.imshow(x[m, c], cmap="cividis", interpolation="nearest")
        cbar = fig.colorbar(im_in, cax=fig.add_subplot(gs[r, 1]))
        cbar.ax.tick_params(labelsize="xx-small")
        label = names[m] if m < len(names) else f"example {m}"
        ax_in.set_ylabel(label + channel, fontsize="x-small")
        ax_mean = fig.add_subplot(gs[r, 3])
        mean_image = ax_mean.imshow(
            mean[m, c] / scale, cmap="RdBu_r", norm=rel_norm, interpolation="nearest"
        )
        if r == 0:
            ax_in.set_title(input_label, fontsize="small")
            ax_mean.set_title("attribution: member mean", fontsize="small")
        if std is not None:
            ax_std = fig.add_subplot(gs[r, 6])
            rel_std = std[m, c] / scale
            std_max = max(std_max, float(np.nanmax(rel_std)) if rel_std.size else 0.0)
            std_images.append(ax_std.imshow(rel_std, cmap="viridis", interpolation="nearest"))
            if r == 0:
                ax_std.set_title("attribution: std over members", fontsize="small")
        image_axes += [ax_in, ax_mean] + ([ax_std] if std is not None else [])
    for ax in image_axes:
        ax.set_xticks([])
        ax.set_yticks([])
    std_norm = Normalize(0.0, std_max if std_max > 0 else 1.0)
    for im in std_images:
        im.set_norm(std_norm)
    if mean_image is not None:
        cb = fig.colorbar(mean_image, cax=fig.add_subplot(gs[n_rows, 3]), orientation="horizontal")
        cb.set_label("attribution / max |mean| of the example", fontsize="x-small")
        cb.ax.tick_params(labelsize="x-small")
    if std_images:
        cb = fig.colorbar(
            std_images[0], cax=fig.add_subplot(gs[n_rows, 6]), orientation="horizontal"
        )
        cb.set_label("std / max |mean| of the example", fontsize="x-small")
        cb.ax.tick_params(labelsize="x-small")
    if n_channels > channels:
        fig.text(
            0.01, 0.005, f"channels 0-{channels - 1} of {n_channels} shown", fontsize="x-small"
        )
    return fig, note


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
            f"arrays['{rk.attribution_maps()}'] has example shape {a.shape}, expected "
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


def slice_note(shape: Sequence[int]) -> str:
    """Which slice is drawn of one example of ``shape`` ``(n_channels, *spatial)``.

    With three or more spatial axes the leading ones are cut at their central index
    (``"central slice: z = 3 of 6"``); with fewer the note is empty. :func:`attribution_example`
    and :func:`attribution_grid` return this note, so a caption can be written before drawing.
    """
    n_cut = len(shape) - 3
    if n_cut <= 0:
        return ""
    names = _SLICE_AXIS_NAMES.get(n_cut, tuple(f"axis {i + 1}" for i in range(n_cut)))
    sizes = shape[1 : 1 + n_cut]
    return "central slice: " + ", ".join(
        f"{name} = {size // 2} of {size}" for name, size in zip(names, sizes, strict=True)
    )


def _central_slice(x: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    note = slice_note(x.shape)
    for _ in range(x.ndim - 3):
        centre = x.shape[1] // 2
        x, a = x[:, centre], a[:, :, centre]
    return x, a, note


def _attribution_features(x: np.ndarray, mean: np.ndarray, std: np.ndarray | None) -> Figure:
    n = x.shape[0]
    pos = np.arange(n)
    fig = new_figure(9.0, 3.0)
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
    fig = new_figure(9.0, 3.0)
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
    fig = new_figure(3.2 * n_cols, 2.7 * n_rows + 0.4)
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


def uncertainty_maps(
    inputs: np.ndarray,
    prediction: np.ndarray | None,
    quantities: dict[str, np.ndarray],
    *,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Where the model is unsure, next to what drives its prediction: one row per example.

    Columns: the input, the prediction attribution (member mean) and the attribution of each
    uncertainty quantity. Every map is divided by its own largest absolute value, so it lies in
    [-1, 1] on one shared diverging colour bar (red: the feature raises the explained output or
    uncertainty relative to the baseline). A grid example ``(C, *spatial)`` is drawn from its
    central slice (see :func:`uncertainty_panel_note`): channel 0 of the input and the maps
    summed over channels; an example of two axes (a 1D grid ``(C, L)`` or a sequence ``(T, F)``)
    as an image of them; a feature vector as bars.

    Parameters
    ----------
    inputs : numpy.ndarray
        ``(n_examples, *sample_shape)``.
    prediction : numpy.ndarray or None
        The prediction attribution of every member, ``(n_members, n_examples, *sample_shape)``.
    quantities : dict of str to numpy.ndarray
        Quantity name to its maps ``(1, n_examples, *sample_shape)``.
    titles : sequence of str, optional
        One row label per example.

    Returns
    -------
    Figure
    """
    x = np.asarray(inputs, dtype=float)
    columns: list[tuple[str, np.ndarray]] = []
    if prediction is not None:
        check_member_maps(x, np.asarray(prediction), rk.attribution_maps())
        columns.append(("prediction attribution", np.asarray(prediction, float).mean(axis=0)))
    for name, maps in quantities.items():
        check_member_maps(x, np.asarray(maps), rk.uncertainty_maps(name))
        columns.append((f"{name} uncertainty", np.asarray(maps, float).mean(axis=0)))
    n = x.shape[0]
    names = list(titles or [])
    n_cols = 1 + len(columns)
    fig = new_figure(2.6 * n_cols + 0.6, 2.2 * n + 0.9)
    axes = np.atleast_2d(fig.subplots(n, n_cols, squeeze=False))
    norm = Normalize(-1.0, 1.0)
    image = None
    for m in range(n):
        panels = [("input", _panel(x[m], input_panel=True), False)]
        panels += [(title, _panel(maps[m], input_panel=False), True) for title, maps in columns]
        for c, (title, data, signed) in enumerate(panels):
            ax = axes[m, c]
            if signed:
                peak = float(np.nanmax(np.abs(data))) if data.size else 0.0
                data = data / peak if peak > 0 and np.isfinite(peak) else data
            if data.ndim == 1:
                colours = np.where(data >= 0, BLUE, VERMILLION) if signed else GREY
                ax.bar(np.arange(data.size), data, color=colours)
                if signed:
                    ax.set_ylim(-1.05, 1.05)
            else:
                cmap, img_norm = ("RdBu_r", norm) if signed else ("cividis", None)
                # grids keep square pixels; (C, L) and (T, F) examples fill the panel
                aspect = "equal" if x.ndim >= 4 else "auto"
                im = ax.imshow(data, cmap=cmap, norm=img_norm, interpolation="nearest",
                               aspect=aspect)  # fmt: skip
                image = im if signed else image
                ax.set_xticks([])
                ax.set_yticks([])
            if m == 0:
                ax.set_title(title, fontsize="small")
        label = names[m] if m < len(names) else f"example {m}"
        axes[m, 0].set_ylabel(label, fontsize="x-small")
    if image is not None:
        cb = fig.colorbar(image, ax=axes[:, 1:].ravel().tolist(), shrink=0.6, location="bottom")
        cb.set_label("attribution / its max |value| (per map)", fontsize="x-small")
        cb.ax.tick_params(labelsize="x-small")
    return fig


def uncertainty_panel_note(shape: Sequence[int]) -> str:
    """What :func:`uncertainty_maps` draws of one example of ``shape``."""
    if len(shape) < 3:
        return ""
    note = "input channel 0, maps summed over channels"
    cut = slice_note(shape)
    return note + (f"; {cut}" if cut else "")


def _panel(a: np.ndarray, *, input_panel: bool) -> np.ndarray:
    """One example as a 1D or 2D array to draw (see :func:`uncertainty_maps`)."""
    if a.ndim < 3:
        return a
    a = a[0] if input_panel else a.sum(axis=0)
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a
