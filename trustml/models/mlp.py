"""Multilayer perceptron over flattened inputs."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trustml.exceptions import TrustmlInputError
from trustml.models._options import (
    activation,
    check_dropout,
    check_input_shape,
    check_output_dim,
    check_widths,
    resolve_options,
)
from trustml.models.grouped import GroupedCall, Lanes

__all__ = ["MLP_DEFAULTS", "build_mlp"]

MLP_DEFAULTS: dict[str, Any] = {"hidden": (64, 64), "dropout": 0.0, "activation": "relu"}


class _MLP(nn.Module):
    """Flatten -> ``net`` (Linear, activation, dropout blocks)."""

    def __init__(self, input_shape: tuple[int, ...], net: nn.Sequential) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise TrustmlInputError(
                f"mlp input: expected shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return self.net(x.flatten(1))

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        """:meth:`forward` for L stacked members (see :mod:`trustml.models.grouped`)."""
        return g.run("net", Lanes(g.dense(x).flatten(2)))


def build_mlp(input_shape: Any, output_dim: Any, **options: Any) -> nn.Module:
    """Build the ``mlp`` model; see :func:`trustml.models.build_model` for the options."""
    shape = check_input_shape(
        "mlp", input_shape, range(1, 33), "a non-empty tuple of positive ints, per sample"
    )
    output_dim = check_output_dim("mlp", output_dim)
    opts = resolve_options("mlp", options, MLP_DEFAULTS)
    hidden = check_widths("mlp", "hidden", opts["hidden"], allow_empty=True)
    dropout = check_dropout("mlp", opts["dropout"])
    activation("mlp", opts["activation"])

    layers: list[nn.Module] = []
    width = math.prod(shape)
    for h in hidden:
        layers += [nn.Linear(width, h), activation("mlp", opts["activation"]), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, output_dim))
    return _MLP(shape, nn.Sequential(*layers))
