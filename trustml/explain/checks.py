"""Checks that need only the attribution maps: completeness and localization."""

from __future__ import annotations

import numpy as np

from trustml.explain._result import Attribution, CheckResult, compare

__all__ = ["completeness_check", "localization"]


def completeness_check(attribution: Attribution, *, threshold: float = 0.05) -> CheckResult:
    """Integrated-gradients completeness (Sundararajan et al. 2017).

    The attributions of an example should sum to ``F(x) - F(baseline)``. The value is the median
    over members and examples of ``|sum(attr) - (F(x) - F(b))| / |F(x) - F(b)|``; the check
    passes at ``<= threshold`` (5 %, the IG paper's guidance). Pairs with ``F(x) = F(b)`` to
    within 1e-12 are compared absolutely.

    Parameters
    ----------
    attribution : Attribution
        From ``integrated_gradients`` (or any method meant to be complete, e.g. ``deeplift``).
    threshold : float, default 0.05

    Returns
    -------
    CheckResult
        ``extra``: ``{"max": float, "per_member": [median per member]}``.

    Examples
    --------
    >>> from torch import nn
    >>> from trustml.explain import attribute
    >>> completeness_check(attribute(nn.Linear(3, 1), np.ones((2, 3), "float32"))).passed
    True
    """
    sums = attribution.members.reshape(*attribution.members.shape[:2], -1).sum(axis=-1)
    gap = attribution.outputs - attribution.baseline_outputs
    rel = np.abs(sums - gap) / np.maximum(np.abs(gap), 1e-12)
    value = float(np.median(rel))
    return CheckResult(
        name="completeness",
        value=value,
        threshold=threshold,
        passed=compare(value, threshold, "<="),
        detail=(
            f"median relative IG completeness gap over {rel.size} member-example pairs "
            f"(max {float(rel.max()):.3g})"
        ),
        comparison="<=",
        extra={"max": float(rel.max()), "per_member": np.median(rel, axis=1).tolist()},
    )


def localization(
    attribution: Attribution | np.ndarray,
    mask: np.ndarray,
    *,
    relevance: str = "positive",
) -> CheckResult:
    """Relevance mass inside a ground-truth mask, against the mask's share of the input.

    For each example with a non-empty mask, ``mass = sum(R * mask) / sum(R)`` with ``R`` the
    positive part of the member-mean attribution (``relevance="absolute"``: its magnitude), and
    ``area = mean(mask)``; examples whose mask is empty (no signal to find) are left out. An explainer that ignores the region gets ``mass ~ area``. The
    check passes when the mean mass is at least ``min(2 * area, (1 + area) / 2)``: twice the
    area share, or halfway to 1 for masks covering a third of the input or more.

    Parameters
    ----------
    attribution : Attribution or array of shape (N, *input_shape)
    mask : bool array of shape (N, *input_shape), or broadcastable to it
        e.g. ``(*input_shape)``, or ``(N, 1, H, W)`` for all channels of an image.
    relevance : {"positive", "absolute"}

    Returns
    -------
    CheckResult
        ``value`` = mean relevance mass inside the mask; ``extra``: ``area_share``,
        ``lift`` (mass / area) and the per-example ``mass`` list.

    Examples
    --------
    >>> a = np.zeros((1, 1, 4, 4)); a[0, 0, :2, :2] = 1.0
    >>> m = np.zeros((1, 1, 4, 4), bool); m[0, 0, :2, :2] = True
    >>> localization(a, m).value
    1.0
    """
    maps = attribution.mean if isinstance(attribution, Attribution) else np.asarray(attribution)
    if relevance not in ("positive", "absolute"):
        raise ValueError(
            "The 'relevance' parameter of localization must be one of {'positive', "
            f"'absolute'}}. Got {relevance!r} instead."
        )
    try:
        m = np.broadcast_to(np.asarray(mask, dtype=bool), maps.shape)
    except ValueError:
        raise ValueError(
            f"mask of shape {np.shape(mask)} does not broadcast to the attributions {maps.shape}"
        ) from None
    rel = np.maximum(maps, 0.0) if relevance == "positive" else np.abs(maps)
    n = len(rel)
    rel, m = rel.reshape(n, -1), m.reshape(n, -1)
    # Examples without any ground truth (e.g. the no-signal class) say nothing about where the
    # relevance should be: they are left out, not counted as zero mass.
    used = m.any(axis=1)
    rel, m = rel[used], m[used]
    total = rel.sum(axis=1)
    mass = np.divide((rel * m).sum(axis=1), total, out=np.zeros(len(rel)), where=total > 0)
    area = m.mean(axis=1)
    if not used.any():
        value, area_mean, threshold = float("nan"), 0.0, float("nan")
    else:
        value, area_mean = float(mass.mean()), float(area.mean())
        threshold = min(2.0 * area_mean, (1.0 + area_mean) / 2.0)
    return CheckResult(
        name="localization",
        value=value,
        threshold=threshold,
        passed=compare(value, threshold, ">="),  # NaN (no mask anywhere) never passes
        detail=(
            f"{relevance} relevance mass inside the mask (area share {area_mean:.3g}), "
            f"mean over the {int(used.sum())} of {n} examples with a non-empty mask"
        ),
        comparison=">=",
        extra={
            "area_share": area_mean,
            "lift": value / area_mean if area_mean > 0 else None,
            "mass": mass.tolist(),
            "examples_used": int(used.sum()),
            "examples_without_mask": int(n - used.sum()),
        },
    )
