"""The public protocol of the grouped engine, as the models layer defines it: the builtin
models' ``trustml_grouped_forward`` computes their ``forward``; dropout types are declared once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trustml.models import (
    CHANNELWISE_DROPOUT_TYPES,
    DROPOUT_TYPES,
    GroupedModule,
    Lanes,
    build_model,
    dropout_rates,
    has_grouped_forward,
)


class OneLane:
    """The plainest :class:`trustml.models.GroupedCall`: one member (L = 1), every child run
    by its own ``forward`` unless it has a grouped forward of its own."""

    lanes = 1
    training = False

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def dense(self, x: Lanes) -> torch.Tensor:
        return x.tensor.unflatten(1, (1, -1)).transpose(0, 1) if x.channels else x.tensor

    def channels(self, x: Lanes) -> torch.Tensor:
        return x.tensor if x.channels else x.tensor[0]

    def param(self, name: str) -> torch.Tensor:
        return self.module.get_parameter(name)[None]

    def run(self, name: str, x: Lanes) -> Lanes:
        child = self.module.get_submodule(name)
        if has_grouped_forward(child):
            return child.trustml_grouped_forward(OneLane(child), x)
        return Lanes(child(self.dense(x)[0])[None])


@pytest.mark.parametrize(
    ("name", "shape"),
    [("cnn", (2, 8, 8)), ("cnn", (1, 8)), ("cnn", (1, 2, 4, 4, 4)), ("mlp", (3, 4))],
)
def test_the_builtin_grouped_forward_computes_forward(name, shape):
    torch.manual_seed(0)
    net = build_model(name, input_shape=shape, output_dim=3, dropout=0.2).eval()
    assert isinstance(net, GroupedModule)
    x = torch.randn(5, *shape)
    with torch.no_grad():
        got = OneLane(net).dense(net.trustml_grouped_forward(OneLane(net), Lanes(x[None])))
        want = net(x)
    assert got.shape == (1, 5, 3)
    torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-6)


def test_lstm_has_no_grouped_forward():
    net = build_model("lstm", input_shape=(5, 3), output_dim=2)
    assert not has_grouped_forward(net) and not isinstance(net, GroupedModule)


def test_dropout_types_are_declared_once_and_read_by_dropout_rates():
    assert set(CHANNELWISE_DROPOUT_TYPES) < set(DROPOUT_TYPES)
    assert nn.Dropout in DROPOUT_TYPES and nn.AlphaDropout not in DROPOUT_TYPES
    mlp = build_model("mlp", input_shape=(3,), output_dim=1, hidden=(8, 8), dropout=0.25)
    assert dropout_rates(mlp) == [0.25, 0.25]
    assert dropout_rates(nn.Sequential(nn.Linear(2, 2), nn.Dropout2d(0.5))) == [0.5]
    assert dropout_rates(nn.Linear(2, 2)) == []
