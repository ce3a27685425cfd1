import numpy as np
import pytest
import torch
from torch import nn

from trustml.exceptions import NotFittedError
from trustml.uq import DeepEnsemble


def _mlp(d_in=1, d_out=2):
    return nn.Sequential(nn.Linear(d_in, 32), nn.Tanh(), nn.Linear(32, d_out))


@pytest.fixture(scope="module")
def hetero_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(800, 1)).astype(np.float32)
    noise = 0.05 + 0.3 * (x[:, :1] > 0)  # noisier on the right half
    y = np.sin(x) + noise * rng.normal(size=(800, 1))
    return x, y, noise


def test_same_seed_same_predictions_and_different_seed_differs(hetero_data):
    x, y, _ = hetero_data
    a = DeepEnsemble(_mlp, members=2, seed=3).fit(x, y, epochs=2, progress=False).predict(x)
    b = DeepEnsemble(_mlp, members=2, seed=3).fit(x, y, epochs=2, progress=False).predict(x)
    c = DeepEnsemble(_mlp, members=2, seed=4).fit(x, y, epochs=2, progress=False).predict(x)
    np.testing.assert_array_equal(a.member_means, b.member_means)
    assert not np.allclose(a.member_means, c.member_means)


def test_member_k_depends_on_its_seed_child_only(hetero_data):
    # Member 0 of a 2-member and a 3-member ensemble with the same seed are identical.
    x, y, _ = hetero_data
    two = DeepEnsemble(_mlp, members=2, seed=9).fit(x, y, epochs=1, progress=False).predict(x)
    three = DeepEnsemble(_mlp, members=3, seed=9).fit(x, y, epochs=1, progress=False).predict(x)
    np.testing.assert_array_equal(two.member_means[:2], three.member_means[:2])


def test_learns_heteroscedastic_noise(hetero_data):
    x, y, noise = hetero_data
    ens = DeepEnsemble(_mlp, members=3, seed=0).fit(x, y, epochs=60, lr=5e-3, progress=False)
    p = ens.predict(x)
    rmse = float(np.sqrt(np.mean((p.mean - y) ** 2)))
    assert rmse < 0.3
    left = np.sqrt(p.aleatoric_var[x[:, 0] < -0.5]).mean()
    right = np.sqrt(p.aleatoric_var[x[:, 0] > 0.5]).mean()
    assert right > 2.5 * left  # true ratio 0.35 / 0.05 = 7
    lo, hi = p.interval(0.9)
    assert 0.8 < np.mean((y >= lo) & (y <= hi)) < 0.97


def test_homoscedastic_members_learn_one_noise_level_per_target():
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, size=(600, 1)).astype(np.float32)
    y = np.concatenate([np.sin(x), 0.5 * x], axis=1) + [0.1, 0.4] * rng.normal(size=(600, 2))
    ens = DeepEnsemble(lambda: _mlp(1, 2), members=2, seed=0, heteroscedastic=False)
    p = ens.fit(x, y, epochs=60, lr=5e-3, progress=False).predict(x)
    assert tuple(ens.members_[0].log_std.shape) == (2,)
    # one std per member and dimension, the same for every sample
    sd = p.member_stds
    np.testing.assert_allclose(sd, np.broadcast_to(sd[:, :1], sd.shape), rtol=1e-6)
    np.testing.assert_allclose(sd[:, 0], [[0.1, 0.4]] * 2, rtol=0.25)
    with pytest.raises(ValueError, match="homoscedastic regression member must output D = 2"):
        DeepEnsemble(lambda: _mlp(1, 4), members=2, heteroscedastic=False).fit(
            x, y, epochs=1, progress=False
        )


def test_epistemic_variance_grows_far_from_the_training_inputs():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, size=(400, 1)).astype(np.float32)
    y = np.sin(3 * x) + 0.1 * rng.normal(size=(400, 1))

    def relu_net():
        return nn.Sequential(
            nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
        )

    ens = DeepEnsemble(relu_net, members=5, seed=1)
    ens.fit(x, y, epochs=40, lr=1e-2, progress=False)
    inside = ens.predict(np.linspace(-0.9, 0.9, 50, dtype=np.float32)[:, None]).epistemic_var
    far = np.concatenate([np.linspace(-6, -4, 25), np.linspace(4, 6, 25)]).astype(np.float32)
    outside = ens.predict(far[:, None]).epistemic_var
    assert outside.mean() > 10 * inside.mean()  # about 1700x here


def test_progress_bar_reports_epochs(hetero_data, capsys):
    x, y, _ = hetero_data
    DeepEnsemble(_mlp, members=2, seed=0).fit(x, y, epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "deep ensemble" in err and "2/2" in err and "loss=" in err
    DeepEnsemble(_mlp, members=2, seed=0).fit(x, y, epochs=2, progress=False)
    assert "deep ensemble" not in capsys.readouterr().err


def test_classification_probs_are_distributions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    ens = DeepEnsemble(lambda: _mlp(2, 2), members=2, task="classification", seed=0)
    p = ens.fit(x, y, epochs=30, lr=1e-2, progress=False).predict(x)
    np.testing.assert_allclose(p.probs.sum(axis=1), 1.0, atol=1e-6)
    assert (p.probs.argmax(1) == y).mean() > 0.9


def test_module_instance_is_reinitialised_per_member(hetero_data):
    x, y, _ = hetero_data
    ens = DeepEnsemble(_mlp(), members=2, seed=0).fit(x, y, epochs=1, progress=False)
    w0, w1 = (m[0].weight.detach() for m in ens.members_)
    assert not torch.equal(w0, w1)


def test_errors():
    with pytest.raises(NotFittedError, match="fit"):
        DeepEnsemble(_mlp).predict(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="2\\*D = 2"):
        DeepEnsemble(lambda: _mlp(1, 3), members=2).fit(
            np.zeros((4, 1)), np.zeros((4, 1)), epochs=1, progress=False
        )
    with pytest.raises(ValueError, match="'task' parameter of DeepEnsemble"):
        DeepEnsemble(_mlp, task="regresion").fit(np.zeros((4, 1)), np.zeros((4, 1)))
    with pytest.raises(TypeError, match="nn.Module"):
        DeepEnsemble(lambda: 3, members=2).fit(np.zeros((4, 1)), np.zeros((4, 1)), progress=False)
    with pytest.raises(ValueError, match="'vectorize' parameter of DeepEnsemble must be one of"):
        DeepEnsemble(_mlp, vectorize="yes").fit(np.zeros((4, 1)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="patience .* needs a validation fraction"):
        DeepEnsemble(_mlp).fit(np.zeros((4, 1)), np.zeros((4, 1)), patience=2)
    bad_fraction = r"'validation' parameter of DeepEnsemble\.fit must be a float in \[0, 1\)"
    with pytest.raises(ValueError, match=bad_fraction):
        DeepEnsemble(_mlp).fit(np.zeros((4, 1)), np.zeros((4, 1)), validation=1.5)
    with pytest.raises(ValueError, match="x and y differ in length"):
        DeepEnsemble(_mlp).fit(np.zeros((4, 1)), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="class labels in 0..1"):
        DeepEnsemble(lambda: _mlp(1, 2), task="classification").fit(
            np.zeros((4, 1)), np.array([0, 1, 2, 0]), progress=False
        )


def test_member_module_returns_mean_in_data_units(hetero_data):
    x, y, _ = hetero_data
    ens = DeepEnsemble(_mlp, members=2, seed=0).fit(x, 100.0 + 10.0 * y, epochs=5, progress=False)
    p = ens.predict(x[:10])
    with torch.no_grad():
        m1 = ens.member_module(1)(torch.as_tensor(x[:10])).double().numpy()
    np.testing.assert_allclose(m1, p.member_means[1], rtol=1e-5)
