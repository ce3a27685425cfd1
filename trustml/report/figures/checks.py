"""Attribution check figures: randomization, deletion and insertion curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from trustml.report.figures._base import BLUE, GREY, VERMILLION, floats, new_figure

__all__ = ["check_curves", "check_field", "has_check_curves"]

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
    panels = _panels(checks)
    if not panels:
        return None
    fig = new_figure(4.2 * len(panels), 3.5)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, check) in zip(axes, panels, strict=True):
        passed = check.get("passed")
        verdict = "" if passed is None else (" (pass)" if passed else " (FAIL)")
        threshold = check.get("threshold")
        if name == "randomization":
            sim = floats(check_field(check, "stage_similarity"))
            sd = floats(check_field(check, "stage_similarity_std"))
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
            f = floats(check_field(check, "fractions"))
            att = floats(check_field(check, "curve"))
            rnd = floats(check_field(check, "random_curve"))
            if rnd.shape == f.shape:
                sd = floats(check_field(check, "random_curve_std"))
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


def has_check_curves(checks: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether :func:`check_curves` draws a figure (some check has a curve)."""
    return bool(_panels(checks))


def _panels(checks: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(name, check)`` of every check with a curve to draw."""
    panels: list[tuple[str, Mapping[str, Any]]] = []
    for name, check in checks.items():
        if not isinstance(check, Mapping):
            continue
        if name == "randomization" and floats(check_field(check, "stage_similarity")).size:
            panels.append((name, check))
        elif name in ("deletion", "insertion"):
            f, c = floats(check_field(check, "fractions")), floats(check_field(check, "curve"))
            if f.size and c.shape == f.shape:
                panels.append((name, check))
    return panels
