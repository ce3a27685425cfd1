"""Figures of attributions and checks, as matplotlib ``Figure`` objects (no pyplot state).

Only numpy and matplotlib are needed: every function also takes plain arrays and the
``as_dict()`` of a check, so figures can be redrawn from saved results. Colour maps are
colour-blind safe: diverging ``RdBu_r`` (symmetric about 0) for signed attributions,
``cividis`` for spreads, ``gray`` for inputs; curves use the Okabe-Ito palette.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "plot_attribution",
    "plot_curves",
    "plot_maps_2d",
    "plot_randomization",
    "plot_sequence",
    "plot_volume",
]

SIGNED, SPREAD, INPUT = "RdBu_r", "cividis", "gray"
BLUE, VERMILLION, GREEN, GREY = "#0072B2", "#D55E00", "#009E73", "#999999"
_RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9}


def _members(attribution: Any, index: int) -> np.ndarray:
    """One example's maps of every member, ``(K, *sample_shape)``."""
    members = getattr(attribution, "members", attribution)
    members = np.asarray(members, dtype=np.float64)
    if members.ndim < 3:
        raise ValueError(
            f"Expected an Attribution or member maps of shape (K, N, *input_shape), got "
            f"shape {members.shape}"
        )
    if not -members.shape[1] <= index < members.shape[1]:
        raise IndexError(f"example {index} is out of range for {members.shape[1]} examples")
    return members[:, index]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _signed_limit(a: np.ndarray) -> float:
    v = float(np.nanmax(np.abs(a))) if a.size else 0.0
    return v if v > 0 else 1.0


def _image(fig: Figure, ax: Any, img: np.ndarray, kind: str, title: str, label: str) -> None:
    if kind == "signed":
        v = _signed_limit(img)
        im = ax.imshow(img, cmap=SIGNED, vmin=-v, vmax=v, interpolation="nearest")
    elif kind == "spread":
        im = ax.imshow(img, cmap=SPREAD, vmin=0.0, interpolation="nearest")
    else:
        im = ax.imshow(img, cmap=INPUT, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8, label=label)


def plot_attribution(
    attribution: Any, index: int = 0, *, inputs: np.ndarray | None = None, **kwargs: Any
) -> Figure:
    """The natural figure for the input's rank.

    ``(F,)`` and ``(C, L)`` / ``(T, F)`` samples -> :func:`plot_sequence`; ``(C, H, W)`` ->
    :func:`plot_maps_2d`; ``(C, D, H, W)`` and ``(C, T, D, H, W)`` -> :func:`plot_volume`.

    Parameters
    ----------
    attribution : Attribution or array of shape (K, N, *input_shape)
    index : int
        Which example.
    inputs : array of shape (N, *input_shape), optional
        Adds the input as a first panel.
    **kwargs
        Passed to the chosen function.
    """
    rank = np.asarray(getattr(attribution, "members", attribution)).ndim - 2
    if rank <= 2:
        return plot_sequence(attribution, index, inputs=inputs, **kwargs)
    if rank == 3:
        return plot_maps_2d(attribution, index, inputs=inputs, **kwargs)
    return plot_volume(attribution, index, inputs=inputs, **kwargs)


def plot_maps_2d(
    attribution: Any,
    index: int = 0,
    *,
    inputs: np.ndarray | None = None,
    channel: int | None = None,
    title: str | None = None,
) -> Figure:
    """Input (optional), member-mean map and member std map side by side.

    Parameters
    ----------
    attribution : Attribution or array of shape (K, N, C, H, W)
    index : int
    inputs : array of shape (N, C, H, W), optional
    channel : int, optional
        Show one channel; by default the channels are summed (the std is then the spread of
        the summed maps over members).
    title : str, optional

    Examples
    --------
    >>> fig = plot_maps_2d(np.random.rand(3, 2, 1, 8, 8))
    >>> len(fig.axes)  # mean, std and their colour bars
    4
    """
    maps = _members(attribution, index)
    if maps.ndim != 4:
        raise ValueError(f"plot_maps_2d needs (C, H, W) samples, got {maps.shape[1:]}")
    reduced = maps[:, channel] if channel is not None else maps.sum(axis=1)
    panels: list[tuple[np.ndarray, str, str, str]] = []
    if inputs is not None:
        x = np.asarray(inputs)[index]
        img = x[channel] if channel is not None else x.mean(axis=0)
        panels.append(
            (img, "input", "input" + ("" if channel is not None else ", channel mean"), "value")
        )
    panels.append((reduced.mean(axis=0), "signed", "attribution, member mean", "attribution"))
    if len(maps) > 1:
        panels.append((reduced.std(axis=0), "spread", f"std over {len(maps)} members", "std"))
    with _rc():
        fig = _figure(3.1 * len(panels), 2.8)
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        for ax, (img, kind, name, label) in zip(axes, panels, strict=True):
            _image(fig, ax, img, kind, name, label)
        if title:
            fig.suptitle(title)
    return fig


def plot_volume(
    attribution: Any,
    index: int = 0,
    *,
    inputs: np.ndarray | None = None,
    mode: str = "slices",
    title: str | None = None,
) -> Figure:
    """Orthogonal views of a 3D attribution: rows input (optional), member mean, member std;
    columns the three axes.

    Parameters
    ----------
    attribution : Attribution or array of shape (K, N, C, D, H, W) or (K, N, C, T, D, H, W)
        Channels (and folded time) are summed.
    index : int
    inputs : array of shape (N, *input_shape), optional
    mode : {"slices", "projection"}
        ``"slices"``: planes through the voxel of largest ``|mean|``; ``"projection"``: maximum
        projections (for the signed mean, the value of largest magnitude along the ray).
    title : str, optional
    """
    if mode not in ("slices", "projection"):
        raise ValueError(
            f"The 'mode' parameter of plot_volume must be one of {{'slices', 'projection'}}. "
            f"Got {mode!r} instead."
        )
    maps = _members(attribution, index)
    if maps.ndim < 5:
        raise ValueError(f"plot_volume needs (C, D, H, W) samples, got {maps.shape[1:]}")
    vol = maps.reshape(len(maps), -1, *maps.shape[-3:]).sum(axis=1)  # (K, D, H, W)
    mean, std = vol.mean(axis=0), vol.std(axis=0)
    rows: list[tuple[np.ndarray, str, str]] = []
    if inputs is not None:
        x = np.asarray(inputs)[index]
        rows.append((x.reshape(-1, *x.shape[-3:]).mean(axis=0), "input", "input"))
    rows.append((mean, "signed", "member mean"))
    if len(vol) > 1:
        rows.append((std, "spread", "member std"))
    centre = np.unravel_index(int(np.argmax(np.abs(mean))), mean.shape)
    with _rc():
        fig = _figure(3 * 3.0, 2.6 * len(rows))
        axes = np.atleast_2d(fig.subplots(len(rows), 3))
        for r, (data, kind, name) in enumerate(rows):
            for axis in range(3):
                view, where = _view(data, axis, centre, mode, kind)
                _image(fig, axes[r, axis], view, kind, f"{name}, {where}", name)
        if title:
            fig.suptitle(title)
    return fig


def _view(
    data: np.ndarray, axis: int, centre: tuple, mode: str, kind: str
) -> tuple[np.ndarray, str]:
    label = "DHW"[axis]
    if mode == "slices":
        return np.take(data, centre[axis], axis=axis), f"{label} = {centre[axis]}"
    if kind == "signed":
        pick = np.expand_dims(np.argmax(np.abs(data), axis=axis), axis)
        return np.take_along_axis(data, pick, axis=axis).squeeze(axis), f"max |.| along {label}"
    return data.max(axis=axis), f"max along {label}"


def plot_sequence(
    attribution: Any,
    index: int = 0,
    *,
    inputs: np.ndarray | None = None,
    time_axis: int | None = None,
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Time x feature heatmaps of the member mean and std (a bar chart for ``(F,)`` samples).

    Parameters
    ----------
    attribution : Attribution or array of shape (K, N, T, F), (K, N, C, L) or (K, N, F)
    index : int
    inputs : array of shape (N, *input_shape), optional
    time_axis : {0, 1}, optional
        Which sample axis is time: 0 for ``(T, F)`` sequences, 1 for ``(C, L)`` signals.
        Default: the longer axis.
    feature_names : list of str, optional
    title : str, optional

    Examples
    --------
    >>> fig = plot_sequence(np.random.rand(4, 1, 50, 3), feature_names=["u", "v", "w"])
    >>> [ax.get_ylabel() for ax in fig.axes[:2]]
    ['feature', 'feature']
    """
    maps = _members(attribution, index)
    if maps.ndim == 2:
        return _bars(maps, feature_names, title)
    if maps.ndim != 3:
        raise ValueError(f"plot_sequence needs (T, F) or (C, L) samples, got {maps.shape[1:]}")
    if time_axis is None:
        time_axis = 0 if maps.shape[1] >= maps.shape[2] else 1
    if time_axis not in (0, 1):
        raise ValueError(f"Expected time_axis 0 or 1, got {time_axis}")
    fmaps = maps if time_axis == 1 else maps.transpose(0, 2, 1)  # (K, F, T)
    panels: list[tuple[np.ndarray, str, str, str]] = []
    if inputs is not None:
        x = np.asarray(inputs)[index]
        panels.append((x if time_axis == 1 else x.T, "input", "input", "value"))
    panels.append((fmaps.mean(axis=0), "signed", "attribution, member mean", "attribution"))
    if len(fmaps) > 1:
        panels.append((fmaps.std(axis=0), "spread", f"std over {len(fmaps)} members", "std"))
    n_feat, n_time = fmaps.shape[1:]
    with _rc():
        fig = _figure(
            min(10.0, 3.0 + 0.08 * n_time), 0.6 + len(panels) * min(2.6, 0.9 + 0.18 * n_feat)
        )
        axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True))
        for ax, (img, kind, name, label) in zip(axes, panels, strict=True):
            _image(fig, ax, img, kind, name, label)
            ax.set_aspect("auto")
            ax.set_ylabel("feature")
            ticks = range(n_feat) if n_feat <= 12 else ()
            ax.set_yticks(list(ticks))
            if feature_names is not None and n_feat <= 12:
                ax.set_yticklabels(list(feature_names))
        axes[-1].set_xlabel("time step")
        axes[-1].set_xticks(np.linspace(0, n_time - 1, min(n_time, 6)).round().astype(int))
        if title:
            fig.suptitle(title)
    return fig


def _bars(maps: np.ndarray, names: Sequence[str] | None, title: str | None) -> Figure:
    mean, std = maps.mean(axis=0), maps.std(axis=0)
    pos = np.arange(len(mean))
    with _rc():
        fig = _figure(max(3.5, 0.3 * len(mean) + 1.5), 2.8)
        ax = fig.subplots()
        colors = np.where(mean >= 0, VERMILLION, BLUE)
        ax.bar(pos, mean, yerr=std if len(maps) > 1 else None, color=colors, capsize=2)
        ax.axhline(0.0, color=GREY, lw=0.8)
        ax.set_xticks(pos)
        ax.set_xticklabels(list(names) if names is not None else [str(i) for i in pos], rotation=90)
        ax.set_ylabel("attribution (member mean" + (" \u00b1 std)" if len(maps) > 1 else ")"))
        if title:
            ax.set_title(title)
    return fig


def _check(check: Any) -> dict[str, Any]:
    return check.as_dict() if hasattr(check, "as_dict") else dict(check)


def plot_curves(*checks: Any) -> Figure:
    """Deletion and/or insertion curves: attribution order vs random order (mean +- std).

    Parameters
    ----------
    *checks : CheckResult or its ``as_dict()``
        Results of :func:`deletion_curve` / :func:`insertion_curve`.
    """
    if not checks:
        raise ValueError("plot_curves needs at least one deletion or insertion result")
    with _rc():
        fig = _figure(3.4 * len(checks), 2.9)
        axes = np.atleast_1d(fig.subplots(1, len(checks)))
        for ax, check in zip(axes, checks, strict=True):
            c = _check(check)
            e = c["extra"]
            f = np.asarray(e["fraction"], dtype=float)
            att = np.asarray(e["attribution"], dtype=float)
            rnd = np.asarray(e["random"], dtype=float)
            sd = np.asarray(e.get("random_std", np.zeros_like(rnd)), dtype=float)
            ax.fill_between(f, att, rnd, color=GREY, alpha=0.25, lw=0, label="area gap")
            ax.fill_between(f, rnd - sd, rnd + sd, color=VERMILLION, alpha=0.15, lw=0)
            ax.plot(f, rnd, color=VERMILLION, ls="--", label="random order")
            ax.plot(f, att, color=BLUE, label="attribution order")
            verb = "removed" if c["name"] == "deletion" else "inserted"
            ax.set_xlabel(f"fraction of features {verb}")
            ax.set_ylabel("normalised output")
            gap = c["value"]
            verdict = "pass" if c["passed"] else "fail"
            ax.set_title(
                f"{c['name']}: gap {gap:.3g} ({verdict})" if gap is not None else c["name"]
            )
            ax.set_xlim(0, 1)
            ax.legend(frameon=False, loc="best")
    return fig


def plot_randomization(check: Any) -> Figure:
    """Similarity to the original explanation as the layers are randomized, top layer first.

    Parameters
    ----------
    check : CheckResult or its ``as_dict()``
        From :func:`randomization_test`.
    """
    c = _check(check)
    e = c["extra"]
    stages = list(e["stages"])
    pos = np.arange(len(stages))
    sim = np.asarray(e["spearman_abs"], dtype=float)
    sd = np.asarray(e.get("spearman_abs_std", np.zeros_like(sim)), dtype=float)
    with _rc():
        fig = _figure(max(3.6, 0.45 * len(stages) + 1.8), 3.0)
        ax = fig.subplots()
        ax.fill_between(pos, sim - sd, sim + sd, color=BLUE, alpha=0.15, lw=0)
        ax.plot(pos, sim, "o-", color=BLUE, label="|attribution|")
        if "spearman" in e:
            ax.plot(pos, e["spearman"], "s--", color=GREEN, ms=3, label="signed attribution")
        ax.axhline(c["threshold"], color=VERMILLION, ls=":", label=f"threshold {c['threshold']:g}")
        ax.set_xticks(pos)
        ax.set_xticklabels(stages, rotation=45, ha="right")
        ax.set_xlabel("layers randomized (cumulative, from the output)")
        ax.set_ylabel("Spearman rank correlation")
        ax.set_ylim(min(-0.1, float(np.nanmin(sim - sd)) - 0.05), 1.05)
        ax.set_title(f"randomization: {c['value']:.3g} ({'pass' if c['passed'] else 'fail'})")
        ax.legend(frameon=False, loc="best")
    return fig


class _rc:
    """Figure-local style: rcParams are read when artists are created, restored on exit."""

    def __enter__(self) -> None:
        import matplotlib

        # matplotlib >= 3.10 types the keys as a Literal of every rc name; _RC holds three.
        self._ctx = matplotlib.rc_context(_RC)  # type: ignore[arg-type]
        self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
