"""``trustml acquire``: which samples of an unlabeled HDF5 pool to label next.

Orchestration only: the protocol is planned and its primary method fitted exactly as
``trustml evaluate`` does (member checkpoints under ``OUT/checkpoints``, so a re-run resumes),
the pool is scored in streamed blocks of :data:`POOL_CHUNK` rows (each MPI rank a contiguous
shard of whole blocks; rank 0 gathers the per-sample scores) with :mod:`trustml.acquire`, and
:func:`trustml.acquire.select` picks the budget. Writes ``picks.h5``, ``picks.csv`` and
``picks.html`` atomically (:func:`trustml.utils.rundir.write_files`).

The picks do not depend on the number of ranks: blocks are cut the same way on every rank
count, and the selection seed is a named child of the protocol seed.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from trustml import acquire as acq
from trustml.data.pool import PoolReader
from trustml.distributed import Comm, abort_on_error, block_range, get_comm
from trustml.exceptions import TrustmlInputError
from trustml.protocol import _methods
from trustml.protocol._parallel import PREDICT_BATCH
from trustml.protocol._plan import make_plan
from trustml.protocol._stages import claimed, run_stage
from trustml.protocol.schema import Protocol
from trustml.utils.rundir import check_outdir, write_files
from trustml.utils.seeding import child

__all__ = [
    "ACQUIRE_STRATEGIES",
    "AcquireOutcome",
    "DEFAULT_STRATEGY",
    "POOL_CHUNK",
    "WHOLE_POOL_BYTES",
    "run_acquire",
]

log = logging.getLogger("trustml")

#: Pool rows scored at once (rounded down to whole HDF5 chunks of the pool's inputs).
POOL_CHUNK = 4096
#: Testing hook: overrides :data:`POOL_CHUNK` (so that a small pool spans several blocks
#: and MPI ranks); never set it in production.
CHUNK_ENV = "TRUSTML_TEST_POOL_CHUNK"
#: Strategies that need every sample's probabilities at once run only below this size.
WHOLE_POOL_BYTES = 1 << 30
DEFAULT_STRATEGY = {"classification": "bald", "regression": "epistemic_variance"}
COLUMNS = ("index", "score", "prediction", "total_uncertainty", "aleatoric", "epistemic")


#: The task each kind of strategy input scores (``None``: either).
_TASK_OF_INPUT = {"probs": "classification", "gaussian": "regression", "any": None}
ACQUIRE_STRATEGIES = tuple(
    name for name in acq.STRATEGIES.in_order() if acq.STRATEGIES.get(name).input != "scores"
)
"""The strategies of :data:`trustml.acquire.STRATEGIES` that score a model's predictions."""


def _task_of(strategy: str) -> str | None:
    return _TASK_OF_INPUT[acq.STRATEGIES.get(strategy).input]


def _whole_pool(strategy: str) -> bool:
    """Whether ``select`` needs every sample's probabilities at once (no per-chunk score)."""
    spec = acq.STRATEGIES.get(strategy)
    return spec.score is None and spec.input == "probs"


@dataclass
class AcquireOutcome:
    """What :func:`run_acquire` returns (``indices`` and ``scores`` on rank 0 only)."""

    outdir: Path
    strategy: str
    indices: np.ndarray | None
    scores: np.ndarray | None


def check_strategy(strategy: str | None, task: str) -> str:
    """The strategy to use (the task's default for ``None``); one-line error otherwise."""
    if strategy is None:
        return DEFAULT_STRATEGY[task]
    if strategy not in ACQUIRE_STRATEGIES:
        raise TrustmlInputError(
            f"--strategy {strategy!r}: unknown acquisition strategy; valid: "
            + ", ".join(ACQUIRE_STRATEGIES)
        )
    scores = _task_of(strategy)
    if scores is not None and scores != task:
        fitting = [n for n in ACQUIRE_STRATEGIES if _task_of(n) in (None, task)]
        raise TrustmlInputError(
            f"--strategy {strategy!r}: scores {scores} models but the protocol's task is "
            f"{task}; use one of: {', '.join(fitting)}"
        )
    return strategy


def _samples_per_prediction(protocol: Protocol) -> int:
    spec = protocol.primary
    if spec.method == "deep_ensemble":
        return spec.members
    if spec.draws is not None:
        return spec.draws
    return spec.num_samples * spec.chains


def run_acquire(
    protocol: Protocol,
    *,
    pool: str | Path,
    budget: int,
    base_dir: str | Path = ".",
    inputs: str = "/x",
    strategy: str | None = None,
    out: str | Path = "picks",
    force: bool = False,
    progress: bool = False,
    comm: Any = None,
) -> AcquireOutcome:
    """Fit the protocol's primary method, score the pool, write the ``budget`` picks.

    Raises
    ------
    TrustmlInputError
        The protocol, its data, the pool, the budget, the strategy or ``out`` is invalid;
        nothing is written.
    RunFailed
        Training or scoring failed (the message names the stage).
    """
    comm = get_comm(comm)
    torch.use_deterministic_algorithms(True, warn_only=True)
    strategy = check_strategy(strategy, protocol.task)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise TrustmlInputError(f"--budget {budget!r}: expected a whole number >= 1")
    outdir = check_outdir(out, force=force)
    plan = make_plan(protocol, Path(base_dir), comm)
    reader = PoolReader(pool, inputs)
    try:
        if reader.input_shape != tuple(plan.dataset.input_shape):
            raise TrustmlInputError(
                f"{pool}: pool samples {_show(inputs)} have shape {reader.input_shape} but the "
                f"protocol's training data has input shape {tuple(plan.dataset.input_shape)}"
            )
        n = reader.n_samples
        if budget > n:
            raise TrustmlInputError(
                f"--budget {budget}: larger than the pool ({pool} holds {n} samples)"
            )
        if _whole_pool(strategy):
            need = _samples_per_prediction(protocol) * n * plan.n_targets * 8
            if need > WHOLE_POOL_BYTES:
                raise TrustmlInputError(
                    f"--strategy {strategy}: needs every pool sample's probabilities at once "
                    f"({need / 2**30:.1f} GiB > {WHOLE_POOL_BYTES / 2**30:.1f} GiB); use "
                    "--strategy power_bald for large pools"
                )
        with claimed(outdir, force, comm), abort_on_error(comm):
            return _execute(protocol, plan, reader, outdir, comm, strategy, budget, progress)
    finally:
        reader.close()


def _show(key: str) -> str:
    return "'/" + key.lstrip("/") + "'"


def _execute(
    protocol: Protocol,
    plan: Any,
    reader: PoolReader,
    outdir: Path,
    comm: Comm,
    strategy: str,
    budget: int,
    progress: bool,
) -> AcquireOutcome:
    fingerprint = comm.bcast(plan.dataset.fingerprint() if comm.rank == 0 else None)
    primary = protocol.primary
    with run_stage(f"training {primary.name!r}"):
        model = _methods.fit_method(
            protocol, 0, train=plan.dataset.subset(plan.splits["train"]),
            make_model=plan.make_model, device=plan.device, fingerprint=fingerprint, comm=comm,
            checkpoint_dir=outdir / "checkpoints", progress=progress,
        )  # fmt: skip
    with run_stage("scoring the pool"):
        local = _score_shard(
            model, reader, protocol.task, strategy, _methods.predict_options(primary), comm
        )
    parts = comm.gather(local, root=0)
    if comm.rank != 0:
        return AcquireOutcome(outdir, strategy, None, None)
    assert parts is not None
    table = np.concatenate([p["table"] for p in parts], axis=0)  # (N, 5) in pool order
    seed = child(protocol.seed, "acquire")
    with run_stage("selecting the picks"):
        if _whole_pool(strategy):
            probs = np.concatenate([p["probs"] for p in parts], axis=1)
            picks = acq.select(probs, budget, strategy=strategy, seed=seed)
        else:  # rank the streamed per-sample scores as the strategy ranks its own
            then = "random" if strategy == "random" else acq.STRATEGIES.get(strategy).then
            picks = acq.select(table[:, 0], budget, strategy=then, seed=seed)
    picks = np.asarray(picks, dtype=np.int64)
    rows = table[picks]
    attrs = {
        "strategy": strategy,
        "budget": int(budget),
        "pool": str(reader.path),
        "inputs": reader.key,
        "seed": int(protocol.seed),
        "task": protocol.task,
        "method": primary.name,
        "protocol": protocol.name,
    }
    write_files(
        outdir,
        {
            "picks.h5": lambda p: _write_h5(p, picks, rows[:, 0], attrs),
            "picks.csv": lambda p: p.write_text(_csv(picks, rows), encoding="utf-8"),
            "picks.html": lambda p: p.write_text(_html(picks, rows, attrs), encoding="utf-8"),
        },
    )
    return AcquireOutcome(outdir, strategy, picks, rows[:, 0].copy())


def _score_shard(
    model: Any,
    reader: PoolReader,
    task: str,
    strategy: str,
    options: dict[str, Any],
    comm: Comm,
) -> dict[str, np.ndarray]:
    """This rank's contiguous shard of whole blocks: per-sample score, prediction, uncertainty."""
    rows = reader.aligned(int(os.environ.get(CHUNK_ENV, POOL_CHUNK)))
    n_blocks = -(-reader.n_samples // rows)
    mine = block_range(n_blocks, comm.size, comm.rank)
    start = mine.start * rows
    stop = min(mine.stop * rows, reader.n_samples)
    whole_pool = _whole_pool(strategy)
    score = _score_of(strategy, task)
    tables, probs = [], []
    for _, x in reader.blocks(start, stop, rows) if stop > start else ():
        p = model.predict(x, batch_size=PREDICT_BATCH, **options)
        if task == "classification":
            member_probs = np.asarray(p.member_probs, dtype=np.float64)
            tables.append(_classification_rows(member_probs, score))
            if whole_pool:
                probs.append(member_probs)
        else:
            mean = np.asarray(p.member_means, dtype=np.float64)
            var = np.asarray(p.member_stds, dtype=np.float64) ** 2
            tables.append(_regression_rows(mean, var, score))
    out = {"table": np.concatenate(tables) if tables else np.empty((0, 5))}
    if whole_pool:
        out["probs"] = np.concatenate(probs, axis=1) if probs else np.empty((0, 0, 0))
    return out


def _per_sample(a: np.ndarray) -> np.ndarray:
    """One value per sample: spatial axes averaged."""
    return acq.reduce(a, how="mean") if a.ndim > 1 else a


def _score_of(strategy: str, task: str) -> Callable[[Any], np.ndarray]:
    """The per-sample score reported (and ranked): the strategy's own, else the task default's
    (``batchbald`` and ``random`` have none per chunk)."""
    own = acq.STRATEGIES.get(strategy).score
    return own if own is not None else _score_of(DEFAULT_STRATEGY[task], task)


def _classification_rows(probs: np.ndarray, score_fn: Callable[[Any], np.ndarray]) -> np.ndarray:
    total = _per_sample(acq.predictive_entropy(probs))
    aleatoric = _per_sample(acq.expected_entropy(probs))
    epistemic = _per_sample(acq.mutual_information(probs))
    score = _per_sample(score_fn(probs))
    mean = probs.mean(axis=0)  # (N, C, *spatial)
    label = mean.argmax(axis=1).astype(np.float64)
    prediction = label if label.ndim == 1 else label.reshape(len(label), -1)[:, 0]
    return np.stack([score, prediction, total, aleatoric, epistemic], axis=1)


def _regression_rows(
    mean: np.ndarray, var: np.ndarray, score_fn: Callable[[Any], np.ndarray]
) -> np.ndarray:
    score = _per_sample(score_fn((mean, var)))
    first_mean, first_var = mean[:, :, 0], var[:, :, 0]  # (K, N, *spatial)
    aleatoric = _per_sample(first_var.mean(axis=0))
    epistemic = _per_sample(first_mean.var(axis=0))
    prediction = _per_sample(first_mean.mean(axis=0))
    return np.stack([score, prediction, aleatoric + epistemic, aleatoric, epistemic], axis=1)


def _write_h5(path: Path, picks: np.ndarray, scores: np.ndarray, attrs: dict[str, Any]) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("indices", data=picks.astype(np.int64))
        f.create_dataset("scores", data=scores.astype(np.float64))
        for key, value in attrs.items():
            f.attrs[key] = value


def _csv(picks: np.ndarray, rows: np.ndarray) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for i, r in zip(picks.tolist(), rows.tolist(), strict=True):
        w.writerow([i, *(repr(float(v)) for v in r)])
    return buf.getvalue()


def _html(picks: np.ndarray, rows: np.ndarray, attrs: dict[str, Any]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in ("rank", *COLUMNS))
    body = "\n".join(
        f"<tr><td>{k + 1}</td><td>{i}</td>" + "".join(f"<td>{v:.4g}</td>" for v in r) + "</tr>"
        for k, (i, r) in enumerate(zip(picks.tolist(), rows.tolist(), strict=True))
    )
    meta = ", ".join(f"{esc(str(k))}: {esc(str(v))}" for k, v in attrs.items())
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>trustml picks: {esc(str(attrs['protocol']))}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>"
        f"<h1>Samples to label next</h1><p>{meta}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
        "</body></html>\n"
    )
