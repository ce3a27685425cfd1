"""Provenance of a run (``manifest.json``): what ran, where, with which versions, how long."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from trustml.protocol.schema import Protocol

__all__ = ["DISTRIBUTIONS", "manifest"]

#: The distributions whose versions a manifest records.
DISTRIBUTIONS = (
    "trustml",
    "torch",
    "numpy",
    "scipy",
    "pyro-ppl",
    "captum",
    "h5py",
    "arviz",
    "mpi4py",
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the trustml source tree, when it is a git checkout (else ``None``)."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def manifest(
    protocol: Protocol,
    text: str,
    *,
    fingerprint: str,
    device: torch.device,
    command: list[str] | None,
    protocol_dir: Path,
    world_size: int,
    timings: dict[str, float],
    wall_time_s: float,
    fingerprint_plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a finished run of ``protocol`` (whose file's text is ``text``).

    ``command`` defaults to ``sys.argv``; ``protocol_dir`` is where relative data paths
    resolve (``trustml verify`` re-runs from there). ``fingerprint_plan`` is how the data was
    fingerprinted (:meth:`trustml.data.BaseDataset.fingerprint_plan`; default every byte):
    its ``mode`` is recorded as ``data_fingerprint_mode``, a sample's size as
    ``data_fingerprint_sample``.
    """
    plan = dict(fingerprint_plan or {"mode": "full"})
    mode = plan.pop("mode")
    sample = {"data_fingerprint_sample": plan} if mode == "sampled" else {}
    return {
        "git_commit": _git_commit(),
        "methods": [m.name for m in protocol.methods],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        "seed": protocol.seed,
        "protocol_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "data_fingerprint": fingerprint,
        "data_fingerprint_mode": mode,
        **sample,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {d: _version(d) for d in DISTRIBUTIONS},
        "protocol_dir": str(protocol_dir.resolve()),
        "mpi_world_size": world_size,
        "timings_s": timings,
        "wall_time_s": wall_time_s,
    }
