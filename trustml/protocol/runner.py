"""Run a validated protocol end to end. This module only orchestrates the stages:

1. plan (:mod:`~trustml.protocol._plan`): data, splits and model resolved and checked
   -> :class:`~trustml.protocol._plan.Plan`; an invalid protocol fails here, in seconds,
   and writes nothing;
2. train (:mod:`~trustml.protocol._fit`): fit every uncertainty method, predict
   -> :class:`~trustml.protocol._fit.Trained`;
3. score (:mod:`~trustml.protocol._scoring`, rank 0): calibrate, score, reference predictors,
   shifted test sets -> :class:`~trustml.protocol._scoring.Scored`;
4. attribute (:mod:`~trustml.protocol._attribution`): maps and checks
   -> :class:`~trustml.protocol._attribution.Attributed`; a labeling campaign
   (:mod:`~trustml.protocol._campaign`), when the protocol has ``acquisition``;
5. decide and record (rank 0): acceptance, summary (:mod:`~trustml.protocol._summary`),
   provenance (:mod:`~trustml.protocol._provenance`) -> :class:`~trustml.report.RunResults`,
   written by every rank together.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trustml.distributed import Comm, abort_on_error, get_comm
from trustml.exceptions import RunFailed, RunInterrupted, TrustmlInputError
from trustml.protocol import _campaign, _methods, _provenance, _scoring
from trustml.protocol._attribution import attribute_and_check
from trustml.protocol._fit import fit_and_predict
from trustml.protocol._parallel import write_shared
from trustml.protocol._plan import Plan, dataset_fingerprint, make_plan
from trustml.protocol._search import trial_times
from trustml.protocol._shifts import examples_source, shift_metrics
from trustml.protocol._stages import claimed, left_behind, run_stage
from trustml.protocol._staging import index_cache, prepared_data
from trustml.protocol._summary import summarize
from trustml.protocol.schema import Protocol
from trustml.report import RunResults
from trustml.utils.rundir import check_outdir

__all__ = ["RunOutcome", "run_protocol", "run_stage", "resolve_outdir", "dataset_fingerprint"]

log = logging.getLogger("trustml")


@dataclass
class RunOutcome:
    """What :func:`run_protocol` returns: the results (rank 0) and where they were written."""

    results: RunResults | None
    outdir: Path | None
    verdict: str

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def resolve_outdir(protocol: Protocol, out: str | Path | None) -> Path:
    """``--out`` wins, then ``report.out``, then ``reports/<name>``."""
    if out is not None:
        if not str(out).strip():  # Path("") would be the current directory
            raise TrustmlInputError("--out: an empty path; name the folder to write the report to")
        return Path(out)
    if protocol.report.out:
        return Path(protocol.report.out)
    return Path("reports") / protocol.name


def run_protocol(
    protocol: Protocol,
    protocol_text: str,
    *,
    base_dir: str | Path = ".",
    out: str | Path | None = None,
    write: bool = True,
    progress: bool | None = None,
    command: list[str] | None = None,
    comm: Any = None,
    force: bool = False,
) -> RunOutcome:
    """Run ``protocol`` and (by default) write its report atomically.

    Parameters
    ----------
    protocol : Protocol
        A validated protocol (see :func:`trustml.protocol.load_protocol`).
    protocol_text : str
        The protocol file's text, stored with the results.
    base_dir : path
        Relative HDF5 paths in the protocol resolve against it (the protocol file's folder).
    out : path, optional
        Output folder; see :func:`resolve_outdir`. Finished ensemble members are checkpointed
        under ``OUT/checkpoints/<method label>/``; running the same protocol again resumes
        from them.
    write : bool
        Write the report folder (``False`` returns the results only, and checkpoints nothing).
    progress : bool, optional
        Progress bars; default only on a terminal (and only on rank 0).
    comm : mpi4py communicator or trustml Comm, optional
        Default: ``MPI.COMM_WORLD`` when started by ``mpiexec``/``srun``, else one process.
        Members, predictions and attributions are spread over the ranks; the numbers do not
        depend on the number of ranks. Rank 0 alone holds the results and writes the report.
    force : bool
        Write into an output folder that is neither new, empty nor a trustml run folder
        (only trustml's own files in it are replaced; see :mod:`trustml.utils.rundir`).

    Returns
    -------
    RunOutcome
        ``results`` is ``None`` on ranks other than 0; ``verdict`` is known on every rank.

    Raises
    ------
    TrustmlInputError
        The protocol, its data or the output folder is invalid (nothing is written).
    RunFailed
        The run could not finish; the message names the stage, the cause and what was kept.
    RunInterrupted
        Ctrl-C (or SIGTERM, under the CLI); the message says what was kept.
    """
    comm = get_comm(comm)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _check_threads(comm)
    started, wall_start = time.perf_counter(), time.time()
    outdir = check_outdir(resolve_outdir(protocol, out), force=force) if write else None
    try:
        # Every rank validates alike: an invalid protocol fails on all of them, before any work.
        plan = make_plan(protocol, Path(base_dir), comm, index_cache=index_cache(outdir))
        _campaign.check_campaign(protocol, plan)
        with (
            claimed(outdir, force, comm),
            abort_on_error(comm),
            prepared_data(protocol, plan, outdir, comm, Path(base_dir)) as plan,
        ):
            return _execute(
                protocol, protocol_text, plan, outdir, comm, progress, command,
                Path(base_dir), started,
            )  # fmt: skip
    except RunFailed as exc:
        raise RunFailed(
            exc.stage, exc.cause, left=left_behind(outdir, wall_start)
        ) from exc.__cause__
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; {left_behind(outdir, wall_start)}") from None


def _check_threads(comm: Comm) -> str | None:
    """Warn (rank 0) when the ranks on one node ask for more torch threads than it has cores.

    Oversubscribed ranks spin-wait on each other's cores and run many times slower. Returns
    the warning, or ``None``.
    """
    if comm.size == 1:
        return None
    threads = torch.get_num_threads()
    per_node = max(comm.allgather(comm.local_rank)) + 1
    cores = os.cpu_count() or 1
    if threads * per_node <= cores:
        return None
    message = (
        f"{per_node} ranks on a node of {cores} cores each use {threads} torch threads "
        f"({threads * per_node} threads): set OMP_NUM_THREADS={max(1, cores // per_node)} "
        "so that ranks do not slow each other down (results are identical across rank counts "
        "at equal threads per rank)"
    )
    if comm.rank == 0:
        log.warning(message)
    return message


def _execute(
    protocol: Protocol,
    protocol_text: str,
    plan: Plan,
    outdir: Path | None,
    comm: Comm,
    progress: bool | None,
    command: list[str] | None,
    base_dir: Path,
    started: float,
) -> RunOutcome:
    # The mode is resolved once (``auto`` by size) and recorded, so ``trustml verify`` reuses it.
    fp_plan = plan.dataset.fingerprint_plan(protocol.data.fingerprint) if comm.rank == 0 else None
    fingerprint = comm.bcast(
        plan.dataset.fingerprint(fp_plan["mode"]) if fp_plan is not None else None
    )
    show = bool(progress if progress is not None else sys.stderr.isatty()) and comm.rank == 0
    trained = fit_and_predict(
        protocol, plan, fingerprint=fingerprint, comm=comm,
        checkpoint_dir=outdir / "checkpoints" if outdir is not None else None, progress=show,
    )  # fmt: skip
    timings = dict(trained.timings)

    # Calibration and scoring need every prediction: rank 0 alone from here, but attribution,
    # which is sharded again, needs the classes it explains.
    scored: _scoring.Scored | None = None
    if comm.rank == 0:
        t0 = time.perf_counter()
        with run_stage("scoring"):
            scored = _scoring.score_run(protocol, plan, trained)
        timings["scoring"] = round(time.perf_counter() - t0, 2)
    attributed = None
    if protocol.attribution is not None:
        t0 = time.perf_counter()
        targets = comm.bcast(scored.attribution_targets if scored is not None else None)
        with run_stage("attribution"):
            source, indices, _ = examples_source(
                protocol, plan.dataset, plan.splits["test"], plan.shifts, plan.ladders
            )
            attributed = attribute_and_check(
                protocol, source, indices, trained.models[protocol.primary.name],
                targets, comm=comm, target_names=plan.target_names,
            )  # fmt: skip
        timings["attribution"] = round(time.perf_counter() - t0, 2)
    campaign = None
    if protocol.acquisition is not None:
        t0 = time.perf_counter()
        with run_stage("labeling campaign"):
            campaign = _campaign.run_campaign(
                protocol, plan, fingerprint=fingerprint, comm=comm, progress=show,
                checkpoint_dir=outdir / "checkpoints" if outdir is not None else None,
            )  # fmt: skip
        timings["acquisition"] = round(time.perf_counter() - t0, 2)

    verdict = None
    results = None
    if comm.rank == 0:
        assert scored is not None
        by_label = {label: part["metrics"] for label, part in scored.methods.items()}
        acceptance = _scoring.acceptance(
            protocol.acceptance, by_label, protocol.primary.name,
            shift_metrics(scored.shifts, protocol.primary.name),
        )  # fmt: skip
        verdict = "pass" if all(a["passed"] for a in acceptance) else "fail"
        summary = summarize(
            protocol, plan, trained.models, scored, acceptance=acceptance, verdict=verdict,
            fingerprint=fingerprint, attribution=attributed.summary if attributed else None,
        )  # fmt: skip
        if campaign is not None:
            summary["acquisition"] = campaign.summary
        manifest = _provenance.manifest(
            protocol, protocol_text, fingerprint=fingerprint, device=plan.device,
            command=command, protocol_dir=base_dir, world_size=comm.size, timings=timings,
            wall_time_s=round(time.perf_counter() - started, 2), fingerprint_plan=fp_plan,
        )  # fmt: skip
        if plan.staging is not None:  # data.stage: what was copied, and how long it took
            manifest["staging"] = plan.staging
        search_times = trial_times(trained.models)
        if search_times:  # per-trial wall times (results.json holds none)
            manifest["search_trial_s"] = search_times
        extras = {}
        if outdir is not None:  # the posteriors of Bayesian methods, for ArviZ users
            for label, model in trained.models.items():
                data = _methods.posterior_netcdf(model)
                if data is not None:
                    extras[f"posterior_{label}.nc"] = data
        results = RunResults(
            summary=summary,
            arrays={
                **scored.arrays,
                **(attributed.arrays if attributed else {}),
                **(campaign.arrays if campaign else {}),
            },
            manifest=manifest,
            protocol_text=protocol_text,
            extras=extras,
        )
    if outdir is not None:  # every rank draws part of the report's figures
        with run_stage("writing the report"):
            write_shared(results, outdir, comm=comm)
    verdict = comm.bcast(verdict)
    return RunOutcome(results, outdir, verdict)
