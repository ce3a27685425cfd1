"""Calibration figures: coverage curves, PIT histograms, reliability, predicted against true."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from trustml import results_keys as rk
from trustml.exceptions import DataError
from trustml.report.figures._base import (
    BLUE,
    GREY,
    MAX_SCATTER_POINTS,
    ORANGE,
    VERMILLION,
    as_2d,
    axis_label,
    floats,
    grid_shape,
    method_colour,
    new_figure,
    primary_path,
    same_shape,
)

__all__ = [
    "coverage_curves",
    "has_coverage_curves",
    "has_pit_histograms",
    "pit_histograms",
    "predicted_vs_true",
    "reliability_diagram",
]


_TARGETS, _LABELS = primary_path(rk.TARGETS), primary_path(rk.LABELS)


def coverage_curves(curves: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """Empirical coverage of central prediction intervals against their nominal level.

    Parameters
    ----------
    curves : mapping of str to mapping
        Method label to ``{"nominal", "empirical", "empirical_raw"}``: coverage after
        calibration (solid) and, optionally, before it (dashed), on the test split. All methods
        are overlaid, each in its own colour.

    Returns
    -------
    Figure or None
        ``None`` when no curve is usable. Points on the diagonal are calibrated; below it the
        intervals are over-confident.
    """
    usable = _usable_curves(curves)
    if not usable:
        return None
    fig = new_figure(4.9, 4.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="ideal (diagonal)")
    many = len(usable) > 1
    for i, (label, nominal, empirical, before) in enumerate(usable):
        colour = method_colour(i)
        prefix = f"{label}, " if many else ""
        if before is not None:
            ax.plot(nominal, before, "s--", color=colour if many else ORANGE, ms=3.5, lw=1.1,
                    label=f"{prefix}before calibration")  # fmt: skip
            ax.plot(nominal, empirical, "o-", color=colour, ms=4, lw=1.6,
                    label=f"{prefix}after calibration")  # fmt: skip
        else:
            ax.plot(nominal, empirical, "o-", color=colour, ms=4, lw=1.6,
                    label=label if many else "empirical")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage of central interval")
    ax.set_ylabel("empirical coverage (test split)")
    ax.set_title("Interval calibration")
    ax.legend(fontsize="x-small", loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def pit_histograms(
    pits: Mapping[str, tuple[np.ndarray | None, np.ndarray | None]], *, n_bins: int = 10
) -> Figure | None:
    """Histograms of probability integral transform (PIT) values, one panel per method.

    Parameters
    ----------
    pits : mapping of str to (after, before)
        Method label to its PIT values ``(n_samples, n_targets)`` on the test split after and
        before calibration (either may be ``None``). Values of all targets are pooled.
    n_bins : int
        Equal-width bins on [0, 1].

    Returns
    -------
    Figure or None
        Calibrated predictive distributions give a flat histogram at density 1; a U shape means
        over-confident, a hump over-dispersed, a slope biased predictions.
    """
    panels = _pit_panels(pits)
    if not panels:
        return None
    nrows, ncols = grid_shape(len(panels), 3)
    fig = new_figure(3.7 * ncols, 3.3 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for ax, (label, after, before) in zip(axes, panels, strict=False):
        if after is not None:
            ax.hist(after, bins=list(edges), density=True, color=BLUE, alpha=0.7,
                    edgecolor="white", label="after calibration")  # fmt: skip
        if before is not None:
            ax.hist(before, bins=list(edges), density=True, histtype="step", color=VERMILLION,
                    lw=1.6, ls="--", label="before calibration")  # fmt: skip
        ax.axhline(1.0, color=GREY, ls=":", lw=1.2, label="uniform (calibrated)")
        ax.set_xlim(0, 1)
        ax.set_xlabel("PIT value")
        ax.set_ylabel("density")
        n = after.size if after is not None else before.size if before is not None else 0
        ax.set_title(f"{label} (n={n})", fontsize="medium")
        ax.legend(fontsize="x-small", loc="upper center")
        ax.grid(alpha=0.3, axis="y")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig


def has_coverage_curves(curves: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether :func:`coverage_curves` draws a figure (some curve is usable)."""
    return bool(_usable_curves(curves))


def _usable_curves(
    curves: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(label, nominal, after, before or None)`` of every curve with matching lengths."""
    usable: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for label, curve in curves.items():
        if not isinstance(curve, Mapping):
            continue
        nominal, empirical = floats(curve.get("nominal")), floats(curve.get("empirical"))
        if nominal.size and empirical.shape == nominal.shape:
            raw = floats(curve.get("empirical_raw"))
            usable.append(
                (str(label), nominal, empirical, raw if raw.shape == nominal.shape else None)
            )
    return usable


def has_pit_histograms(pits: Mapping[str, tuple[np.ndarray | None, np.ndarray | None]]) -> bool:
    """Whether :func:`pit_histograms` draws a figure, or raises (PIT values outside [0, 1])."""
    try:
        return bool(_pit_panels(pits))
    except DataError:
        return True  # drawing reports it


def _pit_panels(
    pits: Mapping[str, tuple[np.ndarray | None, np.ndarray | None]],
) -> list[tuple[str, np.ndarray | None, np.ndarray | None]]:
    panels = []
    for label, (after, before) in pits.items():
        a = _pit(after, f"{label}: PIT after calibration")
        b = _pit(before, f"{label}: PIT before calibration")
        if a is not None or b is not None:
            panels.append((str(label), a, b))
    return panels


def _pit(values: np.ndarray | None, name: str) -> np.ndarray | None:
    if values is None:
        return None
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    if v.min() < 0.0 or v.max() > 1.0:
        raise DataError(
            f"{name}: PIT values must lie in [0, 1], got [{v.min():.3g}, {v.max():.3g}]"
        )
    return v


def reliability_diagram(
    series: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    n_bins: int = 10,
    styles: Mapping[str, tuple[str, str]] | None = None,
) -> Figure:
    """Accuracy against confidence of the predicted class, in ``n_bins`` equal-width bins.

    Parameters
    ----------
    series : mapping of str to numpy.ndarray
        Curve label (``"before calibration"``, ``"after calibration"``, a method label) to
        class probabilities ``(n_samples, n_classes)``; all curves are overlaid.
    labels : numpy.ndarray
        True class indices ``(n_samples,)``.
    n_bins : int
        Number of confidence bins.
    styles : mapping of str to (colour, linestyle), optional
        Per curve; by default the ``i``-th curve gets ``OKABE_ITO[i]``, dashed when its label
        says "before".

    Returns
    -------
    Figure
        Top: accuracy per bin at the bin's mean confidence (the expected calibration error in
        the legend); bottom: how many test samples fall in each bin.
    """
    y = np.asarray(labels).ravel()
    edges = np.linspace(0, 1, n_bins + 1)
    fig = new_figure(4.9, 5.4)
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="ideal (diagonal)")
    for i, (label, probs) in enumerate(series.items()):
        p = np.asarray(probs, dtype=float)
        if p.ndim != 2 or p.shape[0] != y.shape[0]:
            raise DataError(
                f"class probabilities for {label!r} have shape {p.shape} and arrays['{_LABELS}']"
                f" {y.shape}; expected (n_samples, n_classes) and (n_samples,)"
            )
        conf = p.max(axis=1)
        correct = p.argmax(axis=1) == y
        which = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
        counts = np.bincount(which, minlength=n_bins)
        has = counts > 0
        acc = np.bincount(which, weights=correct, minlength=n_bins)[has] / counts[has]
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins)[has] / counts[has]
        ece = float(np.sum(counts[has] / max(len(y), 1) * np.abs(acc - mean_conf)))
        colour, style = (styles or {}).get(
            label, (method_colour(i), "--" if "before" in label else "-")
        )
        ax.plot(mean_conf, acc, marker="o", ms=4, ls=style, lw=1.5, color=colour,
                label=f"{label} (ECE {ece:.3f})")  # fmt: skip
        ax_n.stairs(counts, edges, color=colour, ls=style, lw=1.3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy (test split)")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize="x-small", loc="upper left")
    ax.grid(alpha=0.3)
    ax_n.set_xlabel("confidence of predicted class")
    ax_n.set_ylabel("samples")
    ax_n.grid(alpha=0.3)
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
    y, mu = as_2d(targets, _TARGETS), as_2d(mean, primary_path(rk.MEAN))
    lo: np.ndarray | None
    hi: np.ndarray | None
    same_shape(mu, y, primary_path(rk.MEAN), _TARGETS)
    if lower is not None and upper is not None:
        lo, hi = as_2d(lower, primary_path(rk.LOWER)), as_2d(upper, primary_path(rk.UPPER))
        same_shape(lo, y, primary_path(rk.LOWER), _TARGETS)
        same_shape(hi, y, primary_path(rk.UPPER), _TARGETS)
        band = "prediction interval"
    elif std is not None:
        sd = as_2d(std, primary_path(rk.STD))
        same_shape(sd, y, primary_path(rk.STD), _TARGETS)
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
    fig = new_figure(3.6 * ncols, 3.5 * nrows)
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
        ax.set_xlabel(axis_label(f"true {names[j]}", unit_list[j]))
        ax.set_ylabel(axis_label(f"predicted {names[j]}", unit_list[j]))
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
