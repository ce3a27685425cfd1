"""The search record: trials, lane groups and the selection as plain, JSON-ready data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trustml.search._trials import TrialPlan
from trustml.search.select import Selection

__all__ = ["group_entries", "selection_entry", "trial_entry"]


def group_entries(g: int, units: Sequence[Sequence[TrialPlan]]) -> list[dict[str, Any]]:
    """The lane groups (units) of generation ``g``: their trials and what they share."""
    return [
        {
            "generation": g,
            "trials": [p.index for p in unit],
            "model_options": unit[0].model_options,
            "batch_size": unit[0].batch_size,
            "epochs": unit[0].epochs,
        }
        for unit in units
    ]


def trial_entry(
    plan: TrialPlan, result: Mapping[str, Any], score: float | None, g: int, group: int
) -> dict[str, Any]:
    """One trial: its settings, validation score (``None``: diverged), group and time."""
    return {
        "number": plan.index,
        "params": plan.params,
        "model_options": plan.model_options,
        "training": {
            "lr": plan.lr,
            "weight_decay": plan.weight_decay,
            "batch_size": plan.batch_size,
            "epochs": plan.epochs,
        },
        "score": score,
        "state": "diverged" if score is None else "complete",
        "generation": g,
        "group": group,
        "time_s": float(result["time_s"]),
    }


def selection_entry(
    sel: Selection, candidates: Sequence[int], entries: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The selection by trial number: chosen trials (with repeats), counts, trace, best."""
    chosen = [candidates[i] for i in sel.indices]
    best = min(candidates, key=lambda i: (entries[i]["score"], i))
    return {
        "trials": chosen,
        "counts": {str(i): chosen.count(i) for i in sorted(set(chosen))},
        "trace": list(sel.trace),
        "best_single": best,
        "best_single_score": entries[best]["score"],
    }
