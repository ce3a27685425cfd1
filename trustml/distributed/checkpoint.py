"""Atomic per-member checkpoints, so a crashed or time-limited run resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from trustml.utils.atomic import atomic_write_bytes

__all__ = ["MemberCheckpoints", "run_key"]

log = logging.getLogger("trustml")


def run_key(config: dict[str, Any]) -> str:
    """A short hash of everything that determines a member's training (seed, data, model...).

    Checkpoints written under another key are ignored, so changing the protocol never resumes
    from stale members.
    """
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class MemberCheckpoints:
    """``DIRECTORY/member-00003.pt`` files, one per finished member.

    Each file holds plain tensors and lists only (read back with ``weights_only=True``) and the
    run key; writes go to a temporary file first and are renamed into place, so a killed
    process leaves either a complete checkpoint or none.
    """

    def __init__(self, directory: str | Path, key: str) -> None:
        self.directory = Path(directory)
        self.key = key

    def _path(self, k: int) -> Path:
        return self.directory / f"member-{k:05d}.pt"

    def save(self, k: int, state: dict[str, Any]) -> None:
        """Store member ``k``'s ``state`` (a dict of tensors, numbers, lists and strings)."""
        import io

        buf = io.BytesIO()
        torch.save({"key": self.key, "member": k, "state": state}, buf)
        atomic_write_bytes(self._path(k), buf.getvalue())

    def load(self, k: int) -> dict[str, Any] | None:
        """Member ``k``'s state, or ``None`` when absent, unreadable or from another run."""
        path = self._path(k)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: retrain that member
            log.warning("ignoring unreadable checkpoint %s (%s)", path, exc.__class__.__name__)
            return None
        if payload.get("key") != self.key or payload.get("member") != k:
            return None
        return payload["state"]

    def finished(self, members: range | list[int]) -> list[int]:
        """Which of ``members`` have a valid checkpoint."""
        return [k for k in members if self.load(k) is not None]
