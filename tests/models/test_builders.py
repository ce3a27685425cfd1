import json

import pytest
import torch
from torch import nn

from trustml.exceptions import TrustmlInputError
from trustml.models import build_model, model_names, model_summary

SHAPES = [
    ("cnn", (2, 16)),
    ("cnn", (2, 12, 10)),
    ("cnn", (1, 6, 8, 5)),
    ("cnn", (2, 3, 6, 4, 5)),  # (C, T, D, H, W): T folded into channels
    ("cnn", (3, 1, 1)),  # too small to pool
    ("mlp", (7,)),
    ("mlp", (2, 3, 4)),
    ("lstm", (6, 3)),
]


def test_model_names():
    assert model_names() == ["cnn", "lstm", "mlp"]


@pytest.mark.parametrize(("name", "shape"), SHAPES)
def test_output_shape(name, shape):
    torch.manual_seed(0)
    net = build_model(name, input_shape=shape, output_dim=3)
    out = net(torch.randn(5, *shape))
    assert out.shape == (5, 3)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "shape", "options", "expected"),
    [
        # conv 2*4*9+4, head 4*5+5 and 5*3+3
        ("cnn", (2, 8, 8), {"channels": (4,), "hidden": 5}, 76 + 25 + 18),
        # 1D with k=5: conv 2*3*5+3, head 3*5+5, 5*3+3
        ("cnn", (2, 9), {"channels": (3,), "hidden": 5, "kernel_size": 5}, 33 + 20 + 18),
        # 3D: 1*2*27+2, 2*3*27+3, head 3*5+5, 5*3+3
        ("cnn", (1, 4, 4, 4), {"channels": (2, 3), "hidden": 5}, 56 + 165 + 20 + 18),
        # 4D folds T=3 into 2*3=6 channels: 6*4*27+4, head 4*5+5, 5*3+3
        ("cnn", (2, 3, 4, 4, 4), {"channels": (4,), "hidden": 5}, 652 + 25 + 18),
        # 12*5+5, 5*3+3
        ("mlp", (3, 4), {"hidden": (5,)}, 65 + 18),
        ("mlp", (3, 4), {"hidden": ()}, 12 * 3 + 3),
        # 4 gates * hidden * (F + hidden) + 2 bias vectors, head 4*3+3
        ("lstm", (6, 3), {"hidden": 4}, 16 * 7 + 32 + 15),
        # layer 0: 2 dirs * (16*3 + 16*4 + 32), layer 1 input 8: 2 * (16*8 + 16*4 + 32), head 8*3+3
        ("lstm", (6, 3), {"hidden": 4, "layers": 2, "bidirectional": True}, 288 + 448 + 27),
    ],
)
def test_parameter_count_by_hand(name, shape, options, expected):
    net = build_model(name, input_shape=shape, output_dim=3, **options)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert model_summary(net)["n_parameters"] == expected


def test_cnn_pools_only_axes_that_allow_it():
    net = build_model("cnn", input_shape=(1, 1, 8), output_dim=1, channels=(2, 2, 2, 2))
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert [p.kernel_size for p in pools] == [(1, 2), (1, 2), (1, 2)]  # 8 -> 4 -> 2 -> 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize(
    ("shape", "conv"),
    [
        ((1, 8), nn.Conv1d),
        ((1, 8, 8), nn.Conv2d),
        ((1, 4, 4, 4), nn.Conv3d),
        ((1, 2, 4, 4, 4), nn.Conv3d),
    ],
)
def test_cnn_conv_dimension_from_rank(shape, conv):
    net = build_model("cnn", input_shape=shape, output_dim=1)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    assert convs and all(type(m) is conv for m in convs)


def test_init_is_deterministic_under_manual_seed():
    def params(seed):
        torch.manual_seed(seed)
        net = build_model("cnn", input_shape=(1, 8, 8), output_dim=2)
        return torch.cat([p.flatten() for p in net.parameters()])

    assert torch.equal(params(3), params(3))
    assert not torch.equal(params(3), params(4))


@pytest.mark.parametrize(("name", "shape"), [("cnn", (1, 8, 8)), ("mlp", (4,)), ("lstm", (5, 2))])
def test_dropout_is_active_in_train_mode_only(name, shape):
    torch.manual_seed(0)
    net = build_model(name, input_shape=shape, output_dim=2, dropout=0.5)
    x = torch.randn(16, *shape)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_unknown_option_lists_valid_ones():
    with pytest.raises(TrustmlInputError) as info:
        build_model("cnn", input_shape=(1, 8, 8), output_dim=1, chanels=(8,))
    assert str(info.value) == (
        "model 'cnn' has no option 'chanels'; valid: activation, channels, dropout, hidden, kernel_size"
    )


def test_unknown_model_lists_valid_ones():
    with pytest.raises(TrustmlInputError, match="'resnet'; valid: cnn, lstm, mlp"):
        build_model("resnet", input_shape=(1, 8, 8), output_dim=1)


@pytest.mark.parametrize(
    ("name", "shape", "options", "fragment"),
    [
        ("cnn", (8,), {}, "'input_shape': expected (C, *spatial) with 1 to 4 spatial dims"),
        ("cnn", (1, 2, 2, 2, 2, 2), {}, "'input_shape'"),
        ("cnn", (1, 0, 8), {}, "'input_shape'"),
        ("lstm", (6,), {}, "'input_shape': expected (T, F)"),
        ("mlp", (), {}, "'input_shape'"),
        (
            "cnn",
            (1, 8),
            {"channels": (16, -1)},
            "'channels': expected a non-empty list of ints >= 1",
        ),
        ("cnn", (1, 8), {"channels": ()}, "'channels'"),
        ("cnn", (1, 8), {"kernel_size": 2}, "'kernel_size': expected an odd int >= 1"),
        ("cnn", (1, 8), {"hidden": 0}, "'hidden': expected an int >= 1"),
        ("cnn", (1, 8), {"dropout": 1.0}, "'dropout': expected a float in [0, 1)"),
        (
            "cnn",
            (1, 8),
            {"activation": "swish"},
            "'activation': expected one of gelu, relu, silu, tanh",
        ),
        ("mlp", (4,), {"hidden": (8, 0)}, "'hidden'"),
        ("mlp", (4,), {"hidden": "64"}, "'hidden'"),
        ("lstm", (6, 3), {"layers": 0}, "'layers'"),
        ("lstm", (6, 3), {"bidirectional": "yes"}, "'bidirectional'"),
        (
            "lstm",
            (6, 3),
            {"hiden": 3},
            "has no option 'hiden'; valid: bidirectional, dropout, hidden, layers",
        ),
    ],
)
def test_bad_values_name_the_option(name, shape, options, fragment):
    with pytest.raises(TrustmlInputError) as info:
        build_model(name, input_shape=shape, output_dim=1, **options)
    assert fragment in str(info.value)
    assert f"'{name}'" in str(info.value)


def test_bad_output_dim():
    with pytest.raises(TrustmlInputError, match="'output_dim': expected an int >= 1"):
        build_model("mlp", input_shape=(3,), output_dim=0)


@pytest.mark.parametrize(
    ("name", "shape", "bad"),
    [
        ("cnn", (1, 8, 8), (4, 8, 8)),
        ("cnn", (2, 8, 8), (4, 3, 8, 8)),
        ("mlp", (4,), (4, 5)),
        ("lstm", (6, 3), (4, 6, 2)),
    ],
)
def test_forward_rejects_wrong_input_shape(name, shape, bad):
    net = build_model(name, input_shape=shape, output_dim=1)
    with pytest.raises(TrustmlInputError, match=f"{name} input: expected shape"):
        net(torch.zeros(bad))


def test_model_summary():
    net = build_model("cnn", input_shape=(1, 8, 8), output_dim=2, channels=(4,), hidden=5)
    net.head[0].weight.requires_grad_(False)
    summary = model_summary(net)
    total = sum(p.numel() for p in net.parameters())
    assert summary["n_parameters"] == total
    assert summary["n_trainable"] == total - net.head[0].weight.numel()
    assert summary["text"] == str(net)
    assert sum(layer["n_parameters"] for layer in summary["layers"]) == total
    conv = next(layer for layer in summary["layers"] if layer["type"] == "Conv2d")
    assert conv["name"] == "features.0"
    assert conv["parameter_shapes"] == {"weight": [4, 1, 3, 3], "bias": [4]}
    json.dumps(summary)


def test_model_summary_counts_shared_parameters_once():
    lin = nn.Linear(3, 3)
    summary = model_summary(nn.Sequential(lin, nn.ReLU(), lin))
    assert summary["n_parameters"] == 12
