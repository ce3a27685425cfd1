"""Training trials: lane groups, their split over MPI ranks, and each trial's validation output.

Trials of one generation that share the model options, the batch size and the number of
epochs form a lane group: they train together as lanes of ``DeepEnsemble``'s vectorized
engine, each with its own learning rate and weight decay (``_fit_members`` with per-member
``lr`` and ``weight_decay``). Groups are cut into units of at most :data:`LANES` trials (the
engine's block of lanes), and units are spread over the ranks by
:func:`trustml.distributed.greedy_owners`.

Trial ``i`` is member ``i`` of an ensemble seeded from ``child(seed, "search/trials")``: it is
initialised, shuffles its data and draws its dropout masks from that seed and ``i`` only,
and the engine's fixed lane block keeps its arithmetic independent of the trials beside it,
so neither the grouping nor the rank changes a number.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.search.space import TRAINING_KEYS
from trustml.uq import DeepEnsemble, Predictive

__all__ = ["LANES", "TrainContext", "TrialPlan", "lane_units", "train_unit", "unit_weight"]

#: Trials per unit of work: the vectorized engine's block of lanes (``LANE_BLOCK``). More
#: lanes than this run as several blocks anyway, so a larger unit would only unbalance ranks.
LANES = 8


@dataclass(frozen=True)
class TrialPlan:
    """One trial's settings.

    Attributes
    ----------
    index : int
        The trial's number (0, 1, ...), which alone (with the seed) seeds its training.
    params : dict
        The proposed values of every key of the space.
    model_options : dict
        The model keys among them.
    lr, weight_decay : float
    batch_size, epochs : int
    """

    index: int
    params: dict[str, Any]
    model_options: dict[str, Any]
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int

    @classmethod
    def from_params(
        cls, index: int, params: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> TrialPlan:
        """Training settings from ``params``, else ``defaults`` (``lr``, ``epochs``, ...)."""
        train = {**defaults, **{k: v for k, v in params.items() if k in TRAINING_KEYS}}
        return cls(
            index=int(index),
            params=dict(params),
            model_options={k: v for k, v in params.items() if k not in TRAINING_KEYS},
            lr=float(train["lr"]),
            weight_decay=float(train["weight_decay"]),
            batch_size=int(train["batch_size"]),
            epochs=int(train["epochs"]),
        )

    @property
    def group_key(self) -> str:
        """What trials training as lanes of one engine must share."""
        shared = {"model": self.model_options, "batch_size": self.batch_size, "epochs": self.epochs}
        return json.dumps(shared, sort_keys=True)


def lane_units(plans: Sequence[TrialPlan], lanes: int = LANES) -> list[list[TrialPlan]]:
    """Lane groups (by :attr:`TrialPlan.group_key`, in order of their first trial), each cut
    into units of at most ``lanes`` trials in index order."""
    groups: dict[str, list[TrialPlan]] = {}
    for plan in sorted(plans, key=lambda p: p.index):
        groups.setdefault(plan.group_key, []).append(plan)
    return [g[s : s + lanes] for g in groups.values() for s in range(0, len(g), lanes)]


def unit_weight(unit: Sequence[TrialPlan], n_train: int) -> float:
    """Rough cost of a unit, to balance ranks: its epochs times its samples and steps."""
    p = unit[0]
    return float(p.epochs * (n_train + 32 * math.ceil(n_train / p.batch_size)))


@dataclass(frozen=True)
class TrainContext:
    """What every trial shares: the model builder, the data, the task and the seed.

    Attributes
    ----------
    build : callable
        ``build(**model_options) -> nn.Module``.
    train, validation : dataset
        ``trustml.data`` datasets (anything ``DeepEnsemble.fit`` and ``predict`` take).
    task : str
    seed : SeedSequence
        Seeds the trials' ensemble (trial ``i`` is its member ``i``).
    n_trials : int
    device : str
    heteroscedastic, standardize_targets : bool
    """

    build: Callable[..., nn.Module]
    train: Any
    validation: Any
    task: str
    seed: Any
    n_trials: int
    device: str = "cpu"
    heteroscedastic: bool = True
    standardize_targets: bool = True

    def ensemble(self, model_options: Mapping[str, Any], members: int) -> DeepEnsemble:
        """A ``DeepEnsemble`` of ``members`` networks with ``model_options``."""
        return DeepEnsemble(
            functools.partial(self.build, **model_options),
            members=members,
            task=self.task,
            seed=self.seed,
            heteroscedastic=self.heteroscedastic,
            standardize_targets=self.standardize_targets,
            device=self.device,
        )


def _tensor(a: Any) -> torch.Tensor | None:
    return None if a is None else torch.as_tensor(np.asarray(a))


def _finite(state: Mapping[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def _predictions(pred: Predictive, j: int) -> dict[str, torch.Tensor]:
    if pred.task == "classification":
        return {"probs": torch.as_tensor(np.array(pred.members[j]))}
    return {
        "means": torch.as_tensor(np.array(pred.members[j])),
        "stds": torch.as_tensor(np.array(np.asarray(pred.member_stds)[j])),
    }


def train_unit(unit: Sequence[TrialPlan], ctx: TrainContext) -> list[dict[str, Any]]:
    """Train the trials of ``unit`` as lanes and predict the validation split with each.

    Returns
    -------
    list of dict
        One per trial, in the unit's order, plain data (tensors, numbers, lists, strings;
        ``torch.load(weights_only=True)`` reads it): ``index``, ``state_dict``, ``history``
        (``{"loss": [per epoch]}``), ``predictions`` (``means`` and ``stds`` ``(N, D)``, or
        ``probs`` ``(N, C)``; empty when diverged), ``diverged``, ``time_s`` (the unit's time
        shared equally), ``n_outputs``, ``target_shift``, ``target_scale``, ``engine``.
    """
    start = time.perf_counter()
    first = unit[0]
    ens = ctx.ensemble(first.model_options, ctx.n_trials)
    part = ens._fit_members(
        [p.index for p in unit],
        ctx.train,
        epochs=first.epochs,
        batch_size=first.batch_size,
        lr=[p.lr for p in unit],
        weight_decay=[p.weight_decay for p in unit],
        progress=False,
        nonfinite="stop",
    )
    ok = [j for j, state in enumerate(part["state_dicts"]) if _finite(state)]
    pred = None
    if ok:
        fitted = ctx.ensemble(first.model_options, len(ok))
        fitted._assemble(
            [
                {
                    **part,
                    "member_indices": list(range(len(ok))),
                    "state_dicts": [part["state_dicts"][j] for j in ok],
                    "history": {k: [v[j] for j in ok] for k, v in part["history"].items()},
                }
            ]
        )
        pred = fitted.predict(ctx.validation)
    share = (time.perf_counter() - start) / len(unit)
    out = []
    for j, plan in enumerate(unit):
        diverged = j not in ok
        out.append(
            {
                "index": plan.index,
                "state_dict": part["state_dicts"][j],
                "history": {k: [float(x) for x in v[j]] for k, v in part["history"].items()},
                "predictions": {} if diverged or pred is None else _predictions(pred, ok.index(j)),
                "diverged": diverged,
                "time_s": float(share),
                "n_outputs": int(part["n_outputs"]),
                "target_shift": _tensor(part["target_shift"]),
                "target_scale": _tensor(part["target_scale"]),
                "engine": str(part["engine"]),
            }
        )
    return out
