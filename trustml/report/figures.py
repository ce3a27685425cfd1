"""Report figures, drawn with matplotlib's Agg canvas (never pyplot, so no global state).

Every function takes plain arrays, lists and mappings and returns a
:class:`matplotlib.figure.Figure` (or ``None`` when there is nothing to draw); :func:`to_data_uri`
turns one into an embeddable PNG. Colours are colour-blind safe (Okabe-Ito for categories,
cividis/viridis for magnitudes, a symmetric diverging map for signed values). Several methods
compared in one run are drawn in the same colour everywhere: the ``i``-th method gets
``OKABE_ITO[i]``.
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
from matplotlib.ticker import MaxNLocator, NullFormatter

from trustml.exceptions import DataError

__all__ = [
    "DPI",
    "aleatoric_epistemic",
    "attribution_example",
    "attribution_grid",
    "check_curves",
    "check_field",
    "coverage_curves",
    "entropy_histogram",
    "pit_histograms",
    "predicted_vs_true",
    "reliability_diagram",
    "spread_skill",
    "to_data_uri",
    "training_curves",
    "uncertainty_under_shift",
]

DPI = 110
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
BLUE, ORANGE, GREEN, VERMILLION, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#555555"
MAX_SCATTER_POINTS = 600
MAX_CHANNEL_ROWS = 4
MAX_LINE_CHANNELS = len(OKABE_ITO)
MAX_TARGET_PANELS = 6
_SLICE_AXIS_NAMES = {1: ("z",), 2: ("t", "z")}

#: Where a check's numbers may live (top level, else under ``extra``) and their other names.
_CHECK_ALIASES = {
    "stage_similarity": ("stage_similarity", "spearman_abs"),
    "stage_similarity_std": ("stage_similarity_std", "spearman_abs_std"),
    "stages": ("stages",),
    "similarity": ("similarity", "value"),
    "fractions": ("fractions", "fraction"),
    "curve": ("curve", "attribution"),
    "random_curve": ("random_curve", "random"),
    "random_curve_std": ("random_curve_std", "random_std"),
    "score": ("score", "value"),
}


def _figure(width: float, height: float, *, layout: Any = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    """Encode ``fig`` as a ``data:image/png;base64,...`` URI (no metadata, so it is stable)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(name: str, unit: str | None) -> str:
    return f"{name} [{unit}]" if unit else name


def method_colour(i: int) -> str:
    """The colour of the ``i``-th compared method (cycles after seven)."""
    return OKABE_ITO[i % len(OKABE_ITO)]


def _floats(value: Any) -> np.ndarray:
    """``value`` as a 1D float array; anything unusable (None, strings, ragged) gives empty."""
    try:
        a = np.asarray(value if value is not None else [], dtype=float).ravel()
    except (TypeError, ValueError):
        return np.zeros(0)
    return a


def _grid(n: int, ncols_max: int = 3) -> tuple[int, int]:
    ncols = max(1, min(n, ncols_max))
    return -(-n // ncols), ncols


def _names(target_names: Sequence[str] | None, d: int) -> list[str]:
    names = [str(t) for t in (target_names or [])][:d]
    return names + [f"target {i}" for i in range(len(names), d)]


def _units(units: Sequence[str | None] | None, d: int) -> list[str | None]:
    return (list(units or []) + [None] * d)[:d]


# ---------------------------------------------------------------------------------------------
# 3. Model and training


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
    panels = []
    for label, history in histories.items():
        if not isinstance(history, Mapping):
            continue
        losses, val = _curves(history.get("loss")), _curves(history.get("val_loss"))
        if losses:
            panels.append((str(label), losses, val))
    if not panels:
        return None
    nrows, ncols = _grid(len(panels), 2)
    fig = _figure(5.2 * ncols if ncols > 1 else 6.4, 3.5 * nrows)
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


def _curves(value: Any) -> list[np.ndarray]:
    """Per-member loss curves from a flat list (one network) or a list of lists."""
    if not isinstance(value, list | tuple) or not value:
        return []
    if all(isinstance(v, int | float) or v is None for v in value):
        curve = _floats([np.nan if v is None else v for v in value])
        return [curve] if curve.size else []
    out = []
    for member in value:
        if isinstance(member, list | tuple):
            curve = _floats([np.nan if v is None else v for v in member])
            if curve.size:
                out.append(curve)
    return out


def _member_colours(n: int) -> list[Any]:
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, n)]


# ---------------------------------------------------------------------------------------------
# 5. Calibration


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
    usable: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for label, curve in curves.items():
        if not isinstance(curve, Mapping):
            continue
        nominal, empirical = _floats(curve.get("nominal")), _floats(curve.get("empirical"))
        if nominal.size and empirical.shape == nominal.shape:
            raw = _floats(curve.get("empirical_raw"))
            usable.append(
                (str(label), nominal, empirical, raw if raw.shape == nominal.shape else None)
            )
    if not usable:
        return None
    fig = _figure(4.9, 4.5)
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
    panels = []
    for label, (after, before) in pits.items():
        a = _pit(after, f"{label}: PIT after calibration")
        b = _pit(before, f"{label}: PIT before calibration")
        if a is not None or b is not None:
            panels.append((str(label), a, b))
    if not panels:
        return None
    nrows, ncols = _grid(len(panels), 3)
    fig = _figure(3.7 * ncols, 3.3 * nrows)
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
    fig = _figure(4.9, 5.4)
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="ideal (diagonal)")
    for i, (label, probs) in enumerate(series.items()):
        p = np.asarray(probs, dtype=float)
        if p.ndim != 2 or p.shape[0] != y.shape[0]:
            raise DataError(
                f"class probabilities for {label!r} have shape {p.shape} and arrays['test/labels']"
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


# ---------------------------------------------------------------------------------------------
# 6. Uncertainty


def spread_skill(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    targets: np.ndarray,
    *,
    target_names: Sequence[str] | None = None,
    units: Sequence[str | None] | None = None,
    n_bins: int = 10,
) -> Figure | None:
    """Spread-skill plot: binned predicted standard deviation against the RMSE in each bin.

    The test samples are sorted by predicted std and cut into ``n_bins`` equal-count bins; each
    point is the root-mean-square predicted std of a bin against the root-mean-square error of
    the predicted mean in that bin. Reliable uncertainties lie on the diagonal; points above it
    mean the model is over-confident there.

    Parameters
    ----------
    series : mapping of str to (mean, std)
        Method label to its predicted mean and std on the test split, ``(n_samples, n_targets)``.
    targets : numpy.ndarray
        True values ``(n_samples, n_targets)``.
    target_names, units : sequence of str, optional
        One panel per target (at most ``MAX_TARGET_PANELS``), labelled with name and unit.
    n_bins : int
        Number of equal-count bins (fewer when there are under 5 samples per bin).

    Returns
    -------
    Figure or None
        ``None`` when no series matches the targets' shape.
    """
    y = _as_2d(targets, "test/targets")
    usable = []
    for label, (mean, std) in series.items():
        mu, sd = _as_2d(mean, f"{label}: mean"), _as_2d(std, f"{label}: std")
        _same_shape(mu, y, f"{label}: mean", "test/targets")
        _same_shape(sd, y, f"{label}: std", "test/targets")
        usable.append((str(label), mu, sd))
    if not usable or y.shape[0] < 2:
        return None
    n, d = y.shape
    shown = min(d, MAX_TARGET_PANELS)
    names, unit_list = _names(target_names, d), _units(units, d)
    bins = max(1, min(n_bins, n // 5))
    nrows, ncols = _grid(shown, 3)
    fig = _figure(3.8 * ncols, 3.7 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for j in range(shown):
        ax = axes[j]
        top = 0.0
        for i, (label, mu, sd) in enumerate(usable):
            order = np.argsort(sd[:, j], kind="stable")
            chunks = [c for c in np.array_split(order, bins) if c.size]
            spread = np.array([np.sqrt(np.mean(sd[c, j] ** 2)) for c in chunks])
            skill = np.array([np.sqrt(np.mean((mu[c, j] - y[c, j]) ** 2)) for c in chunks])
            ax.plot(spread, skill, "o-", color=method_colour(i), ms=4, lw=1.4, label=label)
            finite = np.concatenate([spread, skill])
            finite = finite[np.isfinite(finite)]
            top = max(top, float(finite.max()) if finite.size else 0.0)
        top = 1.05 * (top or 1.0)
        ax.plot([0, top], [0, top], color=GREY, ls=":", lw=1, label="ideal (RMSE = std)")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel(_label(f"predicted std of {names[j]} (bin RMS)", unit_list[j]))
        ax.set_ylabel(_label(f"RMSE of {names[j]} (bin)", unit_list[j]))
        ax.set_title(f"{names[j]}: {bins} equal-count bins", fontsize="medium")
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(fontsize="x-small", loc="upper left")
    for ax in axes[shown:]:
        ax.set_visible(False)
    return fig


def aleatoric_epistemic(
    aleatoric_var: np.ndarray,
    epistemic_var: np.ndarray,
    *,
    target_names: Sequence[str] | None = None,
    units: Sequence[str | None] | None = None,
    max_points: int = MAX_SCATTER_POINTS,
) -> Figure:
    """Per-sample aleatoric against epistemic standard deviation, one panel per target.

    Aleatoric variance is the noise the model expects in the data (mean of the members'
    predicted variances); epistemic variance is the members' disagreement (variance of their
    means). Each title gives the epistemic share of the total predictive variance.

    Parameters
    ----------
    aleatoric_var, epistemic_var : numpy.ndarray
        ``(n_samples, n_targets)`` variances on the test split.
    target_names, units : sequence of str, optional
        Panel labels; the std is in the target's unit.
    max_points : int
        At most this many evenly spaced samples are drawn (the shares use all of them).
    """
    al = _as_2d(aleatoric_var, "test/aleatoric_var")
    ep = _as_2d(epistemic_var, "test/epistemic_var")
    _same_shape(ep, al, "test/epistemic_var", "test/aleatoric_var")
    n, d = al.shape
    shown = min(d, MAX_TARGET_PANELS)
    names, unit_list = _names(target_names, d), _units(units, d)
    idx = np.unique(np.linspace(0, max(n - 1, 0), min(n, max_points)).round().astype(int))
    nrows, ncols = _grid(shown, 3)
    fig = _figure(3.8 * ncols, 3.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for j in range(shown):
        ax = axes[j]
        a_sd = np.sqrt(np.clip(al[idx, j], 0, None))
        e_sd = np.sqrt(np.clip(ep[idx, j], 0, None))
        total = float(np.nansum(al[:, j]) + np.nansum(ep[:, j]))
        share = float(np.nansum(ep[:, j])) / total if total > 0 else float("nan")
        ax.scatter(a_sd, e_sd, s=8, color=BLUE, alpha=0.6, lw=0)
        both = np.concatenate([a_sd, e_sd])
        both = both[np.isfinite(both)]
        if both.size and both.min() > 0 and both.max() / both.min() > 20:
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_minor_formatter(NullFormatter())
            lo, hi = float(both.min()) / 1.2, float(both.max()) * 1.2
        else:
            lo, hi = 0.0, float(both.max()) * 1.05 if both.size and both.max() > 0 else 1.0
        ax.plot([lo, hi], [lo, hi], color=GREY, ls=":", lw=1, label="equal")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(_label(f"aleatoric std of {names[j]}", unit_list[j]))
        ax.set_ylabel(_label(f"epistemic std of {names[j]}", unit_list[j]))
        share_text = f"{100 * share:.1f}%" if np.isfinite(share) else "n/a"
        ax.set_title(f"{names[j]}: epistemic share {share_text}", fontsize="medium")
        ax.grid(alpha=0.3)
    for ax in axes[shown:]:
        ax.set_visible(False)
    return fig


def entropy_histogram(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 20) -> Figure:
    """Predictive entropy of correctly and wrongly classified test samples.

    A useful uncertainty puts the wrong predictions at higher entropy than the right ones.

    Parameters
    ----------
    probs : numpy.ndarray
        Class probabilities ``(n_samples, n_classes)``.
    labels : numpy.ndarray
        True class indices ``(n_samples,)``.
    n_bins : int
        Equal-width bins from 0 to ``log(n_classes)``.
    """
    p = np.asarray(probs, dtype=float)
    y = np.asarray(labels).ravel()
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise DataError(
            f"arrays['test/probs'] has shape {p.shape} and arrays['test/labels'] {y.shape}; "
            "expected (n_samples, n_classes) and (n_samples,)"
        )
    ent = predictive_entropy(p)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, max(np.log(max(p.shape[1], 2)), 1e-9), n_bins + 1)
    fig = _figure(5.0, 3.4)
    ax = fig.add_subplot()
    if correct.any():
        ax.hist(ent[correct], bins=list(edges), density=True, color=BLUE, alpha=0.65,
                label=f"correct (n={int(correct.sum())})")  # fmt: skip
    if (~correct).any():
        ax.hist(ent[~correct], bins=list(edges), density=True, histtype="step", color=VERMILLION,
                lw=1.8, label=f"wrong (n={int((~correct).sum())})")  # fmt: skip
    ax.set_xlabel("predictive entropy [nats]")
    ax.set_ylabel("density")
    ax.set_title("Uncertainty of right and wrong predictions (test split)", fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return fig


def predictive_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of class probabilities ``(n_samples, n_classes)``."""
    p = np.clip(np.asarray(probs, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=1)


def uncertainty_under_shift(
    series: Mapping[str, np.ndarray], *, quantity: str, unit: str | None = None, n_bins: int = 30
) -> Figure | None:
    """Distribution of a per-sample uncertainty on the test split and on shifted test sets.

    Parameters
    ----------
    series : mapping of str to numpy.ndarray
        Set name (``"test (in distribution)"``, then each shift) to one value per sample.
    quantity : str
        What the values are (``"predicted std, mean over targets"``, ``"predictive entropy"``).
    unit : str, optional
        Their unit.
    n_bins : int
        Shared equal-width bins.

    Returns
    -------
    Figure or None
        ``None`` when fewer than two sets have values. Uncertainty that grows under shift is
        what a reviewer hopes to see.
    """
    values = {k: v[np.isfinite(v)] for k, v in ((k, _floats(v)) for k, v in series.items())}
    values = {k: v for k, v in values.items() if v.size}
    if len(values) < 2:
        return None
    everything = np.concatenate(list(values.values()))
    lo, hi = float(everything.min()), float(everything.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, n_bins + 1)
    fig = _figure(5.6, 3.5)
    ax = fig.add_subplot()
    for i, (name, v) in enumerate(values.items()):
        ax.hist(v, bins=list(edges), density=True, histtype="step", lw=1.7, color=method_colour(i),
                ls="-" if i == 0 else "--", label=f"{name} (mean {v.mean():.3g})")  # fmt: skip
    ax.set_xlabel(_label(quantity, unit))
    ax.set_ylabel("density")
    ax.set_title("Uncertainty in and out of distribution", fontsize="medium")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3, axis="y")
    return fig


# ---------------------------------------------------------------------------------------------
# 7. Attribution checks


def check_field(check: Mapping[str, Any], name: str) -> Any:
    """A number or list of an attribution check, wherever the results keep it.

    Looks for ``name`` and its older spellings (``fraction`` for ``fractions``, ``spearman_abs``
    for ``stage_similarity``, ...) at the check's top level, then under its ``extra``.
    """
    extra: Mapping[str, Any] = check["extra"] if isinstance(check.get("extra"), Mapping) else {}
    for key in _CHECK_ALIASES.get(name, (name,)):
        for source in (check, extra):
            if key in source and source[key] is not None:
                return source[key]
    return None


def check_curves(checks: Mapping[str, Mapping[str, Any]]) -> Figure | None:
    """The curves of an attribution method's checks: randomization, deletion, insertion.

    Parameters
    ----------
    checks : mapping of str to mapping
        Check name to its results. Randomization draws the similarity to the original
        attribution after each cumulative randomization stage (a faithful explanation falls
        towards zero); deletion and insertion draw the model output as features are removed or
        inserted in attribution order against random order.

    Returns
    -------
    Figure or None
        ``None`` when no check has a curve.
    """
    panels: list[tuple[str, Mapping[str, Any]]] = []
    for name, check in checks.items():
        if not isinstance(check, Mapping):
            continue
        if name == "randomization" and _floats(check_field(check, "stage_similarity")).size:
            panels.append((name, check))
        elif name in ("deletion", "insertion"):
            f, c = _floats(check_field(check, "fractions")), _floats(check_field(check, "curve"))
            if f.size and c.shape == f.shape:
                panels.append((name, check))
    if not panels:
        return None
    fig = _figure(4.2 * len(panels), 3.5)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, check) in zip(axes, panels, strict=True):
        passed = check.get("passed")
        verdict = "" if passed is None else (" (pass)" if passed else " (FAIL)")
        threshold = check.get("threshold")
        if name == "randomization":
            sim = _floats(check_field(check, "stage_similarity"))
            sd = _floats(check_field(check, "stage_similarity_std"))
            stages = [str(s) for s in check_field(check, "stages") or []]
            pos = np.arange(1, sim.size + 1)
            if sd.shape == sim.shape:
                ax.fill_between(pos, sim - sd, sim + sd, color=BLUE, alpha=0.15, lw=0)
            ax.plot(pos, sim, "o-", color=BLUE, label="similarity to original")
            if isinstance(threshold, int | float):
                ax.axhline(threshold, color=VERMILLION, ls=":", label=f"threshold {threshold:g}")
            ax.set_xticks(pos)
            if len(stages) == sim.size:
                ax.set_xticklabels([s if len(s) <= 18 else s[:17] + "\u2026" for s in stages],
                                   rotation=40, ha="right", fontsize="x-small")  # fmt: skip
            ax.set_xlabel("layers randomized (cumulative, from the output)")
            ax.set_ylabel("rank correlation with original")
            ax.set_ylim(min(-0.1, float(np.nanmin(sim)) - 0.05), 1.05)
            ax.set_title(f"randomization{verdict}", fontsize="medium")
        else:
            f = _floats(check_field(check, "fractions"))
            att = _floats(check_field(check, "curve"))
            rnd = _floats(check_field(check, "random_curve"))
            if rnd.shape == f.shape:
                sd = _floats(check_field(check, "random_curve_std"))
                if sd.shape == f.shape:
                    ax.fill_between(f, rnd - sd, rnd + sd, color=VERMILLION, alpha=0.15, lw=0)
                ax.fill_between(f, att, rnd, color=GREY, alpha=0.2, lw=0, label="area gap")
                ax.plot(f, rnd, color=VERMILLION, ls="--", label="random order")
            ax.plot(f, att, color=BLUE, label="attribution order")
            verb = "removed" if name == "deletion" else "inserted"
            ax.set_xlabel(f"fraction of features {verb}")
            ax.set_ylabel("model output (normalised)")
            score = check_field(check, "score")
            score_text = f": score {score:.3g}" if isinstance(score, int | float) else ""
            ax.set_title(f"{name}{score_text}{verdict}", fontsize="medium")
            ax.set_xlim(0, 1)
        ax.legend(fontsize="x-small", loc="best")
        ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# 7. Attribution maps


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
            f"arrays['attribution/inputs'] has shape {x.shape}; a grid needs "
            "(n_examples, n_channels, height, width, ...)"
        )
    if a.ndim != x.ndim + 1 or a.shape[1:] != x.shape:
        raise DataError(
            f"arrays['attribution/maps'] has shape {a.shape}, expected (n_members, *shape of "
            f"attribution/inputs) = (K, {', '.join(map(str, x.shape))})"
        )
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
    fig = _figure(2.5 * panels + 0.9, row_h * n_rows + 1.1, layout=None)
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
