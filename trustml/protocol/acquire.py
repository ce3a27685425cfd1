"""``trustml acquire``: which samples of an unlabeled HDF5 pool to label next.

Orchestration only: the protocol is planned and its primary method fitted exactly as
``trustml evaluate`` does (member checkpoints under ``OUT/checkpoints``, so a re-run resumes),
the pool is scored in streamed blocks of :data:`POOL_CHUNK` rows (each MPI rank a contiguous
shard of whole blocks; rank 0 gathers the per-sample scores) with :mod:`trustml.acquire`, and
:func:`trustml.acquire.select` picks the budget. Rank 0 then re-reads the picks shown on the
page (at most :data:`~trustml.protocol._picks_page.PAGE_PICKS`) and, when the model predicts
per pixel or voxel, predicts them again for their uncertainty maps. Written atomically
(:func:`trustml.utils.rundir.write_files`; ``picks.h5``, moved in last, marks them complete):
``picks.h5`` (indices, scores), ``picks.csv`` (for a labeling tool), ``picks.html``
(:mod:`~trustml.protocol._picks_page`) and ``picks.manifest.json`` (versions, the protocol's
hash, the pool's fingerprint, strategy, budget, seed, ranks, timings).

The picks do not depend on the number of ranks: blocks are cut the same way on every rank
count, and the selection seed is a named child of the protocol seed. The same run twice writes
the same ``picks.h5``, ``picks.csv`` and ``picks.html``.

Memory: a rank holds one block's predictions at a time, but rank 0 gathers the whole pool's
``(N, 5)`` float64 table: 40 bytes per sample, 4 GB at 10^8 samples (about twice that while
the ranks' parts are gathered and joined). Whole-pool strategies (``batchbald``) are bounded
by :data:`WHOLE_POOL_BYTES`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustml import acquire as acq
from trustml.data.pool import PoolReader
from trustml.distributed import Comm, abort_on_error, block_range, get_comm
from trustml.exceptions import TrustmlInputError
from trustml.metrics import TASKS
from trustml.protocol import _methods, _picks_page, _provenance
from trustml.protocol._names import ACQUISITION_STRATEGIES, acquisition_strategies
from trustml.protocol._parallel import PREDICT_BATCH
from trustml.protocol._plan import make_plan
from trustml.protocol._stages import claimed, run_stage
from trustml.protocol.schema import Protocol
from trustml.report import json_bytes
from trustml.utils.rundir import check_outdir, write_files
from trustml.utils.seeding import child

__all__ = [
    "ACQUIRE_STRATEGIES",
    "AcquireOutcome",
    "DEFAULT_STRATEGY",
    "POOL_CHUNK",
    "WHOLE_POOL_BYTES",
    "run_acquire",
    "strategy_input",
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
COLUMNS = _picks_page.COLUMNS


ACQUIRE_STRATEGIES = ACQUISITION_STRATEGIES
"""The strategies of :data:`trustml.acquire.STRATEGIES` that score a model's predictions."""


def strategy_input(pred: Any, task: str) -> Any:
    """What the strategies score from a predictive: member probabilities ``(K, N, C, ...)``,
    or member means and variances ``((K, N, D, ...), (K, N, D, ...))``, in float64."""
    if task == "classification":
        return np.asarray(pred.member_probs, dtype=np.float64)
    return (
        np.asarray(pred.member_means, dtype=np.float64),
        np.asarray(pred.member_stds, dtype=np.float64) ** 2,
    )


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


@dataclass(frozen=True)
class _Request:
    """What ``trustml acquire`` was asked for, beyond the protocol."""

    strategy: str
    budget: int
    progress: bool
    protocol_text: str | None
    command: list[str] | None
    base_dir: Path
    started: float


def check_strategy(strategy: str | None, task: str) -> str:
    """The strategy to use (the task's default for ``None``); one-line error otherwise."""
    if strategy is None:
        return DEFAULT_STRATEGY[task]
    if strategy not in ACQUIRE_STRATEGIES:
        raise TrustmlInputError(
            f"--strategy {strategy!r}: unknown acquisition strategy; valid: "
            + ", ".join(ACQUIRE_STRATEGIES)
        )
    fitting = acquisition_strategies(task)
    if strategy not in fitting:
        scores = next(t for t in TASKS if strategy in acquisition_strategies(t))
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
    protocol_text: str | None = None,
    command: list[str] | None = None,
) -> AcquireOutcome:
    """Fit the protocol's primary method, score the pool, write the ``budget`` picks.

    ``protocol_text`` (the protocol file's text, as :func:`~trustml.protocol.load_protocol`
    returns it) is hashed into ``picks.manifest.json`` as ``trustml evaluate`` hashes it;
    without it the validated protocol's canonical JSON is hashed (and the manifest says so).
    ``command`` defaults to ``sys.argv``.

    Raises
    ------
    TrustmlInputError
        The protocol, its data, the pool, the budget, the strategy or ``out`` is invalid;
        nothing is written.
    RunFailed
        Training or scoring failed (the message names the stage).
    """
    comm = get_comm(comm)
    started = time.perf_counter()
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
        request = _Request(
            strategy, int(budget), progress, protocol_text, command, Path(base_dir), started
        )
        with claimed(outdir, force, comm), abort_on_error(comm):
            return _execute(protocol, plan, reader, outdir, comm, request)
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
    req: _Request,
) -> AcquireOutcome:
    timings: dict[str, float] = {}
    # As ``trustml evaluate``: data.fingerprint (auto: sampled above 10 GB), recorded.
    fp_plan = plan.dataset.fingerprint_plan(protocol.data.fingerprint) if comm.rank == 0 else None
    fingerprint = comm.bcast(
        plan.dataset.fingerprint(fp_plan["mode"]) if fp_plan is not None else None
    )
    primary = protocol.primary
    t0 = time.perf_counter()
    with run_stage(f"training {primary.name!r}"):
        model = _methods.fit_method(
            protocol, 0, train=plan.dataset.subset(plan.splits["train"]),
            make_model=plan.make_model, device=plan.device, fingerprint=fingerprint, comm=comm,
            checkpoint_dir=outdir / "checkpoints", progress=req.progress,
        )  # fmt: skip
    timings["fit"] = _since(t0)
    t0 = time.perf_counter()
    options = _methods.predict_options(primary)
    with run_stage("scoring the pool"):
        local = _score_shard(model, reader, protocol.task, req.strategy, options, comm)
    parts = comm.gather(local, root=0)
    timings["scoring"] = _since(t0)
    if comm.rank != 0:
        return AcquireOutcome(outdir, req.strategy, None, None)
    assert parts is not None
    table = np.concatenate([p["table"] for p in parts], axis=0)  # (N, 5) in pool order
    t0 = time.perf_counter()
    with run_stage("selecting the picks"):
        seed = child(protocol.seed, "acquire")
        if _whole_pool(req.strategy):
            probs = np.concatenate([p["probs"] for p in parts], axis=1)
            picks = acq.select(probs, req.budget, strategy=req.strategy, seed=seed)
        else:  # rank the streamed per-sample scores as the strategy ranks its own
            spec = acq.STRATEGIES.get(req.strategy)
            then = "random" if req.strategy == "random" else spec.then
            picks = acq.select(table[:, 0], req.budget, strategy=then, seed=seed)
    timings["selection"] = _since(t0)
    picks = np.asarray(picks, dtype=np.int64)
    rows = table[picks]
    attrs = {
        "strategy": req.strategy,
        "budget": req.budget,
        "pool": str(reader.path),
        "inputs": reader.key,
        "seed": int(protocol.seed),
        "task": protocol.task,
        "method": primary.name,
        "protocol": protocol.name,
    }
    t0 = time.perf_counter()
    with run_stage("drawing the picks page"):
        samples = reader.take(picks[: _picks_page.PAGE_PICKS])
        dense = any(bool(p["dense"]) for p in parts)
        maps = _maps(model, samples, protocol.task, options) if dense else None
        page = _picks_page.picks_page(
            picks, rows, attrs, samples=samples, layout=plan.dataset.layout, maps=maps
        )
    timings["page"] = _since(t0)
    text = req.protocol_text
    provenance = _provenance.manifest(
        protocol, text if text is not None else _picks_page.canonical_text(protocol),
        fingerprint=fingerprint, device=plan.device, command=req.command,
        protocol_dir=req.base_dir, world_size=comm.size, timings=timings,
        wall_time_s=round(time.perf_counter() - req.started, 2), fingerprint_plan=fp_plan,
    )  # fmt: skip
    manifest = _picks_page.picks_manifest(
        provenance, protocol, pool=reader.fingerprint(), strategy=req.strategy,
        budget=req.budget, text_given=text is not None,
    )  # fmt: skip
    write_files(
        outdir,
        {
            "picks.csv": lambda p: p.write_text(_picks_page.picks_csv(picks, rows), "utf-8"),
            "picks.html": lambda p: p.write_text(page, encoding="utf-8"),
            "picks.manifest.json": lambda p: p.write_bytes(json_bytes(manifest, name="manifest")),
            "picks.h5": lambda p: _picks_page.write_picks_h5(p, picks, rows[:, 0], attrs),
        },  # picks.h5 is moved in last: its presence marks the picks complete
    )
    return AcquireOutcome(outdir, req.strategy, picks, rows[:, 0].copy())


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _maps(model: Any, x: np.ndarray, task: str, options: dict[str, Any]) -> np.ndarray | None:
    """Per-pixel epistemic uncertainty of ``x``, ``(n, *spatial)``, whose spatial mean is the
    ``epistemic`` column (``None`` when the model predicts one value per sample)."""
    p = model.predict(x, batch_size=PREDICT_BATCH, **options)
    if task == "classification":
        probs = np.asarray(p.member_probs, dtype=np.float64)  # (K, n, C, *spatial)
        return acq.mutual_information(probs) if probs.ndim > 3 else None
    mean = np.asarray(p.member_means, dtype=np.float64)  # (K, n, D, *spatial)
    return mean[:, :, 0].var(axis=0) if mean.ndim > 3 else None


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
    tables, probs, dense = [], [], False
    for _, x in reader.blocks(start, stop, rows) if stop > start else ():
        data = strategy_input(model.predict(x, batch_size=PREDICT_BATCH, **options), task)
        if task == "classification":
            dense = data.ndim > 3  # (K, N, C, *spatial)
            tables.append(_classification_rows(data, score))
            if whole_pool:
                probs.append(data)
        else:
            mean, var = data
            dense = mean.ndim > 3  # (K, N, D, *spatial)
            tables.append(_regression_rows(mean, var, score))
    out = {
        "table": np.concatenate(tables) if tables else np.empty((0, 5)),
        "dense": np.asarray(dense),
    }
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
    """Per sample: score, the first output's predicted value, and the uncertainty split
    (law of total variance) averaged over the ``D`` outputs, as the variance scores average
    them; ``mean`` and ``var`` are ``(K, N, D, *spatial)``."""
    score = _per_sample(score_fn((mean, var)))
    aleatoric = _per_sample(acq.aleatoric_variance(mean, var))
    epistemic = _per_sample(acq.epistemic_variance(mean, var))
    prediction = _per_sample(mean[:, :, 0].mean(axis=0))
    return np.stack([score, prediction, aleatoric + epistemic, aleatoric, epistemic], axis=1)
