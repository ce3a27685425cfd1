"""Saving and loading a fitted :class:`~trustml.uq.Laplace`: one ``torch.save`` file of
plain tensors and containers (the MAP weights and laplace-torch's own ``state_dict``), read
back with ``torch.load(weights_only=True)`` so loading a file cannot run code."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trustml.uq._ensemble_io import pack, save_atomic, unpack

__all__ = ["read_laplace", "write_laplace"]

_FORMAT = "trustml.Laplace"


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
    payload = pack(_FORMAT, config, fitted)
    payload["map_state"] = _cpu(dict(net.state_dict()))
    payload["laplace_state"] = _cpu(dict(laplace_state))
    return save_atomic(path, payload)


def read_laplace(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """``(config, fitted, map_state, laplace_state)`` from a file of :func:`write_laplace`."""
    config, fitted, payload = unpack(path, _FORMAT, "Laplace")
    return config, fitted, payload["map_state"], payload["laplace_state"]
