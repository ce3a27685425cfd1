"""Sizes checked against this machine's memory before anything is allocated.

An absurd ``members``, ``hidden`` or ``n`` (10**9) used to end in a MemoryError traceback
minutes into a run; these checks refuse it up front with one line naming the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from trustml.data import load_builtin
from trustml.distributed import Comm
from trustml.exceptions import ProtocolError
from trustml.protocol.schema import Protocol, UncertaintySpec
from trustml.utils.memory import available_memory, format_bytes

__all__ = ["METHOD_BYTES", "check_data_size", "check_model_size"]

#: Bytes per weight while one network trains: the weight, its gradient and Adam's two moments.
_TRAIN_BYTES_PER_WEIGHT = 16
#: A run may plan to use at most this fraction of the memory available when it starts.
_MEMORY_FRACTION = 0.9


def _ensemble_bytes(spec: UncertaintySpec, weights: int, ranks: int) -> tuple[int, str]:
    per_rank = -(-spec.members // ranks)
    # Members training on a rank, plus every member's weights assembled on rank 0.
    return weights * (_TRAIN_BYTES_PER_WEIGHT * per_rank + 4 * spec.members), "members"


def _nuts_bytes(spec: UncertaintySpec, weights: int, ranks: int) -> tuple[int, str]:
    return weights * 4 * spec.num_samples * spec.chains, "num_samples"


def _svi_bytes(spec: UncertaintySpec, weights: int, ranks: int) -> tuple[int, str]:
    return weights * (_TRAIN_BYTES_PER_WEIGHT + 3 * 4 * 4), "method"  # a mean and scale each


def _network_bytes(spec: UncertaintySpec, weights: int, ranks: int) -> tuple[int, str]:
    return weights * _TRAIN_BYTES_PER_WEIGHT, "method"


def _laplace_bytes(spec: UncertaintySpec, weights: int, ranks: int) -> tuple[int, str]:
    # Training the MAP network, plus a full posterior over every weight (P x P floats, the
    # Hessian, the precision and its factor). The other structures depend on the layers and
    # outputs and are checked, with a forward pass, at the start of the fit.
    full = (spec.subset_of_weights, spec.hessian) == ("all", "full")
    return weights * _TRAIN_BYTES_PER_WEIGHT + (12 * weights * weights if full else 0), "hessian"


#: Per uncertainty method (the schema's names): rough peak bytes of fitting it (the weights'
#: share only) on each of ``ranks`` ranks, and the key to blame.
METHOD_BYTES: dict[str, Callable[[UncertaintySpec, int, int], tuple[int, str]]] = {
    "deep_ensemble": _ensemble_bytes,
    "bayes_svi": _svi_bytes,
    "bayes_nuts": _nuts_bytes,
    "mc_dropout": _network_bytes,
    "laplace": _laplace_bytes,
}


def check_model_size(protocol: Protocol, make_model: Any, comm: Comm) -> None:
    """Refuse, before anything is allocated, a model or ensemble this machine cannot hold.

    The model is built on PyTorch's ``meta`` device (shapes without storage), so a width of
    10**9 is refused in milliseconds instead of failing with a MemoryError minutes later.
    """
    avail = available_memory()
    if avail is None:
        return
    budget = _MEMORY_FRACTION * avail
    try:
        with torch.device("meta"):
            weights = sum(p.numel() for p in make_model().parameters())
    except Exception:  # noqa: BLE001 - building it for real below says what is wrong
        return
    have = f"this machine has {format_bytes(avail)} available"
    if weights * _TRAIN_BYTES_PER_WEIGHT > budget:
        raise ProtocolError(
            f"one network of this model has {weights:,} weights and needs about "
            f"{format_bytes(weights * _TRAIN_BYTES_PER_WEIGHT)} to train; {have}",
            key="model.options" if protocol.model.builtin else "model",
        )
    for i, spec in enumerate(protocol.methods):
        # Members are spread over the P/D data-parallel groups, not over the P ranks.
        groups = max(1, comm.size // protocol.parallel.data)
        need, field = METHOD_BYTES[spec.method](spec, weights, groups)
        if need > budget:
            raise ProtocolError(
                f"{spec.method} with these settings needs about {format_bytes(need)} for the "
                f"weights of a {weights:,}-weight model; {have}",
                key=f"{protocol.method_key(i)}.{field}",
            )


def check_data_size(protocol: Protocol) -> None:
    """Refuse a builtin dataset larger than memory (builtins are generated in memory)."""
    spec = protocol.data
    n = spec.options.get("n")
    avail = available_memory()
    if spec.builtin is None or not isinstance(n, int) or n <= 10_000 or avail is None:
        return
    small = load_builtin(spec.builtin, seed=0, **{**spec.options, "n": 2})
    x, y = small.read(np.arange(len(small)))
    per_sample = (x.nbytes + np.asarray(y).nbytes) / max(len(small), 1)
    need = 2 * n * per_sample  # the arrays and the generator's temporaries
    if need > _MEMORY_FRACTION * avail:
        raise ProtocolError(
            f"{n:,} samples of {spec.builtin} need about {format_bytes(need)} in memory; this "
            f"machine has {format_bytes(avail)} available (for larger data, export it to HDF5 "
            "with 'trustml data export' and read it from there)",
            key="data.options.n",
        )
