"""The run's summary (``results.json``): the scored methods, the data, the model, the verdict."""

from __future__ import annotations

from typing import Any

import numpy as np

from trustml.models import model_summary
from trustml.protocol._plan import Plan
from trustml.protocol._scoring import Scored
from trustml.protocol.schema import Protocol

__all__ = ["summarize"]


def _groups_disjoint(plan: Plan) -> bool | None:
    """Whether no group (e.g. simulation) has samples in two splits; ``None`` without groups."""
    ds = plan.dataset
    if ds.groups is None:
        return None
    g = {k: set(np.asarray(ds.groups)[v].tolist()) for k, v in plan.splits.items()}
    return not (
        g["train"] & g["test"] or g["train"] & g["calibration"] or g["calibration"] & g["test"]
    )


def summarize(
    protocol: Protocol,
    plan: Plan,
    models: dict[str, Any],
    scored: Scored,
    *,
    acceptance: list[dict[str, Any]],
    verdict: str,
    fingerprint: str,
    attribution: dict[str, Any] | None,
) -> dict[str, Any]:
    """The summary of a finished run; the primary method's parts are also at the top level."""
    ds, spec = plan.dataset, protocol.primary
    first = scored.methods[spec.name]
    model = models[spec.name]
    net = model.members_[0] if hasattr(model, "members_") else plan.make_model()
    summary_model = model_summary(net)
    groups_disjoint = _groups_disjoint(plan)
    summary: dict[str, Any] = {
        "name": protocol.name,
        "task": protocol.task,
        "seed": protocol.seed,
        "verdict": verdict,
        "metrics": first["metrics"],
        "baseline_metrics": scored.baseline_metrics,
        "reference": scored.reference,
        "methods": scored.methods,
        "acceptance": acceptance,
        "data": {
            "source": ds.source,
            "n_samples": len(ds),
            "input_shape": list(ds.input_shape),
            "target_names": plan.target_names,
            "splits": {k: len(v) for k, v in plan.splits.items()},
            "split_order": protocol.data.split.order,
            "fingerprint": fingerprint,
            "groups_disjoint": groups_disjoint,
            "duplicates": scored.duplicates,
            "target_stats": scored.target_stats,
        },
        "model": {
            "name": protocol.model.builtin or protocol.model.factory,
            "n_parameters": summary_model["n_parameters"],
            "summary": summary_model["text"],
        },
        "uncertainty": {
            **spec.settings(),
            "label": spec.name,
            "history": first["history"],
        },
        "calibration": first["calibration"],
        "claims": protocol.claims,
        "limitations": protocol.limitations,
    }
    if "coverage_curve" in first:
        summary["coverage_curve"] = first["coverage_curve"]
    if scored.shifts:
        summary["shifts"] = scored.shifts
    if attribution is not None:
        summary["attribution"] = attribution
    return summary
