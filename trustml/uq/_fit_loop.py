"""The epoch loop shared by every engine: per-member data order, validation, early stopping."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from trustml.uq._heads import HeadSpec
from trustml.uq._lanes import Lanes
from trustml.uq._source import Source
from trustml.uq._train_settings import TrainSettings
from trustml.uq._vectorized import Engine, GradientSync
from trustml.utils.seeding import child

__all__ = [
    "BatchOrder",
    "DataShare",
    "GradientGroup",
    "RandomOrder",
    "split_validation",
    "train_members",
    "validation_loss",
]

_EVAL_BATCH = 256


def split_validation(
    source: Source, validation: float, patience: int | None, ss: np.random.SeedSequence
) -> tuple[np.ndarray, np.ndarray | None]:
    """Training and validation sample indices (sorted), drawn from the ensemble seed.

    ``validation`` (a fraction in [0, 1)) and ``patience`` are already checked one by one
    (:mod:`trustml.uq._train_settings`); here they meet the data.
    """
    v = float(validation)
    if patience is not None and v == 0.0:
        raise ValueError("patience (early stopping) needs a validation fraction > 0")
    if source.kind == "loader":
        if v > 0:
            raise ValueError(
                "validation needs arrays or a dataset; a DataLoader's batches are used as they come"
            )
        return np.zeros(0, dtype=np.int64), None
    if source.n == 0:
        raise ValueError("Expected at least one training sample, got 0")
    if v == 0.0:
        return np.arange(source.n, dtype=np.int64), None
    n_val = max(1, round(v * source.n))
    if n_val >= source.n:
        raise ValueError(f"validation={v} leaves no training samples out of {source.n}")
    perm = np.random.default_rng(child(ss, "validation")).permutation(source.n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@torch.no_grad()
def validation_loss(
    engine: Engine, head: HeadSpec, source: Source, idx: np.ndarray, device: torch.device
) -> np.ndarray:
    """Mean loss of every member on samples ``idx`` (eval mode), shape ``(K,)``."""
    total = torch.zeros(engine.members, dtype=torch.float64, device=device)
    for start in range(0, len(idx), _EVAL_BATCH):
        part = idx[start : start + _EVAL_BATCH]
        x, y = source.labelled(*source.read(part), device)
        out = engine.forward(x)
        total += head.loss_sums(out, y.unsqueeze(0).expand(engine.members, *y.shape)).double()
    return (total / len(idx)).cpu().numpy()


@dataclass(frozen=True)
class DataShare:
    """Which part of every global minibatch this rank reads: part ``rank`` of ``size``.

    With data parallelism inside a member (``parallel: {data: D}``) the ``D`` ranks of a group
    train the same members; each reads only its share of every global batch and the group
    averages the gradients. ``DataShare()`` (rank 0 of 1) is the whole batch.
    """

    rank: int = 0
    size: int = 1


class BatchOrder(Protocol):
    """How one epoch of stacked lane minibatches is drawn and read.

    ``epoch`` yields ``(x, y)`` with ``x`` of shape ``(L, b, *input_shape)`` (lane ``l`` is
    member ``l``'s minibatch) and ``y`` of shape ``(L, b, ...)``, where ``b`` is this rank's
    share of the global batch. Member k's order comes from ``rngs[k]`` only.
    """

    def epoch(
        self,
        source: Source,
        train_idx: np.ndarray,
        rngs: list[np.random.Generator],
        batch_size: int,
        device: torch.device,
        share: DataShare,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class RandomOrder:
    """Today's order: member k draws a permutation of the training samples each epoch and
    reads its minibatches sample by sample (sorted within a batch: datasets read faster).

    With a :class:`DataShare` of size D, every global batch ``(L, B)`` is cut along the batch
    axis into D nearly equal parts (``np.array_split``) and this rank reads part ``rank``.
    """

    def epoch(
        self,
        source: Source,
        train_idx: np.ndarray,
        rngs: list[np.random.Generator],
        batch_size: int,
        device: torch.device,
        share: DataShare,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if source.kind == "loader":
            if share.size > 1:
                raise ValueError("data parallelism needs arrays or a dataset, not a DataLoader")
            yield from source.loader_batches(len(rngs), device)
            return
        # Member k's order comes from its own generator only; sorted batches read faster.
        orders = train_idx[np.stack([rng.permutation(len(train_idx)) for rng in rngs])]
        for start in range(0, len(train_idx), batch_size):
            batch = np.sort(orders[:, start : start + batch_size], axis=1)
            part = batch
            if share.size > 1:
                part = np.array_split(batch, share.size, axis=1)[share.rank]
            # An empty share (a last batch shorter than the group) reads one sample for the
            # shapes and passes none on.
            x, y = source.gather(part if part.shape[1] else batch[:, :1], device)
            if y is None:
                raise TypeError(f"Expected training targets, got inputs only (from {source.kind})")
            yield (x, y) if part.shape[1] else (x[:, :0], y[:, :0])


class GradientGroup(GradientSync, Protocol):
    """The ranks that train the same members together (data parallelism inside a member).

    ``share`` is this rank's part of every batch; ``sum`` adds a tensor over the group's ranks
    (for the epoch's loss sums and sample counts). The group is also the engine's gradient
    sync (:class:`trustml.uq._vectorized.GradientSync`: ``average`` between the backward pass
    and the optimizer step, ``first_sample`` for dropout masks); :func:`train_members` installs
    it. :class:`trustml.distributed.DataGroup` is one over MPI or ``torch.distributed``.
    """

    share: DataShare

    def sum(self, t: torch.Tensor) -> torch.Tensor: ...


def train_members(
    engine: Engine,
    head: HeadSpec,
    source: Source,
    *,
    data_seeds: list[np.random.SeedSequence],
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    settings: TrainSettings,
    device: torch.device,
    labels: list[int],
    lanes: Lanes | None = None,
    nonfinite: str = "raise",
    order: BatchOrder | None = None,
    group: GradientGroup | None = None,
) -> dict[str, list[list[float]]]:
    """Train the engine's members; return their histories ``{"loss": [...], "val_loss": [...]}``.

    With ``settings.patience``, member k stops after ``patience`` epochs without a lower
    validation loss and ends with its best weights; its history stops there too. Stacked
    engines keep computing stopped members (their weights are restored at the end), so no
    member's numbers depend on when the others stop.

    ``lanes`` gives member k its own learning rate and weight decay (``settings`` then supply
    only the rest). A non-finite training loss raises ``FloatingPointError``; with
    ``nonfinite="stop"`` that member stops instead (its history ends with its last finite
    epoch, its weights are left as they are) and the others train on.

    ``order`` draws and reads each epoch's minibatches (default :class:`RandomOrder`);
    ``group`` makes this rank one of several that train the same members on shares of every
    batch: the loss sums are added over the group, so every rank records the same history,
    and the group averages the gradients of every step (``engine.sync``).
    """
    order = RandomOrder() if order is None else order
    share = DataShare() if group is None else group.share
    engine.sync = group
    k_members = engine.members
    if lanes is None:
        engine.start(settings.lr, settings.weight_decay)
    else:
        engine.start(*lanes)
    rngs = [np.random.default_rng(ss) for ss in data_seeds]
    history: dict[str, list[list[float]]] = {"loss": [[] for _ in range(k_members)]}
    if val_idx is not None:
        history["val_loss"] = [[] for _ in range(k_members)]
    best = np.full(k_members, np.inf)
    waited = np.zeros(k_members, dtype=int)
    stopped = np.zeros(k_members, dtype=bool)
    show = sys.stderr.isatty() if settings.progress is None else bool(settings.progress)
    bar = tqdm(total=settings.epochs, disable=not show, desc="deep ensemble", unit="epoch")
    step = 0
    try:
        for epoch in range(settings.epochs):
            sums = torch.zeros(k_members, dtype=torch.float64, device=device)
            count = 0
            batches = order.epoch(source, train_idx, rngs, settings.batch_size, device, share)
            for x, y in batches:
                sums += engine.train_step(x, y, step).double()  # no sync per step
                step += 1
                count += x.shape[1]
            if group is not None:
                total = group.sum(torch.cat([sums, sums.new_tensor([count])]))
                sums, count = total[:-1], int(total[-1].item())
            loss = (sums / max(count, 1)).cpu().numpy()
            active = np.flatnonzero(~stopped)
            bad = [labels[k] for k in active if not np.isfinite(loss[k])]
            if bad and nonfinite == "stop":
                stopped[[k for k in active if not np.isfinite(loss[k])]] = True
                engine.active = ~stopped
                active = np.flatnonzero(~stopped)
            elif bad:
                raise FloatingPointError(
                    f"the training loss of member(s) {bad} became non-finite in epoch "
                    f"{epoch + 1}; lower the learning rate or check the data"
                )
            for k in active:
                history["loss"][k].append(float(loss[k]))
            if val_idx is not None:
                val = validation_loss(engine, head, source, val_idx, device)
                for k in active:
                    history["val_loss"][k].append(float(val[k]))
                if settings.patience is not None:
                    _early_stopping(engine, val, active, best, waited, stopped, settings.patience)
            if len(active):
                bar.set_postfix(loss=f"{float(np.mean(loss[active])):.4f}")
            bar.update()
            if stopped.all():
                break
    finally:
        bar.close()
    if settings.patience is not None and val_idx is not None:
        engine.restore_best([k for k in range(k_members) if np.isfinite(best[k])])
    return history


def _early_stopping(
    engine: Engine,
    val: np.ndarray,
    active: np.ndarray,
    best: np.ndarray,
    waited: np.ndarray,
    stopped: np.ndarray,
    patience: int,
) -> None:
    improved = [k for k in active if val[k] < best[k]]
    if improved:
        engine.save_best(improved)
        best[improved] = val[improved]
    waited[active] += 1
    waited[improved] = 0
    stopped[active[waited[active] >= patience]] = True
    engine.active = ~stopped
