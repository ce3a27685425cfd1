"""The selected members as ``DeepEnsemble`` s, one per architecture, predicting together.

Selected trials may differ in their model options (another width, another dropout rate):
members that share the options become one ``DeepEnsemble`` (so its vectorized prediction,
attribution and persistence apply unchanged), and predictions are put back in selection
order. A trial selected twice is two identical members: the mixture weighs it twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trustml.search._trials import TrainContext
from trustml.uq import DeepEnsemble, Predictive

__all__ = ["by_architecture", "candidate_predictive", "predict_members"]

#: ``(positions of these members among the K, their DeepEnsemble)`` per architecture.
Architectures = list[tuple[list[int], DeepEnsemble]]


def _array(t: Any) -> np.ndarray | None:
    return None if t is None else np.asarray(t)


def by_architecture(
    ctx: TrainContext, parts: Sequence[Mapping[str, Any]], options: Sequence[Mapping[str, Any]]
) -> Architectures:
    """One fitted ``DeepEnsemble`` per distinct model options, in order of first appearance.

    Parameters
    ----------
    ctx : TrainContext
        Builder, task and ensemble settings.
    parts : sequence of dict
        Member k's trial result (``state_dict``, ``history``, ``n_outputs``, target scaling,
        ``engine``; see :func:`trustml.search._trials.train_unit`).
    options : sequence of dict
        Member k's model options.
    """
    slots: dict[str, list[int]] = {}
    for k, opts in enumerate(options):
        slots.setdefault(json.dumps(dict(opts), sort_keys=True), []).append(k)
    out: Architectures = []
    for text, positions in slots.items():
        first = parts[positions[0]]
        ens = ctx.ensemble(json.loads(text), len(positions))
        ens._assemble(
            [
                {
                    "member_indices": list(range(len(positions))),
                    "state_dicts": [parts[k]["state_dict"] for k in positions],
                    "history": {
                        h: [list(parts[k]["history"][h]) for k in positions]
                        for h in first["history"]
                    },
                    "target_shift": _array(first["target_shift"]),
                    "target_scale": _array(first["target_scale"]),
                    "n_outputs": int(first["n_outputs"]),
                    "validation_indices": None,
                    "engine": str(first["engine"]),
                }
            ]
        )
        out.append((positions, ens))
    return out


def predict_members(ensembles: Architectures, k: int, x: Any, batch_size: int) -> Predictive:
    """The K members' predictive on ``x``: ``(K, N, D)`` means and stds, or probabilities."""
    means: np.ndarray | None = None
    stds: np.ndarray | None = None
    for positions, ens in ensembles:
        p = ens.predict(x, batch_size=batch_size)
        if means is None:
            means = np.empty((k, *p.members.shape[1:]), dtype=p.members.dtype)
            stds = np.empty_like(means) if p.task == "regression" else None
        means[positions] = p.members
        if stds is not None:
            stds[positions] = np.asarray(p.member_stds)
    if means is None:
        raise ValueError("Expected at least one member")
    if stds is None:
        return Predictive.classification(means)
    return Predictive.regression(means, stds)


def candidate_predictive(results: list[Mapping[str, Any]], task: str) -> Predictive:
    """Candidates' validation predictions as one predictive, ``(C, N, ...)``."""
    if task == "classification":
        return Predictive.classification(
            np.stack([np.asarray(r["predictions"]["probs"]) for r in results])
        )
    return Predictive.regression(
        np.stack([np.asarray(r["predictions"]["means"]) for r in results]),
        np.stack([np.asarray(r["predictions"]["stds"]) for r in results]),
    )
