"""Convolutional network for 1D/2D/3D grids, and 4D grids with time folded into channels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trustml.exceptions import TrustmlInputError
from trustml.models._options import (
    activation,
    check_dropout,
    check_input_shape,
    check_output_dim,
    check_positive,
    check_widths,
    resolve_options,
)
from trustml.models.grouped import GroupedCall, Lanes

__all__ = ["CNN_DEFAULTS", "build_cnn"]

CNN_DEFAULTS: dict[str, Any] = {
    "channels": (16, 32),
    "kernel_size": 3,
    "hidden": 64,
    "dropout": 0.0,
    "activation": "relu",
}

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


class _ConvNet(nn.Module):
    """Conv blocks -> global average pool -> MLP head.

    Written for ``torch.func.vmap``: no BatchNorm, no in-place ops, control flow on shapes only.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        features: nn.Sequential,
        head: nn.Sequential,
    ) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.fold_time = len(input_shape) == 5
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = len(self.input_shape) + 1
        lead = 3 if self.fold_time else 2  # the (N, C[, T]) dims whose sizes are fixed
        if x.dim() != rank or tuple(x.shape[1:lead]) != self.input_shape[: lead - 1]:
            raise TrustmlInputError(
                f"cnn input: expected shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if self.fold_time:
            x = x.flatten(1, 2)  # (N, C, T, D, H, W) -> (N, C*T, D, H, W)
        h = self.features(x)
        h = h.mean(dim=tuple(range(2, h.dim())))
        return self.head(h)

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        """:meth:`forward` for L stacked members (see :mod:`trustml.models.grouped`)."""
        t = g.dense(x)  # (L, b, C[, T], *spatial)
        if self.fold_time:
            t = t.flatten(2, 3)
        h = g.channels(g.run("features", Lanes(t)))  # (b, L*C, *spatial)
        h = h.mean(dim=tuple(range(2, h.dim())))  # (b, L*C)
        return g.run("head", Lanes(g.dense(Lanes(h, channels=True))))


def build_cnn(input_shape: Any, output_dim: Any, **options: Any) -> nn.Module:
    """Build the ``cnn`` model; see :func:`trustml.models.build_model` for the options."""
    shape = check_input_shape(
        "cnn", input_shape, (2, 3, 4, 5), "(C, *spatial) with 1 to 4 spatial dims, per sample"
    )
    output_dim = check_output_dim("cnn", output_dim)
    opts = resolve_options("cnn", options, CNN_DEFAULTS)
    channels = check_widths("cnn", "channels", opts["channels"], allow_empty=False)
    k = check_positive("cnn", "kernel_size", opts["kernel_size"], odd=True)
    hidden = check_positive("cnn", "hidden", opts["hidden"])
    dropout = check_dropout("cnn", opts["dropout"])
    activation("cnn", opts["activation"])  # validate before building anything

    if len(shape) == 5:
        in_ch, spatial = shape[0] * shape[1], list(shape[2:])
    else:
        in_ch, spatial = shape[0], list(shape[1:])
    ndim = len(spatial)
    layers: list[nn.Module] = []
    for out_ch in channels:
        layers += [
            _CONV[ndim](in_ch, out_ch, k, padding=k // 2),
            activation("cnn", opts["activation"]),
        ]
        pool = tuple(2 if s >= 2 else 1 for s in spatial)
        if any(p > 1 for p in pool):
            layers.append(_POOL[ndim](pool))
            spatial = [s // p for s, p in zip(spatial, pool, strict=True)]
        in_ch = out_ch
    head = nn.Sequential(
        nn.Linear(in_ch, hidden),
        activation("cnn", opts["activation"]),
        nn.Dropout(dropout),
        nn.Linear(hidden, output_dim),
    )
    return _ConvNet(shape, nn.Sequential(*layers), head)
