"""Node-local staging (``data.stage``) and the many-file index cached next to the output.

``data.stage: FOLDER`` copies, before training, the HDF5 files each rank will read in training
(the training split's files; with ``parallel: {data: D}`` and block order, only this rank's
share of them) into ``FOLDER/run-<id>-rank<r>/``, trains and predicts from the copies, and
removes them at the end. The staging time and bytes go to the manifest (``staging``), as
MLPerf HPC counts them. ``FOLDER`` must be new, empty or a trustml staging folder
(:func:`trustml.protocol._loader.check_stage`, while planning). Copies read the same bytes and
fingerprint the same (names, not folders, are hashed), so a staged run gives the results of
an unstaged one. Each rank's folder of copies is locked (``flock``) while its run lives; a
later run removes the copies of runs that died.

The index of a many-file dataset (its files, lengths, group ids, and whether its values were
validated) is cached in ``OUT/checkpoints/data_index.json`` (:func:`index_cache`): read while
planning, written only once the output folder is claimed (:func:`prepared_data`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trustml.data import BaseDataset, HDF5Dataset, ShardedHDF5Dataset, share_range, share_schedule
from trustml.distributed import Comm
from trustml.exceptions import ProtocolError
from trustml.protocol._loader import (
    STAGE_KEY,
    STAGE_MARKER,
    check_stage,
    loader_order,
    stage_folder,
)
from trustml.protocol._plan import Plan
from trustml.protocol.schema import Protocol

__all__ = ["index_cache", "prepared_data"]

_LOCK = ".lock"


# -- the index cache ----------------------------------------------------------------------------
def index_cache(outdir: Path | None) -> Path | None:
    """Where a many-file dataset's index is cached for the output folder ``outdir``."""
    return None if outdir is None else outdir / "checkpoints" / "data_index.json"


# -- staging ------------------------------------------------------------------------------------
def _files_to_stage(protocol: Protocol, plan: Plan, rank: int) -> list[int]:
    """Positions (in the sharded dataset's files) of the files this rank reads in training."""
    ds = plan.dataset
    assert isinstance(ds, ShardedHDF5Dataset)
    train = plan.splits["train"]
    d = protocol.parallel.data
    if d == 1 or loader_order(protocol, ds.subset(train)) == "random":
        return ds.file_indices(train).tolist()
    # Block order over D ranks: each reads a fixed part of the sorted training samples, which
    # depends on the batch size (share_schedule); take the union over the ensembles.
    batch_sizes = {m.train.batch_size for m in protocol.methods if m.method == "deep_ensemble"}
    parts = []
    for b in sorted(batch_sizes):
        lo, hi = share_range(share_schedule(len(train), b, d), rank % d)
        parts.append(train[lo:hi])
    files: set[int] = set()
    for part in parts:
        files.update(ds.file_indices(part).tolist())
    return sorted(files)


class _Stage:
    """This rank's folder of copies inside the staging folder, locked while it lives."""

    def __init__(self, folder: Path, run_id: str, rank: int) -> None:
        self.folder = folder
        self.created = self.marked = False
        try:
            folder.mkdir(parents=True)
            self.created = True
        except FileExistsError:
            check_stage(folder)  # anything may have appeared since planning
        except OSError as exc:
            raise ProtocolError(
                f"{folder}: cannot create this folder ({exc.strerror})", key=STAGE_KEY
            ) from None
        if not (folder / STAGE_MARKER).exists():
            tmp = folder / f"{STAGE_MARKER}.tmp-{os.getpid()}"
            tmp.write_text("trustml node-local staging folder\n", encoding="utf-8")
            os.replace(tmp, folder / STAGE_MARKER)
            self.marked = True
        _sweep(folder)
        # Made under a temporary name and locked before it gets its own, so that no sweep
        # by another run ever sees it unlocked.
        self.path = folder / f"run-{run_id}-rank{rank}"
        building = folder / f".building-{run_id}-rank{rank}"
        building.mkdir()
        self._fd = os.open(building / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(building, self.path)

    def remove(self) -> None:
        """Remove this rank's copies (the lock goes with them)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def remove_folder(self) -> None:
        """Leave the staging folder as this run found it, when nothing else is in it now: the
        marker goes if this run wrote it, the folder if this run created it."""
        if not (self.created or self.marked):
            return
        with contextlib.suppress(OSError):
            if os.listdir(self.folder) == [STAGE_MARKER]:
                os.unlink(self.folder / STAGE_MARKER)
                if self.created:
                    self.folder.rmdir()


def _sweep(folder: Path) -> None:
    """Remove the copies of runs that died (their lock is free); live runs keep theirs."""
    for entry in sorted(folder.glob("run-*")):
        lock = entry / _LOCK
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held: a live run
            continue
        shutil.rmtree(entry, ignore_errors=True)
        os.close(fd)


def _copy(sources: list[Path], into: Path, keep_names: bool) -> tuple[list[Path], int]:
    copies, total = [], 0
    for j, src in enumerate(sources):
        dst = into / (src.name if keep_names else f"{j:06d}-{src.name}")
        try:
            shutil.copyfile(src, dst)
        except OSError as exc:
            raise ProtocolError(
                f"{dst}: cannot copy {src} here ({exc.strerror or exc})", key=STAGE_KEY
            ) from None
        copies.append(dst)
        total += dst.stat().st_size
    return copies, total


def _stage(plan: Plan, protocol: Protocol, stage: _Stage, rank: int) -> tuple[BaseDataset, dict]:
    ds = plan.dataset
    t0 = time.perf_counter()
    relocated: BaseDataset
    if isinstance(ds, ShardedHDF5Dataset):
        which = _files_to_stage(protocol, plan, rank)
        copies, nbytes = _copy([ds.files[k] for k in which], stage.path, keep_names=False)
        relocated = ds.relocated(dict(zip(which, copies, strict=True)))
    elif isinstance(ds, HDF5Dataset):
        copies, nbytes = _copy([ds.path], stage.path, keep_names=True)
        relocated = ds.relocated(copies[0])
    else:  # the schema allows data.stage with an hdf5 source only
        raise ProtocolError("stages HDF5 files only", key=STAGE_KEY)
    seconds = time.perf_counter() - t0
    return relocated, {"files": len(copies), "bytes": nbytes, "seconds": seconds}


@contextlib.contextmanager
def prepared_data(
    protocol: Protocol, plan: Plan, outdir: Path | None, comm: Comm, base_dir: Path
) -> Iterator[Plan]:
    """The plan with its data ready to train on, inside a claimed output folder.

    Rank 0 writes the many-file index to :func:`index_cache` when it was built anew. With
    ``data.stage``, every rank copies its training files and the plan's dataset reads them
    (``plan.staging`` holds ``{"folder", "ranks", "files", "bytes", "seconds"}``: files and
    bytes over all ranks, the slowest rank's seconds); the copies are removed on the way out,
    whatever happens.
    """
    ds = plan.dataset
    cache = index_cache(outdir)
    if comm.rank == 0 and cache is not None and isinstance(ds, ShardedHDF5Dataset):
        if not ds.index_cached:
            ds.save_index(cache)
    folder = stage_folder(protocol, base_dir)
    if folder is None:
        yield plan
        return
    run_id = comm.bcast(secrets.token_hex(4) if comm.rank == 0 else None)
    stage = _Stage(folder, run_id, comm.rank)
    staged: BaseDataset | None = None
    try:
        staged, mine = _stage(plan, protocol, stage, comm.rank)
        every = comm.gather(mine, root=0)
        info: dict[str, Any] | None = None
        if comm.rank == 0 and every is not None:
            info = {
                "folder": str(folder),
                "ranks": comm.size,
                "files": sum(e["files"] for e in every),
                "bytes": sum(e["bytes"] for e in every),
                "seconds": round(max(e["seconds"] for e in every), 3),
            }
        yield dataclasses.replace(plan, dataset=staged, staging=info)
    except BaseException:
        _close(staged)
        stage.remove()
        raise
    _close(staged)
    stage.remove()
    comm.barrier()  # every rank is done with its copies
    stage.remove_folder()


def _close(ds: BaseDataset | None) -> None:
    close = getattr(ds, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
