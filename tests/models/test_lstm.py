"""The vmap-friendly LSTM must match torch.nn.LSTM exactly (names, init, outputs)."""

import pytest
import torch
from torch import nn

from trustml.models import build_model


@pytest.mark.parametrize(
    ("layers", "bidirectional"), [(1, False), (2, False), (1, True), (2, True)]
)
def test_matches_torch_lstm(layers, bidirectional):
    torch.manual_seed(0)
    net = build_model(
        "lstm",
        input_shape=(7, 3),
        output_dim=2,
        hidden=5,
        layers=layers,
        bidirectional=bidirectional,
    ).eval()
    torch.manual_seed(0)
    reference = nn.LSTM(3, 5, layers, batch_first=True, bidirectional=bidirectional)
    # Same parameter names and the same initial values under the same seed.
    assert list(net.lstm.state_dict()) == list(reference.state_dict())
    for (_, a), (_, b) in zip(
        net.lstm.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b)

    x = torch.randn(4, 7, 3)
    _, (h_n, _) = reference(x)
    directions = 2 if bidirectional else 1
    expected_features = torch.cat(list(h_n[-directions:]), dim=-1)
    torch.testing.assert_close(net.lstm(x), expected_features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net(x), net.head(expected_features), rtol=1e-5, atol=1e-6)
