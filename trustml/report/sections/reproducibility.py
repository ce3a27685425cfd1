"""Reproducibility: provenance, the commands to verify and rebuild, the arrays, the protocol."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from typing import Any

from trustml.report._format import as_dict, flatten, format_number, number, pretty
from trustml.report._json import json_bytes
from trustml.report.sections._base import Content, ReportInput, Section

__all__ = ["SECTION", "build"]

_MANIFEST_SHOWN = frozenset(
    {
        "protocol_sha256", "data_fingerprint", "versions", "git_commit", "seed", "seeds",
        "device", "mpi_world_size", "wall_time_s", "command", "created_at", "python",
        "platform", "torch_threads", "data_fingerprint_mode", "data_fingerprint_sample",
    }
)  # fmt: skip


def build(run: ReportInput) -> Content:
    """Provenance, the commands that re-run and rebuild the run, and its files; always shown."""
    results, outdir = run.results, run.outdir
    man = results.manifest
    s = results.summary
    versions = as_dict(man.get("versions"))
    git = man.get("git_commit")
    if git is None and isinstance(man.get("git"), Mapping):
        git = man["git"].get("commit")
    seeds = man.get("seeds")
    if seeds is None:
        seeds = man.get("seed", s.get("seed"))
    wall = number(man.get("wall_time_s"))
    command = man.get("command")
    if isinstance(command, list) and all(isinstance(c, str) for c in command):
        command = shlex.join(command)
    facts = [
        ("protocol sha256", man.get("protocol_sha256"), True),
        (
            "data fingerprint (sha256)",
            man.get("data_fingerprint") or as_dict(s.get("data")).get("fingerprint"),
            True,
        ),  # fmt: skip
        ("data fingerprint mode", _fingerprint_mode(man), False),
        ("trustml version", versions.get("trustml"), False),
        ("trustml git commit", git if git is not None else "not recorded", True),
        ("seeds", pretty(seeds) if seeds is not None else None, True),
        ("device", man.get("device"), False),
        ("MPI world size", man.get("mpi_world_size"), False),
        ("torch threads", man.get("torch_threads"), False),
        ("wall time", f"{wall:.1f} s" if wall is not None else None, False),
        ("python", man.get("python"), False),
        ("platform", man.get("platform"), False),
        ("created at", man.get("created_at"), False),
    ]
    other: list[tuple[str, str]] = []
    for k in sorted(man):
        if k not in _MANIFEST_SHOWN:
            flat: dict[str, Any] = {}
            flatten(str(k), man[k], flat)
            other += [
                (
                    fk,
                    shlex.join(v)
                    if isinstance(v, list) and v and all(isinstance(x, str) for x in v)
                    else pretty(v),
                )
                for fk, v in flat.items()
            ]
    return Content(
        {
            "facts": [(k, format_number(v), mono) for k, v, mono in facts if v is not None],
            "versions": sorted((str(k), format_number(v)) for k, v in versions.items()),
            "command": command if isinstance(command, str) else None,
            "verify": f"trustml verify {shlex.quote(outdir)}",
            "rebuild": f"trustml report {shlex.quote(outdir)}",
            "results_sha256": hashlib.sha256(json_bytes(s)).hexdigest(),
            "other": other,
            "arrays": [
                (k, " \u00d7 ".join(map(str, v.shape)) or "scalar", str(v.dtype))
                for k, v in sorted(results.arrays.items())
            ],
            "protocol": results.protocol_text,
        }
    )


def _fingerprint_mode(man: Mapping[str, Any]) -> str | None:
    """How the data was fingerprinted, as the manifest records it (None for older runs)."""
    mode = man.get("data_fingerprint_mode")
    if mode == "full":
        return "full: every byte of inputs, targets and groups"
    if mode != "sampled":
        return None
    sample = as_dict(man.get("data_fingerprint_sample"))
    chunks, of, rows = (number(sample.get(k)) for k in ("chunks", "of", "rows_per_chunk"))
    seed = sample.get("seed")
    if chunks is None or of is None:
        part = "a seeded sample of chunks"
    else:
        size = f" of up to {int(rows):,} rows" if rows is not None else ""
        part = f"{int(chunks):,} of {int(of):,} chunks{size}"
        if seed is not None:
            part += f" (seed {pretty(seed)})"
    return (
        f"sampled: {part}, plus every file's name, size and HDF5 metadata; not every byte "
        "(a change inside an unsampled chunk that keeps the file's size goes unseen)"
    )


SECTION = Section("reproducibility", "Reproducibility", build)
