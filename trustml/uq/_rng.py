"""Random streams of a fit: integer seeds from seed sequences, seeded torch generators that
leave the caller's state alone, and re-initialised copies of a module."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = ["reinitialize", "seed_int", "seeded_rng"]


def seed_int(ss: np.random.SeedSequence) -> int:
    """A 32-bit integer seed drawn from ``ss``."""
    return int(ss.generate_state(1, dtype=np.uint32)[0])


@contextmanager
def seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """The global torch generator seeded with ``seed`` for the duration, then restored as it
    was (``torch.random.fork_rng``): fitting never shifts the user's random numbers."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def reinitialize(module: nn.Module, seed: int) -> nn.Module:
    """A deep copy of ``module`` with every ``reset_parameters`` re-run under ``seed`` (the
    global torch generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = copy.deepcopy(module)
        for sub in model.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()  # type: ignore[operator]
    return model
