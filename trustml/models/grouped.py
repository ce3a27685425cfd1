"""The public protocol of the grouped ensemble engine: how a model runs L members at once.

:class:`~trustml.uq.DeepEnsemble` trains L members of one architecture together. The fastest
way ("grouped") runs each layer once for all L members: one grouped convolution or one batched
matmul. It knows the standard torch layers (``nn.Sequential``, ``Linear``, ``Conv1d/2d/3d``,
pooling, element-wise activations, ``Flatten``, dropout); a model class whose ``forward`` does
something else (reshapes, skips, its own parameters) takes the grouped path by saying how, in
one method::

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes: ...

It receives the L members' activations ``x`` and returns theirs, doing what ``forward`` does
with the engine's help (``g``): ``g.run(name, x)`` runs a child module for every member,
``g.param(name)`` is one of the module's own parameters stacked over the members, and
``g.dense`` / ``g.channels`` give the activations as plain tensors in either layout. The
builtin ``cnn`` and ``mlp`` models use exactly this method.

Every child module the method runs must itself be grouped-capable. The engine checks the
grouped outputs against the model's own ``forward`` before it trains; a model whose method
gets it wrong (or raises) is trained under ``torch.func.vmap`` instead, so the method is a
speed-up that can never change a result beyond float rounding.

Examples
--------
>>> import torch
>>> from torch import nn
>>> class Scaled(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.body = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
...         self.scale = nn.Parameter(torch.ones(2))
...     def forward(self, x):
...         return self.body(x) * self.scale
...     def trustml_grouped_forward(self, g, x):
...         h = g.dense(g.run("body", x))                    # (L, b, 2)
...         return Lanes(h * g.param("scale")[:, None, :])   # scale: (L, 2)
>>> isinstance(Scaled(), GroupedModule)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["GroupedCall", "GroupedModule", "Lanes", "has_grouped_forward"]


class Lanes:
    """The activations of L stacked members, in one of two memory layouts.

    Parameters
    ----------
    tensor : torch.Tensor
        ``channels=False`` (dense): shape ``(L, b, *features)``, member ``l``'s activations in
        row ``l``. ``channels=True``: shape ``(b, L * C, *spatial)``, the members' channels
        side by side, as grouped convolutions and poolings want them.
    channels : bool, default False
        Which layout ``tensor`` is in.

    Notes
    -----
    Convert with :meth:`GroupedCall.dense` and :meth:`GroupedCall.channels` (they need L and
    the engine's memory format); wrap a result with ``Lanes(t)`` or ``Lanes(t, channels=True)``.
    """

    __slots__ = ("channels", "tensor")

    def __init__(self, tensor: torch.Tensor, channels: bool = False) -> None:
        self.tensor = tensor
        self.channels = channels

    def __repr__(self) -> str:
        layout = "channels" if self.channels else "dense"
        return f"Lanes({layout}, shape={tuple(self.tensor.shape)})"


class GroupedCall(Protocol):
    """What the grouped engine hands a module's ``trustml_grouped_forward``: one call, scoped
    to that module. A new object per forward pass, so the engine holds no per-call state and
    may be called from several threads at once."""

    @property
    def lanes(self) -> int:
        """L, the number of stacked members."""
        ...

    @property
    def training(self) -> bool:
        """Whether this is a training forward (dropout on)."""
        ...

    def run(self, name: str, x: Lanes) -> Lanes:
        """Run the child module ``name`` (as in ``named_modules()``, relative to this module,
        e.g. ``"features"`` or ``"head.0"``) for every member."""
        ...

    def param(self, name: str) -> torch.Tensor:
        """This module's parameter or buffer ``name`` of every member, ``(L, *shape)``."""
        ...

    def dense(self, x: Lanes) -> torch.Tensor:
        """``x`` as ``(L, b, *features)``."""
        ...

    def channels(self, x: Lanes) -> torch.Tensor:
        """``x`` as ``(b, L * C, *spatial)`` (a dense ``x`` must be ``(L, b, C, *spatial)``)."""
        ...


@runtime_checkable
class GroupedModule(Protocol):
    """A module class that takes the grouped engine: it defines ``trustml_grouped_forward``."""

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        """The L members' outputs on their inputs ``x``; what ``forward`` computes, for every
        member at once (see the module docstring)."""
        ...


def has_grouped_forward(module: nn.Module) -> bool:
    """Whether ``module``'s class defines ``trustml_grouped_forward``.

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    bool
    """
    return callable(getattr(type(module), "trustml_grouped_forward", None))
