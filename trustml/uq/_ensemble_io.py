"""Saving and loading deep ensembles: one ``torch.save`` file of plain tensors and containers.

The file is read back with ``torch.load(weights_only=True)``: no pickled classes or functions,
so loading a file cannot run code. The architecture comes from the caller's ``make_model``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.utils.seeding import SeedLike

__all__ = ["load_weights", "pack", "read_ensemble", "save_atomic", "unpack", "write_ensemble"]

_FORMAT = "trustml.DeepEnsemble"
_VERSION = 1
_ARRAYS = ("target_shift", "target_scale", "validation_indices")


def pack(fmt: str, config: Mapping[str, Any], fitted: Mapping[str, Any]) -> dict[str, Any]:
    """The common head of a saved estimator: format, version, configuration (with a plain
    seed) and fitted state (arrays as tensors)."""
    return {
        "format": fmt,
        "version": _VERSION,
        "config": {**config, "seed": _seed_to_plain(config["seed"])},
        "fitted": {k: (_tensor_or_none(v) if k in _ARRAYS else v) for k, v in fitted.items()},
    }


def save_atomic(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def unpack(
    path: str | os.PathLike[str], fmt: str, what: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(config, fitted, payload)`` of a file written with :func:`pack` and
    :func:`save_atomic`, read with ``weights_only=True``; ``what`` names the estimator in
    errors."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a saved {what} ({exc})".splitlines()[0]) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path}: not a saved {what}")
    if payload.get("version") != _VERSION:
        raise ValueError(
            f"{path}: saved {what} format version {payload.get('version')!r}; "
            f"this trustml reads version {_VERSION}"
        )
    config = dict(payload["config"])
    config["seed"] = _seed_from_plain(config["seed"])
    fitted = {
        k: (None if v is None else v.numpy()) if k in _ARRAYS else v
        for k, v in payload["fitted"].items()
    }
    return config, fitted, payload


def write_ensemble(
    path: str | os.PathLike[str],
    config: Mapping[str, Any],
    fitted: Mapping[str, Any],
    members: Sequence[nn.Module],
) -> Path:
    """Write ``config`` (constructor arguments), ``fitted`` state and member weights atomically."""
    payload = pack(_FORMAT, config, fitted)
    payload["state_dicts"] = [
        {n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for m in members
    ]
    return save_atomic(path, payload)


def read_ensemble(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, torch.Tensor]]]:
    """``(config, fitted, state_dicts)`` from a file written by :func:`write_ensemble`."""
    config, fitted, payload = unpack(path, _FORMAT, "DeepEnsemble")
    return config, fitted, list(payload["state_dicts"])


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], k: int) -> None:
    """Load member ``k``'s weights, or say how ``model``'s architecture differs."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"make_model builds a different architecture than member {k} was trained with: "
            f"missing weights {missing[:3]}, unexpected weights {unexpected[:3]}"
        )
    for name, t in own.items():
        if tuple(t.shape) != tuple(state[name].shape):
            raise ValueError(
                f"make_model builds a different architecture than member {k} was trained with: "
                f"{name!r} has shape {tuple(t.shape)}, the saved one {tuple(state[name].shape)}"
            )
    model.load_state_dict(state)


def _tensor_or_none(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.as_tensor(np.asarray(a))


def _seed_to_plain(seed: SeedLike) -> Any:
    if isinstance(seed, np.random.SeedSequence):
        return {"entropy": str(seed.entropy), "spawn_key": [int(k) for k in seed.spawn_key]}
    return None if seed is None else int(seed)


def _seed_from_plain(seed: Any) -> SeedLike:
    if isinstance(seed, dict):
        return np.random.SeedSequence(int(seed["entropy"]), spawn_key=tuple(seed["spawn_key"]))
    return seed
