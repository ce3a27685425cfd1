"""The output folder of a run: which folders trustml may write into, and how it writes them.

A scientist's ``--out`` may name anything: a new folder, last week's run, their thesis folder,
the current directory, a file. trustml writes only into a folder that

- does not exist yet (it creates it),
- is empty,
- or is a run folder it recognises: one holding its marker file (:data:`MARKER`, written
  when a run claims the folder) or, for runs written before the marker existed, a
  ``manifest.json`` whose ``versions`` name trustml.

Anything else is refused (:class:`~trustml.exceptions.TrustmlInputError`, exit status 2)
unless the user passes ``force``. Even then trustml replaces only the files it writes itself
(:data:`OWNED`, :data:`PICKS`, ``posterior_*.nc``, ``checkpoints/``): a user's other files are never
touched, and the folder itself (its permissions, ACLs, its being the current directory) is
never replaced.

Writes are staged: every file of a run is first written into a hidden staging folder inside
the output folder, then moved into place one by one with ``os.replace`` (atomic per file, on
the same file system). ``results.json`` is removed first and moved in last, so a folder whose
write was interrupted never looks complete (:meth:`trustml.report.RunResults.load` refuses
it); ``picks.h5`` marks the picks of ``trustml acquire`` complete the same way. The next run
removes the staging folders left behind by a killed process.

One run at a time: :class:`RunFolder` holds an exclusive ``flock`` on :data:`LOCK` for the
whole run, and a second run on the same folder is refused while the first is alive (the
kernel drops the lock when a process dies, so a crash never leaves a stale lock).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from trustml.exceptions import TrustmlInputError

__all__ = [
    "CHECKPOINTS",
    "LOCK",
    "MARKER",
    "OWNED",
    "PICKS",
    "RunFolder",
    "check_outdir",
    "checkpoint_files",
    "is_run_folder",
    "write_files",
]

MARKER = ".trustml-run"
LOCK = ".trustml.lock"
CHECKPOINTS = "checkpoints"
STAGING_PREFIX = ".trustml-staging-"
#: The files of a finished run; ``results.json`` is the one whose presence marks it complete.
OWNED = ("results.json", "manifest.json", "arrays.h5", "protocol.yaml", "report.html")
#: The files ``trustml acquire`` writes (a folder may hold them next to a run's files);
#: ``picks.h5`` is the one whose presence marks them complete.
PICKS = ("picks.h5", "picks.csv", "picks.html", "picks.manifest.json")
_COMPLETE = "results.json"
#: Per family of files, the one removed first and moved in last (see :func:`write_files`).
_COMPLETION_MARKS = (_COMPLETE, "picks.h5")


def _owned_name(name: str) -> bool:
    return (
        name in OWNED
        or name in PICKS
        or name in (MARKER, LOCK, CHECKPOINTS)
        or name.startswith(STAGING_PREFIX)
        or (name.startswith("posterior_") and name.endswith(".nc"))
    )


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder that a trustml run wrote (its marker or its manifest)."""
    path = Path(path)
    if (path / MARKER).is_file():
        return True
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "trustml" in (manifest.get("versions") or {})


def check_outdir(out: str | Path, *, force: bool = False, option: str = "--out") -> Path:
    """Validate an output folder before anything is computed; return it as a ``Path``.

    Raises
    ------
    TrustmlInputError
        One line naming the path: empty, a file, not a folder trustml may write into (without
        ``force``), or inside a folder that cannot be written.
    """
    text = os.fspath(out)
    if not text.strip():
        raise TrustmlInputError(f"{option}: an empty path; name the folder to write the report to")
    if "\x00" in text:
        raise TrustmlInputError(f"{option} {text!r}: a path cannot contain a NUL character")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise TrustmlInputError(
            f"{path}: exists and is not a folder; choose another {option} (trustml writes a "
            "folder of results there)"
        )
    if path.is_dir():
        try:
            entries = sorted(os.listdir(path))
        except OSError as exc:
            raise TrustmlInputError(f"{path}: cannot read this folder ({exc.strerror})") from None
        foreign = [e for e in entries if not _owned_name(e)]
        bookkeeping = all(e in (LOCK, CHECKPOINTS) or e.startswith(STAGING_PREFIX) for e in entries)
        if entries and not force and not bookkeeping and not is_run_folder(path):
            shown = ", ".join(foreign[:3] or entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise TrustmlInputError(
                f"{path}: exists and is not a trustml run folder (it holds {shown}); "
                f"choose a new or empty {option}, or pass --force to write trustml's files "
                "into it (other files are left alone)"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise TrustmlInputError(f"{path}: this folder is not writable")
    else:
        parent = _existing_parent(path)
        if not parent.is_dir():
            raise TrustmlInputError(f"{path}: cannot create this folder ({parent} is not a folder)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise TrustmlInputError(f"{path}: cannot create this folder ({parent} is not writable)")
    return path


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def checkpoint_files(outdir: str | Path, *, since: float | None = None) -> list[Path]:
    """The member checkpoints under ``outdir/checkpoints`` (sorted).

    ``since`` (a ``time.time()``) keeps only those written since then, i.e. by this run.
    """
    root = Path(outdir) / CHECKPOINTS
    files = sorted(root.rglob("*.pt")) if root.is_dir() else []
    if since is not None:
        files = [f for f in files if f.stat().st_mtime >= since]
    return files


class RunFolder:
    """A claimed output folder: created if new, marked, locked for the run's duration.

    Use as a context manager around a run. On leaving, the lock is released; a folder this
    run created is removed again when the run left nothing in it (an invalid input found
    after claiming, say), so "nothing written" stays true.

    Parameters
    ----------
    out : path
        The output folder, already checked by :func:`check_outdir`.
    force : bool
        Write into a folder that is neither empty nor a trustml run folder.
    """

    def __init__(self, out: str | Path, *, force: bool = False) -> None:
        self.path = check_outdir(out, force=force)
        self.created = self.was_empty = False
        self._lock_fd: int | None = None

    def __enter__(self) -> RunFolder:
        path = self.path
        try:
            if not path.exists():
                path.mkdir(parents=True)
                self.created = True
            else:
                self.was_empty = not os.listdir(path)
            self._lock()
            remove_staging(path)
            if not (path / MARKER).exists():
                _write_marker(path, [])
        except OSError as exc:
            self.__exit__()
            raise TrustmlInputError(
                f"{path}: cannot write into this folder ({exc.strerror or exc})"
            ) from None
        except BaseException:  # Ctrl-C or SIGTERM while claiming: leave nothing behind
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if (self.created or self.was_empty) and self._only_bookkeeping():
                if self.created:
                    shutil.rmtree(self.path, ignore_errors=True)
                else:
                    for name in (MARKER, LOCK):
                        with contextlib.suppress(OSError):
                            os.unlink(self.path / name)
                    shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)
        finally:
            self._unlock()

    def _only_bookkeeping(self) -> bool:
        with contextlib.suppress(OSError):
            names = {n for n in os.listdir(self.path) if not n.startswith(f"{MARKER}.tmp-")}
            if names <= {MARKER, LOCK, CHECKPOINTS}:
                return not checkpoint_files(self.path)
        return False

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TrustmlInputError(
                    f"{self.path}: another trustml run ({holder}) is writing this folder; "
                    "wait for it to finish or choose another --out"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None


def remove_staging(outdir: Path) -> None:
    """Remove staging folders that a killed run left in ``outdir``."""
    with contextlib.suppress(OSError):
        for name in os.listdir(outdir):
            if name.startswith(STAGING_PREFIX):
                shutil.rmtree(outdir / name, ignore_errors=True)


def _write_marker(outdir: Path, files: list[str]) -> None:
    text = json.dumps({"trustml_run_folder": 1, "files": sorted(files)}, indent=1) + "\n"
    tmp = outdir / f"{MARKER}.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, outdir / MARKER)


def _previous_files(outdir: Path) -> list[str]:
    try:
        files = json.loads((outdir / MARKER).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and _owned_name(f) and "/" not in f]


@contextlib.contextmanager
def _staging(outdir: Path) -> Iterator[Path]:
    stage = outdir / f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _family(name: str) -> str:
    """Which command's files ``name`` is one of: ``"picks"`` (acquire) or ``"run"`` (evaluate)."""
    return "picks" if name in PICKS else "run"


def write_files(outdir: str | Path, writers: Mapping[str, Callable[[Path], Any]]) -> Path:
    """Write a run's files into ``outdir`` (created if needed) and return its resolved path.

    Parameters
    ----------
    outdir : path
        An output folder that :func:`check_outdir` accepted (or a :class:`RunFolder`'s path).
    writers : mapping of str to callable
        File name -> function writing that file at the path it is given. Every name must be
        one trustml owns (:data:`OWNED`, :data:`PICKS` or ``posterior_*.nc``).

    Every file is written to a staging folder first; only when all succeeded are they moved
    into ``outdir``, ``results.json`` and ``picks.h5`` last (and the old ones removed first),
    so a write interrupted half-way never leaves a complete-looking run or picks. Files that the
    previous write of the same command wrote and this one does not (e.g. the posterior of a
    method no longer in the protocol) are removed; the other command's files (picks written
    next to a run, or a run next to picks) and everything else in the folder are left alone.
    """
    outdir = Path(outdir)
    for name in writers:
        if not _owned_name(name) or name in (MARKER, LOCK, CHECKPOINTS) or "/" in name:
            raise ValueError(f"write_files: {name!r} is not a file name trustml owns")
    outdir.mkdir(parents=True, exist_ok=True)
    families = {_family(name) for name in writers}
    with _staging(outdir) as stage:
        for name, write in writers.items():
            write(stage / name)
        previous = [f for f in _previous_files(outdir) if f not in writers]
        stale = [f for f in previous if _family(f) in families and f != _COMPLETE]
        kept = [f for f in previous if f not in stale]
        last = [name for name in _COMPLETION_MARKS if name in writers]
        for name in last:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(outdir / name)
        for name in writers:
            if name not in last:
                os.replace(stage / name, outdir / name)
        for name in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(outdir / name)
        _write_marker(outdir, [*writers, *kept])
        for name in last:
            os.replace(stage / name, outdir / name)
    return outdir.resolve()
