"""The frame of a run: its output folder claimed for the duration, failures named by stage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from trustml.distributed import Comm
from trustml.exceptions import RunFailed, TrustmlError, TrustmlInputError
from trustml.utils.rundir import RunFolder, checkpoint_files

__all__ = ["claimed", "left_behind", "run_stage"]


@contextlib.contextmanager
def run_stage(name: str) -> Iterator[None]:
    """Turn an unexpected exception inside one stage of a run into :class:`RunFailed`.

    trustml's own errors (invalid input: exit 2) and interrupts pass through unchanged; any
    other exception (a diverging loss, memory running out, a user's factory or model
    raising) becomes one line naming the stage and the cause (exit 3), the original chained
    for ``--debug``.
    """
    try:
        yield
    except (TrustmlError, KeyboardInterrupt):
        raise
    except MemoryError as exc:
        raise RunFailed(
            name, "out of memory (MemoryError); use fewer members, a smaller model or less data"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - reported as one line, chained for --debug
        lines = str(exc).strip().splitlines()
        cause = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise RunFailed(name, cause) from exc


@contextlib.contextmanager
def claimed(outdir: Path | None, force: bool, comm: Comm) -> Iterator[None]:
    """Claim (create, mark, lock) the output folder on rank 0 for the run's duration."""
    if outdir is None:
        yield
        return
    folder, error = None, None
    if comm.rank == 0:
        try:
            folder = RunFolder(outdir, force=force).__enter__()
        except TrustmlInputError as exc:
            error = str(exc)
    error = comm.bcast(error)
    if error is not None:
        raise TrustmlInputError(error)
    try:
        yield
    finally:
        if folder is not None:
            folder.__exit__(None, None, None)


def left_behind(outdir: Path | None, since: float) -> str:
    """What a run that started at ``since`` (``time.time()``) and did not finish left in ``outdir``."""
    if outdir is None:
        return "nothing was written"
    kept = checkpoint_files(outdir, since=since)
    if kept:
        return (
            f"{len(kept)} finished member checkpoint(s) kept in {outdir / 'checkpoints'}: "
            "run the same command again to resume from them"
        )
    if (outdir / "results.json").is_file():
        return f"the earlier results in {outdir} are unchanged"
    return "no report was written"
