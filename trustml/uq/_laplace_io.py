"""Saving and loading a fitted :class:`~trustml.uq.Laplace`: one ``torch.save`` file of
plain tensors and containers (the MAP weights and laplace-torch's own ``state_dict``), read
back with ``torch.load(weights_only=True)`` so loading a file cannot run code."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.uq._ensemble_io import _seed_from_plain, _seed_to_plain

__all__ = ["read_laplace", "write_laplace"]

_FORMAT = "trustml.Laplace"
_VERSION = 1
_ARRAYS = ("target_shift", "target_scale", "validation_indices")


def _cpu(value: Any) -> Any:
    """``value`` with every tensor (in lists, tuples, dicts) detached and on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list | tuple):
        return type(value)(_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)  # laplace-torch's str enums become plain strings
    return value


def write_laplace(
    path: str | os.PathLike[str],
    config: Mapping[str, Any],
    fitted: Mapping[str, Any],
    net: nn.Module,
    laplace_state: Mapping[str, Any],
) -> Path:
    """Write the configuration, fitted state, MAP weights and laplace-torch state atomically."""
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "config": {**config, "seed": _seed_to_plain(config["seed"])},
        "fitted": {
            k: (None if v is None else torch.as_tensor(np.asarray(v))) if k in _ARRAYS else v
            for k, v in fitted.items()
        },
        "map_state": _cpu(dict(net.state_dict())),
        "laplace_state": _cpu(dict(laplace_state)),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_laplace(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """``(config, fitted, map_state, laplace_state)`` from a file of :func:`write_laplace`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a saved Laplace ({exc})".splitlines()[0]) from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a saved Laplace")
    if payload.get("version") != _VERSION:
        raise ValueError(
            f"{path}: saved Laplace format version {payload.get('version')!r}; "
            f"this trustml reads version {_VERSION}"
        )
    config = dict(payload["config"])
    config["seed"] = _seed_from_plain(config["seed"])
    fitted = {
        k: (None if v is None else v.numpy()) if k in _ARRAYS else v
        for k, v in payload["fitted"].items()
    }
    return config, fitted, payload["map_state"], payload["laplace_state"]
