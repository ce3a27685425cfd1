"""``trustml verify OUTDIR``: re-run a finished evaluation and check it reproduces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustml.protocol.runner import run_protocol
from trustml.protocol.schema import load_yaml, parse_protocol
from trustml.report import RunResults, json_bytes

__all__ = ["VerifyReport", "verify_run"]


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_run`: whether ``results.json`` was reproduced exactly."""

    reproduced: bool
    differences: list[str] = field(default_factory=list)


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{path}.{key}: present in only one run")
            else:
                _diff(a[key], b[key], f"{path}.{key}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: saved {a!r}, re-run {b!r}")


def verify_run(outdir: str | Path, *, progress: bool | None = None) -> VerifyReport:
    """Re-run the protocol saved in ``outdir`` and compare every number with ``results.json``.

    Nothing in ``outdir`` is changed. Relative HDF5 paths resolve against the folder the
    original protocol was in (recorded in the manifest).
    """
    saved = RunResults.load(outdir)
    protocol = parse_protocol(load_yaml(saved.protocol_text, source=f"{outdir}/protocol.yaml"))
    base_dir = Path(saved.manifest.get("protocol_dir") or ".")
    fresh = run_protocol(
        protocol, saved.protocol_text, base_dir=base_dir, write=False, progress=progress
    )
    # Compare the canonical JSON: exactly what results.json holds.
    import json

    before = json.loads(json_bytes(saved.summary))
    after = json.loads(json_bytes(fresh.results.summary))
    differences: list[str] = []
    _diff(before, after, "results", differences)
    return VerifyReport(reproduced=not differences, differences=differences)
