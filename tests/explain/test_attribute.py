"""attribute(): shapes over every input rank and method, the ensemble statistics, targets,
the vectorized path against the member loop, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _explain_fixtures import SHAPES, Ensemble, GaussianHead, UserLSTM, builtin_members
from torch import nn

from trustml.explain import METHODS, Attribution, attribute, completeness_check
from trustml.uq import DeepEnsemble

RNG = np.random.default_rng(0)


def _inputs(shape: tuple[int, ...], n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, *shape)).astype(np.float32)


def test_linear_model_ig_is_weight_times_input():
    lin = nn.Linear(5, 2)
    x = torch.randn(3, 5)
    a = attribute(lin, x.numpy(), target=1)
    expected = (lin.weight[1] * x).detach().numpy()
    np.testing.assert_allclose(a.members[0], expected, rtol=1e-4, atol=1e-6)
    assert a.members.shape == (1, 3, 5)
    assert np.isnan(a.rank_stability).all()  # one member: no pairs


def _applies(method: str, rank: str) -> bool:
    return not (method == "gradcam" and rank == "sequence")


@pytest.mark.parametrize("rank", list(SHAPES))
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_runs_on_every_rank(method, rank):
    shape = SHAPES[rank]
    members = builtin_members("lstm" if rank == "sequence" else "cnn", shape)
    x = _inputs(shape)
    if not _applies(method, rank):
        with pytest.raises(ValueError, match="convolutional layer"):
            attribute(Ensemble(members), x, method=method, target=1)
        return
    a = attribute(Ensemble(members), x, method=method, target=np.array([0, 2, 1]), seed=0)
    assert a.members.shape == (2, 3, *shape)
    assert np.isfinite(a.members).all() and np.abs(a.members).sum() > 0
    assert a.outputs.shape == a.baseline_outputs.shape == (2, 3)
    assert a.method == method
    assert a.strategy == ("loop" if method in ("deeplift", "gradcam") else "vmap")


@pytest.mark.parametrize(
    "method",
    [
        "integrated_gradients",
        "saliency",
        "input_x_gradient",
        "occlusion",
        "feature_ablation",
        "deeplift",
    ],
)
def test_user_nn_lstm_is_explained_member_by_member(method):
    torch.manual_seed(0)
    members = [UserLSTM(3), UserLSTM(3)]
    for m in members:
        m.train()  # attribution must switch dropout off and leave the flags as they were
    x = _inputs((10, 3))
    a = attribute(members, x, method=method, target=0)
    assert a.strategy == "loop" and a.members.shape == (2, 3, 10, 3)
    assert np.isfinite(a.members).all()
    assert all(m.training and m.lstm.training for m in members)
    with pytest.raises(ValueError, match="strategy='vmap' is not possible"):
        attribute(members, x, method=method, target=0, strategy="vmap")


def test_lstm_ig_is_complete():
    torch.manual_seed(0)
    a = attribute(UserLSTM(3), _inputs((10, 3)), target=1, n_steps=300)
    assert completeness_check(a, threshold=0.02).passed


@pytest.mark.parametrize(
    "method,kwargs",
    [
        ("integrated_gradients", {"n_steps": 16}),
        ("saliency", {}),
        ("input_x_gradient", {}),
        ("occlusion", {}),
        ("feature_ablation", {"feature_mask": "channel"}),
    ],
)
@pytest.mark.parametrize("rank", ["1d", "2d", "3d", "sequence"])
def test_vectorized_path_equals_member_loop(method, kwargs, rank):
    shape = SHAPES[rank]
    members = builtin_members("lstm" if rank == "sequence" else "cnn", shape, k=3)
    x, t = _inputs(shape, n=4), np.array([2, 0, 1, 2])
    fast = attribute(members, x, method=method, target=t, strategy="vmap", **kwargs)
    # A small internal_batch_size also exercises the chunking over examples and steps.
    slow = attribute(
        members, x, method=method, target=t, strategy="loop", internal_batch_size=3, **kwargs
    )
    assert fast.strategy == "vmap" and slow.strategy == "loop"
    np.testing.assert_allclose(fast.members, slow.members, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.outputs, slow.outputs, rtol=1e-5, atol=1e-6)
    if fast.convergence_delta is not None:
        np.testing.assert_allclose(fast.convergence_delta, slow.convergence_delta, atol=1e-5)


def test_ensemble_statistics_are_those_of_the_members():
    members = builtin_members("cnn", SHAPES["2d"], k=4)
    a = attribute(Ensemble(members), _inputs(SHAPES["2d"], n=5), method="saliency", abs=False)
    np.testing.assert_allclose(a.mean, a.members.mean(axis=0))
    np.testing.assert_allclose(a.std, a.members.std(axis=0))
    agree = (np.sign(a.members) == np.sign(a.members.mean(0))).mean(0)
    np.testing.assert_allclose(a.sign_agreement, agree)
    # rank_stability is the mean pairwise Spearman correlation, computed here with scipy.
    from scipy.stats import spearmanr

    flat = a.members.reshape(4, 5, -1)
    for n in range(5):
        pairs = [spearmanr(flat[i, n], flat[j, n])[0] for i in range(4) for j in range(i + 1, 4)]
        assert a.rank_stability[n] == pytest.approx(np.mean(pairs), abs=1e-10)
    # Each member's map is the map of that member alone.
    alone = attribute(members[2], _inputs(SHAPES["2d"], n=5), method="saliency", abs=False)
    np.testing.assert_allclose(a.members[2], alone.members[0], atol=1e-6)
    summary = a.summary()
    assert summary["n_members"] == 4 and 0 <= summary["sign_agreement"] <= 1


def test_identical_members_are_perfectly_stable():
    m = builtin_members("cnn", SHAPES["2d"], k=1)[0]
    a = attribute([m, m, m], _inputs(SHAPES["2d"]), method="saliency")
    np.testing.assert_allclose(a.rank_stability, 1.0)
    np.testing.assert_allclose(a.std, 0.0, atol=1e-7)
    assert (a.sign_agreement == 1).all()


@pytest.mark.parametrize("shape", [(2, 1, 12), (2, 1, 8, 8), (2, 1, 4, 6, 6)])
def test_completeness_on_nd_cnn_deep_ensemble(shape):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(shape) - 2]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
    pool = pool[len(shape) - 2]

    def make():
        return nn.Sequential(
            conv(1, 4, 3, padding=1), nn.Tanh(), pool(1), nn.Flatten(), nn.Linear(4, 2)
        )

    x = RNG.normal(size=(40, *shape[1:])).astype(np.float32)
    y = x.reshape(40, -1).mean(1, keepdims=True)
    ens = DeepEnsemble(make, members=3, seed=0).fit(x, y, epochs=2, progress=False)
    a = attribute(ens, x[:2], target=0, n_steps=200)
    assert a.members.shape == (3, *shape) and a.strategy == "vmap"
    check = completeness_check(a)
    assert check.passed and check.value < 0.05


def test_ig_completeness_within_two_percent_on_a_smooth_network():
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Softplus(), nn.Linear(32, 2)
    )
    x = _inputs((6,), n=16)
    a = attribute([net, net], x, target=1, n_steps=128)
    rel = np.abs(a.members.sum(-1) - (a.outputs - a.baseline_outputs)) / np.abs(
        a.outputs - a.baseline_outputs
    )
    assert rel.max() < 0.02
    check = completeness_check(a, threshold=0.02)
    assert check.passed and check.extra["max"] < 0.02
    np.testing.assert_allclose(
        a.convergence_delta, a.members.sum(-1) - (a.outputs - a.baseline_outputs), atol=1e-5
    )


def test_per_example_targets_select_each_examples_class():
    lin = nn.Linear(3, 4)
    x = torch.randn(4, 3)
    targets = np.array([0, 3, 1, 3])
    a = attribute(lin, x.numpy(), target=targets)
    expected = (lin.weight[torch.as_tensor(targets)] * x).detach().numpy()
    np.testing.assert_allclose(a.members[0], expected, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(
            a.outputs[0], lin(x)[torch.arange(4), targets].numpy(), rtol=1e-6
        )
    assert completeness_check(a).passed


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_callable_target_explains_the_reduced_output(strategy):
    lins = [nn.Linear(3, 4), nn.Linear(3, 4)]
    x = torch.randn(5, 3)
    a = attribute(lins, x.numpy(), target=lambda out: out[:, 1] + out[:, 3], strategy=strategy)
    for k, lin in enumerate(lins):
        expected = ((lin.weight[1] + lin.weight[3]) * x).detach().numpy()
        np.testing.assert_allclose(a.members[k], expected, rtol=1e-4, atol=1e-6)
    assert completeness_check(a).passed


def test_predicted_std_is_explained_through_the_wrappers_std_modules():
    torch.manual_seed(0)
    heads = [nn.Linear(4, 2), nn.Linear(4, 2)]  # D = 1: mean, raw scale
    ens = Ensemble(heads, std_modules=[GaussianHead(h, 1) for h in heads])
    x = _inputs((4,), n=6)
    std_attr = attribute(ens, x, output="std", target=0, n_steps=64)
    mean_attr = attribute(ens, x, output="mean", target=0)
    assert completeness_check(std_attr).passed
    with torch.no_grad():
        want = (nn.functional.softplus(heads[0](torch.as_tensor(x))[:, 1]) + 1e-6).numpy()
    np.testing.assert_allclose(std_attr.outputs[0], want, rtol=1e-6)
    assert not np.allclose(std_attr.members, mean_attr.members)
    with pytest.raises(ValueError, match="output='std'"):
        attribute(heads[0], x, output="std")
    with pytest.raises(ValueError, match="does not expose output='std'"):
        attribute(Ensemble(heads), x, output="std")


def test_stochastic_methods_are_reproducible_with_a_seed():
    members = builtin_members("cnn", SHAPES["2d"])
    x = _inputs(SHAPES["2d"])
    state = torch.random.get_rng_state()
    for method in ("smoothgrad", "gradient_shap"):
        a = attribute(members, x, method=method, seed=7)
        b = attribute(members, x, method=method, seed=7)
        np.testing.assert_array_equal(a.members, b.members)
    assert torch.equal(state, torch.random.get_rng_state())


def test_gradient_shap_draws_from_a_baseline_distribution():
    lin = nn.Linear(4, 1)
    x = _inputs((4,), n=3)
    refs = np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
    a = attribute(lin, x, method="gradient_shap", baselines=refs, n_samples=200, seed=0)
    with torch.no_grad():
        expected = lin(torch.as_tensor(refs)).mean().item()
    np.testing.assert_allclose(a.baseline_outputs, expected, rtol=1e-5)
    # For a linear model GradientSHAP is w * (x - E[b]) in expectation.
    want = lin.weight[0].detach().numpy() * (x - refs.mean(0))
    np.testing.assert_allclose(a.members[0], want, atol=0.15)


def test_feature_masks_group_features():
    members = builtin_members("cnn", (3, 8, 8))
    x = _inputs((3, 8, 8))
    a = attribute(members, x, method="feature_ablation", feature_mask="channel")
    # Every pixel of a channel shares one value: the channel is ablated as one feature.
    flat = a.members.reshape(2, 3, 3, -1)
    np.testing.assert_allclose(flat, flat[..., :1].repeat(64, axis=-1))
    region = attribute(members, x, method="feature_ablation")  # 4x4 regions of 2x2 pixels
    assert len(np.unique(region.members[0, 0].round(8))) <= 16
    per_example = np.zeros((3, 3, 8, 8), dtype=int)
    per_example[:, :, :4] = 1
    custom = attribute(members, x, method="feature_ablation", feature_mask=per_example)
    assert len(np.unique(custom.members[0, 0].round(8))) <= 2


def test_gradcam_is_upsampled_to_the_input_and_shared_by_channels():
    members = builtin_members("cnn", (2, 12, 12))
    a = attribute(members, _inputs((2, 12, 12)), method="gradcam", target=0)
    assert a.members.shape == (2, 3, 2, 12, 12)
    np.testing.assert_array_equal(a.members[:, :, 0], a.members[:, :, 1])
    assert (a.members >= 0).all()  # relu_attributions
    named = attribute(members, _inputs((2, 12, 12)), method="gradcam", layer="features.0")
    assert named.members.shape == a.members.shape


def test_chunking_does_not_change_the_result():
    members = builtin_members("cnn", SHAPES["2d"], k=3)
    x = _inputs(SHAPES["2d"], n=5)
    whole = attribute(members, x, n_steps=8, internal_batch_size=10_000)
    for rows in (2, 7):  # below K (member loop), and above it (stacked, 2 examples a pass)
        part = attribute(members, x, n_steps=8, internal_batch_size=rows)
        np.testing.assert_allclose(part.members, whole.members, rtol=1e-5, atol=1e-6)


def test_custom_explainer_runs_member_by_member():
    members = builtin_members("cnn", SHAPES["2d"])
    x = _inputs(SHAPES["2d"])

    def input_itself(module, inputs, target):
        return inputs.detach() * 2

    a = attribute(members, x, method=input_itself)
    np.testing.assert_allclose(a.members, np.stack([x * 2, x * 2]))
    assert a.method == "input_itself"


def test_attribution_is_a_frozen_dataclass():
    a = Attribution(np.ones((2, 1, 3)), np.zeros((2, 1)), np.zeros((2, 1)), None, "saliency")
    with pytest.raises(AttributeError):
        a.method = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"method": "integrated_gradient"}, KeyError, "integrated_gradients"),
        ({"method": "saliency", "n_steps": 5}, TypeError, "valid: abs"),
        ({"method": "saliency", "baselines": 0.0}, ValueError, "takes no baselines"),
        ({"strategy": "fast"}, ValueError, "'strategy' parameter"),
        ({"output": "variance"}, ValueError, "'output' parameter"),
        ({"target": "std"}, ValueError, "output='std'"),
        ({"target": [0, 1]}, ValueError, "one target per example"),
        ({"target": 0.5}, TypeError, "integer targets"),
        ({"internal_batch_size": 0}, ValueError, "internal_batch_size"),
        ({"baselines": np.zeros(3)}, ValueError, "do not broadcast"),
        ({"method": "feature_ablation", "feature_mask": "pixel"}, ValueError, "'feature_mask'"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        attribute(nn.Linear(2, 2), np.zeros((3, 2), dtype=np.float32), **kwargs)


def test_bad_model_and_inputs():
    with pytest.raises(TypeError, match="explain_modules"):
        attribute(object(), np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, \*input_shape\)"):
        attribute(nn.Linear(2, 1), np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="target=None"):
        attribute(nn.Linear(2, 2), np.zeros((1, 2), dtype=np.float32), target=None)


def test_a_wrappers_modules_are_used_as_returned():
    torch.manual_seed(0)
    noisy = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 1)).train()
    x = _inputs((4,), n=2)
    direct = [attribute(noisy, x, method="saliency").members for _ in range(2)]
    np.testing.assert_array_equal(*direct)  # eval mode: dropout off, deterministic
    assert noisy.training
    wrapped = [attribute(Ensemble([noisy]), x, method="saliency").members for _ in range(2)]
    assert not np.array_equal(*wrapped)  # the wrapper's train-mode module keeps its dropout
