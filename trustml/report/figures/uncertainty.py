"""Uncertainty figures: spread-skill, aleatoric against epistemic, entropy, shift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from trustml import results_keys as rk
from trustml.exceptions import DataError
from trustml.report.figures._base import (
    BLUE,
    GREY,
    MAX_SCATTER_POINTS,
    MAX_TARGET_PANELS,
    VERMILLION,
    as_2d,
    axis_label,
    floats,
    grid_shape,
    method_colour,
    new_figure,
    panel_names,
    panel_units,
    primary_path,
    same_shape,
)

__all__ = [
    "aleatoric_epistemic",
    "entropy_histogram",
    "has_spread_skill",
    "has_uncertainty_under_shift",
    "predictive_entropy",
    "spread_skill",
    "uncertainty_under_shift",
]


_TARGETS = primary_path(rk.TARGETS)


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
    y, usable = _spread_skill_inputs(series, targets)
    if not usable or y.shape[0] < 2:
        return None
    n, d = y.shape
    shown = min(d, MAX_TARGET_PANELS)
    names, unit_list = panel_names(target_names, d), panel_units(units, d)
    bins = max(1, min(n_bins, n // 5))
    nrows, ncols = grid_shape(shown, 3)
    fig = new_figure(3.8 * ncols, 3.7 * nrows)
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
        ax.set_xlabel(axis_label(f"predicted std of {names[j]} (bin RMS)", unit_list[j]))
        ax.set_ylabel(axis_label(f"RMSE of {names[j]} (bin)", unit_list[j]))
        ax.set_title(f"{names[j]}: {bins} equal-count bins", fontsize="medium")
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(fontsize="x-small", loc="upper left")
    for ax in axes[shown:]:
        ax.set_visible(False)
    return fig


def has_spread_skill(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]], targets: np.ndarray
) -> bool:
    """Whether :func:`spread_skill` draws a figure, or raises (arrays of inconsistent shapes)."""
    try:
        y, usable = _spread_skill_inputs(series, targets)
    except DataError:
        return True  # drawing reports it
    return bool(usable) and y.shape[0] >= 2


def _spread_skill_inputs(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]], targets: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The targets and ``(label, mean, std)`` per method, all ``(n_samples, n_targets)``."""
    y = as_2d(targets, _TARGETS)
    usable = []
    for label, (mean, std) in series.items():
        mu, sd = as_2d(mean, f"{label}: mean"), as_2d(std, f"{label}: std")
        same_shape(mu, y, f"{label}: mean", _TARGETS)
        same_shape(sd, y, f"{label}: std", _TARGETS)
        usable.append((str(label), mu, sd))
    return y, usable


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
    al = as_2d(aleatoric_var, primary_path(rk.ALEATORIC_VAR))
    ep = as_2d(epistemic_var, primary_path(rk.EPISTEMIC_VAR))
    same_shape(ep, al, primary_path(rk.EPISTEMIC_VAR), primary_path(rk.ALEATORIC_VAR))
    n, d = al.shape
    shown = min(d, MAX_TARGET_PANELS)
    names, unit_list = panel_names(target_names, d), panel_units(units, d)
    idx = np.unique(np.linspace(0, max(n - 1, 0), min(n, max_points)).round().astype(int))
    nrows, ncols = grid_shape(shown, 3)
    fig = new_figure(3.8 * ncols, 3.6 * nrows)
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
        ax.set_xlabel(axis_label(f"aleatoric std of {names[j]}", unit_list[j]))
        ax.set_ylabel(axis_label(f"epistemic std of {names[j]}", unit_list[j]))
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
            f"arrays['{primary_path(rk.PROBS)}'] has shape {p.shape} and arrays['{primary_path(rk.LABELS)}'] "
            f"{y.shape}; "
            "expected (n_samples, n_classes) and (n_samples,)"
        )
    ent = predictive_entropy(p)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, max(np.log(max(p.shape[1], 2)), 1e-9), n_bins + 1)
    fig = new_figure(5.0, 3.4)
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
    values = _shift_values(series)
    if len(values) < 2:
        return None
    everything = np.concatenate(list(values.values()))
    lo, hi = float(everything.min()), float(everything.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, n_bins + 1)
    fig = new_figure(5.6, 3.5)
    ax = fig.add_subplot()
    for i, (name, v) in enumerate(values.items()):
        ax.hist(v, bins=list(edges), density=True, histtype="step", lw=1.7, color=method_colour(i),
                ls="-" if i == 0 else "--", label=f"{name} (mean {v.mean():.3g})")  # fmt: skip
    ax.set_xlabel(axis_label(quantity, unit))
    ax.set_ylabel("density")
    ax.set_title("Uncertainty in and out of distribution", fontsize="medium")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3, axis="y")
    return fig


def has_uncertainty_under_shift(series: Mapping[str, np.ndarray]) -> bool:
    """Whether :func:`uncertainty_under_shift` draws a figure (two sets or more have values)."""
    return len(_shift_values(series)) >= 2


def _shift_values(series: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The finite values of each set that has some."""
    values = {k: v[np.isfinite(v)] for k, v in ((k, floats(v)) for k, v in series.items())}
    return {k: v for k, v in values.items() if v.size}
