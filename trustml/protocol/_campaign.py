"""A simulated labeling campaign (the protocol's ``acquisition`` key): how many labels does
uncertainty-driven acquisition save?

The training split plays the unlabeled pool: its labels are hidden. One *campaign* (a strategy
and a repeat) labels ``initial`` random samples, then for each of ``rounds`` rounds trains the
method on the labeled samples, records the test metric, scores the still unlabeled samples
with the method's member or posterior samples and labels the ``step`` that the strategy picks
(:func:`trustml.acquire.select`); a last model is trained and scored on the final labels.

The comparison is paired: within a repeat every strategy starts from the same initial samples
and trains round ``t``'s model from the same seed, so their curves differ only by what they
picked. Campaigns are independent of each other, so they are spread over the MPI ranks (each
rank fits its campaigns alone), and each finished campaign is checkpointed under
``OUT/checkpoints/acquisition``: a re-run resumes. The numbers depend on the protocol and seed
only, not on the number of ranks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from trustml import acquire as acq
from trustml import metrics as M
from trustml import results_keys as rk
from trustml.distributed import Comm, MemberCheckpoints, SerialComm, run_key
from trustml.exceptions import ProtocolError
from trustml.protocol import _methods
from trustml.protocol._metric_scores import quantities
from trustml.protocol._parallel import PREDICT_BATCH
from trustml.protocol._plan import Plan
from trustml.protocol.acquire import strategy_input
from trustml.protocol.schema import AcquisitionSpec, Protocol
from trustml.utils.seeding import child

__all__ = ["Campaign", "check_campaign", "labels_to_target", "run_campaign", "summarize_curves"]

log = logging.getLogger("trustml")

#: Methods that are not trained in epochs (``acquisition.epochs`` does not apply to them).
_NO_EPOCHS = ("bayes_nuts",)


@dataclass
class Campaign:
    """What :func:`run_campaign` returns on rank 0: the summary entry and the arrays."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray]


def check_campaign(protocol: Protocol, plan: Plan) -> None:
    """Raise the errors a campaign would only hit after training starts (naming the key)."""
    spec = protocol.acquisition
    if spec is None:
        return
    pool = len(plan.splits["train"])
    need = spec.initial + spec.rounds * spec.step
    if need > pool:
        raise ProtocolError(
            f"initial + rounds * step = {spec.initial} + {spec.rounds} * {spec.step} = {need} "
            f"labels, but the training split (the pool) holds {pool} samples; lower them or "
            "give the training split more data",
            key="acquisition",
        )
    method = protocol.methods[protocol.campaign_method]
    if spec.epochs is not None and method.method in _NO_EPOCHS:
        raise ProtocolError(
            f"{method.method} is not trained in epochs (it samples the posterior)",
            key="acquisition.epochs",
        )


def _campaign_protocol(protocol: Protocol) -> Protocol:
    """The protocol with the campaign method's epochs overridden by ``acquisition.epochs``."""
    spec = protocol.acquisition
    assert spec is not None
    if spec.epochs is None:
        return protocol
    i = protocol.campaign_method
    methods = list(protocol.uncertainty)
    train = methods[i].train.model_copy(update={"epochs": spec.epochs})
    methods[i] = methods[i].model_copy(update={"train": train})
    return protocol.model_copy(update={"uncertainty": methods})


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the per-fit log lines (a campaign fits hundreds of models)."""
    previous = log.level
    log.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(previous)


def _one_campaign(
    protocol: Protocol, plan: Plan, strategy: str, repeat: int, show: Any
) -> dict[str, np.ndarray]:
    """One strategy's campaign in one repeat: the metric per round and the labeled samples."""
    spec = protocol.acquisition
    assert spec is not None
    i = protocol.campaign_method
    options = _methods.predict_options(protocol.methods[i])
    metric = M.METRICS.get(spec.metric_name(protocol.task))
    level = 1.0 - protocol.calibration.alpha
    pool = np.asarray(plan.splits["train"])
    test = plan.dataset.subset(plan.splits["test"])
    y_test = plan.dataset.read(plan.splits["test"])[1]
    start = np.random.default_rng(child(protocol.seed, f"acquisition/{repeat}/initial"))
    labeled = start.permutation(len(pool))[: spec.initial].tolist()  # positions in the pool
    curve = []
    for t in range(spec.rounds + 1):
        model = _methods.fit_method(
            protocol, i, train=plan.dataset.subset(pool[np.asarray(labeled)]),
            make_model=plan.make_model, device=plan.device, fingerprint="", comm=SerialComm(),
            checkpoint_dir=None, progress=False,
            seed=child(protocol.seed, f"acquisition/{repeat}/round/{t}"),
        )  # fmt: skip
        pred = model.predict(test, batch_size=PREDICT_BATCH, **options)
        curve.append(float(metric.compute(protocol.task, y_test, **quantities(pred, level))))
        show.update(1)
        if t == spec.rounds:
            break
        rest = np.setdiff1d(np.arange(len(pool)), labeled)  # sorted: picks never depend on order
        scored = model.predict(plan.dataset.subset(pool[rest]), batch_size=PREDICT_BATCH, **options)
        picks = acq.select(
            strategy_input(scored, protocol.task), spec.step, strategy=strategy,
            seed=child(protocol.seed, f"acquisition/{repeat}/round/{t}/{strategy}"),
        )  # fmt: skip
        labeled.extend(rest[np.asarray(picks)].tolist())
    return {
        "curve": np.asarray(curve, dtype=np.float64),
        "picked": pool[np.asarray(labeled)].astype(np.int64),
    }


def _store(protocol: Protocol, fingerprint: str, checkpoint_dir: Path | None) -> Any:
    if checkpoint_dir is None:
        return None
    key = run_key(
        {
            "seed": protocol.seed,
            "data": fingerprint,
            "split": protocol.data.split.model_dump(),
            "task": protocol.task,
            "model": protocol.model.model_dump(),
            "uncertainty": protocol.methods[protocol.campaign_method].model_dump(),
            "acquisition": protocol.acquisition.model_dump() if protocol.acquisition else None,
            "level": protocol.calibration.alpha,
        }
    )
    return MemberCheckpoints(checkpoint_dir / "acquisition", key)


def run_campaign(
    protocol: Protocol,
    plan: Plan,
    *,
    fingerprint: str,
    comm: Comm,
    checkpoint_dir: Path | None = None,
    progress: bool = False,
) -> Campaign | None:
    """Run every (strategy, repeat) campaign, spread over the ranks.

    Returns the :class:`Campaign` on rank 0 and ``None`` on the others.
    """
    spec = protocol.acquisition
    assert spec is not None
    strategies = spec.strategy_names(protocol.task)
    jobs = [(s, r) for r in range(spec.repeats) for s in strategies]
    mine = list(range(comm.rank, len(jobs), comm.size))
    store = _store(protocol, fingerprint, checkpoint_dir)
    run = _campaign_protocol(protocol)
    done: dict[int, dict[str, np.ndarray]] = {}
    with (
        tqdm(
            total=len(mine) * (spec.rounds + 1), disable=not progress, desc="labeling campaign",
            unit="fit",
        ) as bar,
        _quiet(),
    ):  # fmt: skip
        for j in mine:
            state = store.load(j) if store is not None else None
            if state is None:
                strategy, repeat = jobs[j]
                result = _one_campaign(run, plan, strategy, repeat, bar)
                if store is not None:
                    store.save(j, {k: torch.from_numpy(v) for k, v in result.items()})
            else:
                result = {k: np.asarray(v) for k, v in state.items()}
                bar.update(spec.rounds + 1)
            done[j] = result
    parts = comm.gather(done, root=0)
    if comm.rank != 0:
        return None
    assert parts is not None
    results = {j: r for part in parts for j, r in part.items()}
    arrays: dict[str, np.ndarray] = {
        rk.ACQUISITION_N_LABELS: np.asarray(spec.labels, dtype=np.int64)
    }
    for s in strategies:
        rows = [results[jobs.index((s, r))] for r in range(spec.repeats)]
        arrays[rk.acquisition_curve(s)] = np.stack([row["curve"] for row in rows])
        arrays[rk.acquisition_picked(s)] = np.stack([row["picked"] for row in rows])
    summary = summarize_curves(
        spec,
        protocol.task,
        {s: arrays[rk.acquisition_curve(s)] for s in strategies},
        method=protocol.methods[protocol.campaign_method],
        pool_size=len(plan.splits["train"]),
        test_size=len(plan.splits["test"]),
    )
    return Campaign(summary, arrays)


def labels_to_target(
    labels: Any, curve: Any, target: float, *, higher_is_better: bool
) -> float | None:
    """Labels at which ``curve`` first reaches ``target``, interpolated linearly between rounds.

    ``None`` when it never does. ``labels`` and ``curve`` have one entry per round.

    >>> labels_to_target([10, 20, 30], [0.5, 0.7, 0.9], 0.8, higher_is_better=True)
    25.0
    """
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(curve, dtype=np.float64)
    sign = 1.0 if higher_is_better else -1.0
    reached = np.flatnonzero(sign * (y - target) >= 0)
    if reached.size == 0:
        return None
    k = int(reached[0])
    if k == 0:
        return float(x[0])
    frac = (target - y[k - 1]) / (y[k] - y[k - 1])
    return float(x[k - 1] + frac * (x[k] - x[k - 1]))


def summarize_curves(
    spec: AcquisitionSpec,
    task: str,
    curves: dict[str, np.ndarray],
    *,
    method: Any,
    pool_size: int,
    test_size: int,
) -> dict[str, Any]:
    """The ``acquisition`` entry of the run summary, from each strategy's ``(R, T)`` curves.

    The target is ``acquisition.target``, else random's final mean. Labels to target come from
    each strategy's mean curve; the saving is random's labels over the strategy's (a lower
    bound when random never reaches the target: random's labels are then taken as its last).
    """
    metric = M.METRICS.get(spec.metric_name(task))
    higher = bool(metric.higher_is_better)
    labels = spec.labels
    if spec.target is not None:
        target, source = float(spec.target), "protocol"
    else:
        target, source = float(curves["random"].mean(axis=0)[-1]), "random_final"
    reach: dict[str, float | None] = {
        s: labels_to_target(labels, c.mean(axis=0), target, higher_is_better=higher)
        for s, c in curves.items()
    }
    base = reach.get("random")
    out: dict[str, Any] = {}
    for s, c in curves.items():
        mine = reach[s]
        if "random" not in curves or mine is None:
            saving, bound = None, False
        elif base is None:
            saving, bound = labels[-1] / mine, True
        else:
            saving, bound = base / mine, False
        out[s] = {
            "mean": [float(v) for v in c.mean(axis=0)],
            "std": [float(v) for v in (c.std(axis=0, ddof=1) if len(c) > 1 else 0 * c[0])],
            "min": [float(v) for v in c.min(axis=0)],
            "max": [float(v) for v in c.max(axis=0)],
            "labels_to_target": mine,
            "labels_to_target_per_repeat": [
                labels_to_target(labels, row, target, higher_is_better=higher) for row in c
            ],
            "saving_vs_random": None if saving is None else float(saving),
            "saving_is_lower_bound": bound,
        }
    return {
        "method": method.name,
        "metric": metric.name,
        "higher_is_better": higher,
        "target": target,
        "target_source": source,
        "initial": spec.initial,
        "step": spec.step,
        "rounds": spec.rounds,
        "repeats": spec.repeats,
        "epochs": spec.epochs if spec.epochs is not None else _epochs(method),
        "pool_size": int(pool_size),
        "test_size": int(test_size),
        "labels": list(labels),
        "order": list(curves),
        "strategies": out,
    }


def _epochs(method: Any) -> int | None:
    return None if method.method in _NO_EPOCHS else int(method.train.epochs)
