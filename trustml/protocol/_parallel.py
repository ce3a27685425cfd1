"""The stages of a run that are spread over MPI ranks: training, prediction, attribution.

Work is split so that every rank count computes exactly the same numbers: member ``k`` is
trained from child ``k`` of the protocol seed whichever rank trains it, and predictions and
attributions are cut on the batch boundaries a single process uses.

With ``parallel: {data: D}`` the ranks form groups of D (:func:`trustml.distributed.data_groups`):
each group trains a block of the members, every rank of it on 1/D of every minibatch with the
gradients averaged over the group. A given layout (P, D, seed) reproduces its numbers exactly;
another D changes them by float rounding of the averaged gradients only (the global batches
are the same sets of samples).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustml.data import BaseDataset
from trustml.distributed import (
    DEFAULT_ALLREDUCE,
    Comm,
    MemberCheckpoints,
    block_range,
    data_groups,
    free_group,
    greedy_owners,
    shard_batches,
)
from trustml.explain import Attribution, attribute
from trustml.protocol._parallel_spec import check_data_parallel
from trustml.report import RunResults
from trustml.report.html import draw_figures, figure_jobs
from trustml.uq import DataShare, DeepEnsemble, Predictive

__all__ = [
    "check_data_parallel",
    "fit_plain_ensemble",
    "train_ensemble",
    "predict_sharded",
    "attribute_sharded",
    "write_shared",
    "PREDICT_BATCH",
    "ATTRIBUTE_CHUNK",
]

log = logging.getLogger("trustml")

PREDICT_BATCH = 256
ATTRIBUTE_CHUNK = 4
#: Testing hook: the rank named here exits hard right after writing its checkpoints, as a
#: node failure would. Used by the resume tests; never set it in production.
CRASH_ENV = "TRUSTML_TEST_CRASH_AFTER_CHECKPOINT"


def _to_plain(part: Mapping[str, Any], j: int) -> dict[str, Any]:
    """Member ``j`` of a ``_fit_members`` result as tensors and lists (``weights_only`` safe)."""

    def tensor(a: Any) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(np.asarray(a))

    return {
        "member_indices": [int(part["member_indices"][j])],
        "state_dicts": [part["state_dicts"][j]],
        "history": {key: [list(map(float, v[j]))] for key, v in part["history"].items()},
        "target_shift": tensor(part["target_shift"]),
        "target_scale": tensor(part["target_scale"]),
        "n_outputs": int(part["n_outputs"]),
        "validation_indices": tensor(part["validation_indices"]),
        "engine": str(part["engine"]),
    }


def _from_plain(plain: Mapping[str, Any]) -> dict[str, Any]:
    def array(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else t.numpy()

    return {
        **plain,
        "target_shift": array(plain["target_shift"]),
        "target_scale": array(plain["target_scale"]),
        "validation_indices": array(plain["validation_indices"]),
    }


def fit_plain_ensemble(
    make_model: Any,
    train_settings: Any,
    *,
    members: int,
    task: str,
    seed: Any,
    device: Any,
    data: BaseDataset,
    comm: Comm,
    checkpoints: MemberCheckpoints | None,
    progress: bool,
    data_parallel: int = 1,
    order: Any = None,
) -> DeepEnsemble:
    """A ``DeepEnsemble`` of ``members`` networks of ``make_model``, trained with the protocol's
    ``train`` settings (epochs, batch size, lr, weight decay) by :func:`train_ensemble`, in
    groups of ``data_parallel`` ranks (``parallel.data``)."""
    ensemble = DeepEnsemble(make_model, members=members, task=task, seed=seed, device=device)
    t = train_settings
    options = {
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "weight_decay": t.weight_decay,
        "progress": progress,
        "order": order,  # the epoch order (data.loader); None: random
    }
    return train_ensemble(
        ensemble, data, options, comm=comm, checkpoints=checkpoints, data_parallel=data_parallel
    )


def train_ensemble(
    ensemble: DeepEnsemble,
    train: BaseDataset,
    fit_options: Mapping[str, Any],
    *,
    comm: Comm,
    checkpoints: MemberCheckpoints | None,
    data_parallel: int = 1,
    allreduce: str = DEFAULT_ALLREDUCE,
) -> DeepEnsemble:
    """Train this group's block of members (vectorized), checkpoint them, share all of them.

    The ranks form groups of ``data_parallel`` (1: every rank alone, as before); group ``g``
    trains block ``g`` of the members, its ranks on shares of every minibatch with the
    gradients averaged by ``allreduce`` (``"mpi"`` or ``"torch"``, see
    :mod:`trustml.distributed.gradients`). Every rank of a group ends with the same weights;
    the group's first rank checkpoints them and sends them to the others. Members with a
    valid checkpoint are loaded, not retrained.
    """
    check_data_parallel(data_parallel, comm.size)
    n_groups, index, group = data_groups(comm, data_parallel, allreduce=allreduce, share=DataShare)
    lead = group is None or group.rank == 0
    mine = list(block_range(ensemble.members, n_groups, index))
    plain_parts: list[dict[str, Any]] = []
    todo = []
    for k in mine if lead else ():
        stored = checkpoints.load(k) if checkpoints is not None else None
        if stored is None:
            todo.append(k)
        else:
            plain_parts.append(stored)
    if plain_parts:
        resumed = [p["member_indices"][0] for p in plain_parts]
        log.info("rank %d: resumed members %s from checkpoints", comm.rank, resumed)
    if group is not None:  # the group trains what its first rank found no checkpoint of
        todo = group.comm.bcast(todo)
    if todo:
        part = ensemble._fit_members(todo, train, **fit_options, group=group)
        for j, k in enumerate(part["member_indices"]):
            if not lead:
                continue
            plain = _to_plain(part, j)
            if checkpoints is not None:
                checkpoints.save(k, plain)
            plain_parts.append(plain)
        if os.environ.get(CRASH_ENV) == str(comm.rank):
            os._exit(75)
    free_group(group)
    gathered = [p for parts in comm.allgather(plain_parts) for p in parts]
    return ensemble._assemble([_from_plain(p) for p in gathered])


def predict_sharded(
    model: Any, ds: BaseDataset, indices: np.ndarray, *, comm: Comm, **predict_options: Any
) -> Predictive | None:
    """Predict ``indices`` with each rank taking whole batches; rank 0 gets the Predictive.

    ``model`` is any fitted uncertainty wrapper (``DeepEnsemble``, ``BayesianNN``,
    ``MCDropout``) whose predictions do not depend on how the inputs are batched.
    """
    mine = shard_batches(indices, PREDICT_BATCH, comm.size, comm.rank)
    local: dict[str, np.ndarray] | None = None
    if len(mine):
        p = model.predict(ds.subset(mine), batch_size=PREDICT_BATCH, **predict_options)
        if p.task == "regression":
            local = {"means": p.member_means, "stds": p.member_stds}
        else:
            local = {"probs": p.member_probs}
            if getattr(p, "member_logits", None) is not None:
                local["logits"] = p.member_logits
    pieces = comm.gather(local, root=0)
    if comm.rank != 0 or pieces is None:
        return None
    pieces = [q for q in pieces if q is not None]
    cat = {key: np.concatenate([q[key] for q in pieces], axis=1) for key in pieces[0]}
    if "means" in cat:
        return Predictive.regression(cat["means"], cat["stds"])
    return Predictive.classification(cat["probs"], member_logits=cat.get("logits"))


def attribute_sharded(
    ensemble: Any,
    ds: BaseDataset,
    indices: np.ndarray,
    target: int | np.ndarray | None,
    *,
    method: str,
    comm: Comm,
    explainer: Callable[..., Attribution] = attribute,
    **kwargs: Any,
) -> Attribution | None:
    """Attribute the examples ``indices`` in fixed chunks spread over the ranks; each rank
    reads only its own examples. Rank 0 gets the result, in the order of ``indices``.

    ``explainer`` is :func:`trustml.explain.attribute` (the prediction) or
    :func:`trustml.explain.attribute_uncertainty` (with ``quantity=`` in ``kwargs``); the
    result has the explainer's own type, its per-example arrays joined in order."""
    positions = np.arange(len(indices))
    mine = shard_batches(positions, ATTRIBUTE_CHUNK, comm.size, comm.rank)
    local = []
    for start in range(0, len(mine), ATTRIBUTE_CHUNK):
        chunk = mine[start : start + ATTRIBUTE_CHUNK]
        x, _ = ds.read(indices[chunk])
        t = target if target is None or isinstance(target, int) else np.asarray(target)[chunk]
        local.append(explainer(ensemble, x, method=method, target=t, **kwargs))
    pieces = comm.gather(local, root=0)
    if comm.rank != 0 or pieces is None:
        return None
    parts = [a for rank_parts in pieces for a in rank_parts]
    deltas = [a.convergence_delta for a in parts]
    return replace(
        parts[0],
        members=np.concatenate([a.members for a in parts], axis=1),
        outputs=np.concatenate([a.outputs for a in parts], axis=1),
        baseline_outputs=np.concatenate([a.baseline_outputs for a in parts], axis=1),
        convergence_delta=None
        if any(d is None for d in deltas)
        else np.concatenate(deltas, axis=1),
        method=method,
    )


SHARE_BYTES = 256 << 20
"""Arrays larger than this are not sent to other ranks to draw report figures (rank 0 draws)."""


def write_shared(
    results: RunResults | None,
    outdir: str | Path,
    *,
    comm: Comm,
) -> Path | None:
    """Collective :meth:`~trustml.report.RunResults.write`: every rank of ``comm`` draws part of the report.

    Drawing the report's figures is most of the time it takes to write a run's results, and
    in an MPI run the other ranks would only wait for it. Rank 0 sends the results to every
    rank, each draws the figures :func:`~trustml.distributed.greedy_owners` gives it, and rank
    0 writes the directory with all of them. The files equal those of ``results.write``.

    Parameters
    ----------
    results : RunResults or None
        Read on rank 0 only (the other ranks pass ``None``).
    outdir
        As for :meth:`~trustml.report.RunResults.write`.
    comm : trustml.distributed.Comm
        Every rank must call this function.

    Returns
    -------
    Path or None
        The written directory on rank 0; ``None`` elsewhere.
    """
    if comm.size == 1:
        assert results is not None
        return results.write(outdir)
    shared = None
    if comm.rank == 0:
        assert results is not None
        if sum(a.nbytes for a in results.arrays.values()) <= SHARE_BYTES:
            shared = results.canonical()
    shared = comm.bcast(shared)
    drawn: dict[str, Any] = {}
    if shared is not None:
        jobs = figure_jobs(shared)
        # Rank 0 also writes the files and renders the page after the others are done.
        owners = greedy_owners(
            [w for _, w in jobs], comm.size, preload=[1.0] + [0.0] * (comm.size - 1)
        )
        mine = [key for (key, _), r in zip(jobs, owners, strict=True) if r == comm.rank]
        drawn = draw_figures(shared, mine)
    parts = comm.gather(drawn)
    if comm.rank != 0:
        return None
    assert results is not None and parts is not None
    merged = {key: value for part in parts for key, value in part.items()}
    return results.write(outdir, drawn=merged)
