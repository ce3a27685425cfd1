import numpy as np
import pytest
import torch
from torch import nn

from trustml.explain import attribute, completeness_check
from trustml.uq import DeepEnsemble


def test_linear_model_ig_is_weight_times_input():
    lin = nn.Linear(5, 2)
    x = torch.randn(3, 5)
    a = attribute(lin, x.numpy(), target=1)
    expected = (lin.weight[1] * x).detach().numpy()
    np.testing.assert_allclose(a.members[0], expected, rtol=1e-4, atol=1e-6)
    assert a.members.shape == (1, 3, 5)


@pytest.mark.parametrize("shape", [(2, 1, 12), (2, 1, 8, 8), (2, 1, 4, 6, 6)])
def test_completeness_on_nd_cnn_ensemble(shape):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(shape) - 2]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[
        len(shape) - 2
    ]

    def make():
        return nn.Sequential(
            conv(1, 4, 3, padding=1), nn.Tanh(), pool(1), nn.Flatten(), nn.Linear(4, 2)
        )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, *shape[1:])).astype(np.float32)
    y = x.reshape(40, -1).mean(1, keepdims=True)
    ens = DeepEnsemble(make, members=3, seed=0).fit(x, y, epochs=2, progress=False)
    a = attribute(ens, x[:2], target=0, n_steps=200)
    assert a.members.shape == (3, *shape)
    check = completeness_check(a)
    assert check.passed and check.value < 0.05
    assert a.std.shape == shape
    assert ((a.sign_agreement >= 0) & (a.sign_agreement <= 1)).all()


def test_completeness_check_fails_for_a_broken_attribution():
    lin = nn.Linear(4, 1)
    a = attribute(lin, np.ones((2, 4), dtype=np.float32), target=0)
    broken = type(a)(a.members * 2.0, a.outputs, a.baseline_outputs, a.convergence_delta, a.method)
    assert not completeness_check(broken).passed


def test_unknown_method_lists_valid_ones():
    with pytest.raises(KeyError, match="integrated_gradients"):
        attribute(nn.Linear(2, 1), np.zeros((1, 2), dtype=np.float32), method="integrated_gradient")


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
