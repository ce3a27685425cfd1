"""Dropout whose masks depend only on the member's seed, the step, the layer and the element.

``torch.func.vmap(..., randomness="different")`` draws one batch of random numbers for all
members from the global generator, so member k's masks would depend on how many members are
stacked beside it, and a per-member loop would draw different masks again. Masks from a
counter-based hash of ``(member key, step, layer, element index)`` are the same in the loop, in
``vmap`` and in the grouped forward, whatever the other members are: member k's result depends
on child k of the seed only, which is what MPI runs over any number of ranks need.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import cast

import torch
from torch import nn

from trustml.models import CHANNELWISE_DROPOUT_TYPES, DROPOUT_TYPES

__all__ = [
    "DropoutClock",
    "HashDropout",
    "dropout_layers",
    "keep_mask",
    "with_member_dropout",
]

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # "lowbias32" integer hash on int64 tensors holding values in [0, 2**32). Products wrap
    # around in int64, but their low 32 bits (all that is kept) are exact.
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def keep_mask(
    key: torch.Tensor,
    step: int,
    layer: int,
    shape: tuple[int, ...],
    p: float,
    *,
    offset: int = 0,
    channelwise: bool = False,
) -> torch.Tensor:
    """Bernoulli(1 - p) keep mask of one dropout call.

    Parameters
    ----------
    key : int64 tensor of shape () or (K,)
        Member keys in ``[0, 2**32)``; shape ``(K,)`` gives one mask per member.
    step, layer : int
        Training step and index of the dropout layer in the model.
    shape : tuple of int
        Per-member input shape ``(b, C, *spatial)`` or ``(b, F)``.
    p : float
        Drop probability.
    offset : int
        Index of the first sample within the minibatch (for a batch processed in chunks).
    channelwise : bool
        One draw per ``(sample, channel)``, as ``nn.Dropout1d/2d/3d``.

    Returns
    -------
    bool tensor of shape ``shape`` (or ``(K, *shape)``), broadcast over spatial axes when
    ``channelwise``.
    """
    draw = (shape[0], shape[1], *(1,) * (len(shape) - 2)) if channelwise else shape
    per_sample = 1
    for s in draw[1:]:
        per_sample *= s
    idx = torch.arange(
        offset * per_sample, (offset + draw[0]) * per_sample, device=key.device, dtype=torch.int64
    ).view(draw)
    salt = _mix32(torch.tensor((step * _GOLDEN + layer) & _M32, device=key.device))
    k = _mix32((key.to(torch.int64) ^ salt) & _M32)
    if k.dim():
        k = k.view(-1, *(1,) * len(draw))
    h = _mix32((_mix32((idx + k) & _M32) + k * _GOLDEN) & _M32)
    return h >= int(p * 2**32)


class DropoutClock:
    """The training step shared by every :class:`HashDropout` of a fit, and the index of the
    first sample of the batch in the global batch (non-zero on a data-parallel share)."""

    def __init__(self) -> None:
        self.step = 0
        self.offset = 0


class HashDropout(nn.Module):
    """Drop-in for ``nn.Dropout*`` drawing its masks from :func:`keep_mask`.

    The member key is a (non-persistent) buffer, so ``torch.func.stack_module_state`` stacks
    the keys of K members and ``vmap`` hands each member its own.
    """

    key: torch.Tensor  # a buffer (registered in __init__)

    def __init__(
        self, p: float, layer: int, key: int, clock: DropoutClock, channelwise: bool
    ) -> None:
        super().__init__()
        self.p, self.layer, self.clock, self.channelwise = p, layer, clock, channelwise
        self.register_buffer("key", torch.tensor(key, dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        keep = keep_mask(
            self.key,
            self.clock.step,
            self.layer,
            tuple(x.shape),
            self.p,
            offset=self.clock.offset,
            channelwise=self.channelwise,
        )
        return x * keep.to(x.dtype) / (1.0 - self.p)


def dropout_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module, int]]:
    """``(qualified name, module, layer index)`` of every dropout module with ``p > 0`` (the
    modules of :data:`trustml.models.DROPOUT_TYPES`, replaced by :class:`HashDropout`)."""
    layer = 0
    for name, module in model.named_modules():
        if isinstance(module, DROPOUT_TYPES) and _rate(module) > 0:
            yield name, module, layer
            layer += 1


def _rate(module: nn.Module) -> float:
    """The drop probability of one of :data:`DROPOUT_TYPES` (their ``p``, a float)."""
    return float(cast(float, module.p))


def with_member_dropout(model: nn.Module, key: int, clock: DropoutClock) -> nn.Module:
    """A deep copy of ``model`` whose dropout layers draw from ``key`` (``model`` if none).

    The copy has the same parameter and buffer names (``HashDropout`` keeps its key out of the
    state dict), so trained weights load back into ``model`` unchanged.
    """
    layers = list(dropout_layers(model))
    if not layers:
        return model
    if layers[0][0] == "":  # the model is a bare dropout layer
        channelwise = isinstance(model, CHANNELWISE_DROPOUT_TYPES)
        return HashDropout(_rate(model), 0, key, clock, channelwise)
    device = next(model.parameters(), torch.empty(0)).device
    out = copy.deepcopy(model)
    for name, module, layer in layers:
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        replacement = HashDropout(
            _rate(module), layer, key, clock, isinstance(module, CHANNELWISE_DROPOUT_TYPES)
        )
        setattr(parent, attr, replacement.to(device))
    return out
