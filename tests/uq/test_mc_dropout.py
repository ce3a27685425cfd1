import numpy as np
import pytest
import torch
from torch import nn

from trustml.exceptions import NotFittedError
from trustml.models import build_model
from trustml.uq import MCDropout


def _gap_data(n=2000, noise=0.02):
    """sin(x) observed on [-3, -2] and [2, 3]; nothing in between."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-3, -2, n // 2), rng.uniform(2, 3, n // 2)])
    x = x[:, None].astype(np.float32)
    return x, np.sin(x) + noise * rng.normal(size=x.shape)


def _regression(n=64, d_in=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    return x, x[:, :1] - 0.5 * x[:, 1:2] + 0.1 * rng.normal(size=(n, 1))


def _net(d_in=3, d_out=2, p=0.2):
    return nn.Sequential(nn.Linear(d_in, 16), nn.ReLU(), nn.Dropout(p), nn.Linear(16, d_out))


def _fit(net, x, y, **kw):
    opts = {"epochs": 3, "batch_size": 16, "progress": False} | kw.pop("fit", {})
    return MCDropout(net, seed=kw.pop("seed", 0), **kw).fit(x, y, **opts)


def test_predictive_is_wider_in_the_gap_than_in_the_data():
    x, y = _gap_data()
    layers: list[nn.Module] = [nn.Linear(1, 64), nn.ReLU(), nn.Dropout(0.05)]
    for _ in range(3):
        layers += [nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.05)]
    mc = MCDropout(nn.Sequential(*layers, nn.Linear(64, 2)), samples=100, seed=0)
    mc.fit(x, y, epochs=150, batch_size=250, lr=1e-2, progress=False)
    in_gap = mc.predict(np.linspace(-0.5, 0.5, 11)[:, None]).std.mean()
    in_data = mc.predict(x[::20]).std.mean()
    assert in_gap >= 2.0 * in_data


def test_draws_are_deterministic_and_do_not_depend_on_the_batch_size():
    x, y = _regression()
    a = _fit(_net(), x, y, seed=5)
    b = _fit(_net(), x, y, seed=5)
    pa = a.predict(x, samples=12)
    np.testing.assert_array_equal(pa.member_means, b.predict(x, samples=12).member_means)
    np.testing.assert_allclose(
        pa.member_means, a.predict(x, samples=12, batch_size=5).member_means, atol=1e-6
    )
    assert pa.member_means.shape == (12, 64, 1)
    assert np.all(pa.epistemic_var > 0)
    other = _fit(_net(), x, y, seed=6).predict(x, samples=12)
    assert not np.allclose(pa.member_means, other.member_means)


def test_explain_modules_are_the_predictive_members():
    x, y = _regression()
    mc = _fit(_net(), x, y, samples=4)
    pred = mc.predict(x[:7])
    with torch.no_grad():
        means = np.stack([m(torch.as_tensor(x[:7])).double().numpy() for m in mc.explain_modules()])
        again = np.stack([m(torch.as_tensor(x[:2])).double().numpy() for m in mc.explain_modules()])
        stds = np.stack(
            [m(torch.as_tensor(x[:7])).double().numpy() for m in mc.explain_modules(output="std")]
        )
    np.testing.assert_allclose(means, pred.member_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again, pred.member_means[:, :2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stds, pred.member_stds, rtol=1e-5, atol=1e-6)


def test_builtin_models_with_dropout_work_and_classification_gives_distributions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    net = build_model("mlp", input_shape=(2,), output_dim=2, hidden=(16,), dropout=0.1)
    mc = _fit(net, x, labels, task="classification", samples=10, fit={"epochs": 20, "lr": 1e-2})
    pred = mc.predict(x)
    assert pred.member_logits.shape == (10, 300, 2)
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0, atol=1e-6)
    assert (pred.probs.argmax(axis=1) == labels).mean() > 0.9


def test_channelwise_dropout_drops_whole_maps():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Dropout2d(0.5), nn.Flatten(), nn.Linear(64, 2)
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 1, 4, 4)).astype(np.float32)
    mc = _fit(net, x, x.mean(axis=(1, 2, 3))[:, None], samples=3)
    module = mc.explain_modules()[0].model
    maps = module[1](module[0](torch.as_tensor(x[:2])))
    zero = (maps == 0).flatten(2).all(dim=2)
    assert zero.any() and torch.equal(zero[0], zero[1])  # the same maps for every input


def test_errors():
    x, y = _regression()
    with pytest.raises(
        ValueError, match="MCDropout needs a module with dropout layers.*it has none"
    ):
        _fit(nn.Linear(3, 2), x, y)
    no_rate = build_model("mlp", input_shape=(3,), output_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="have p = 0"):
        _fit(no_rate, x, y)
    with pytest.raises(ValueError, match=r"'task'.*\{'regression', 'classification'\}"):
        _fit(_net(), x, y, task="ranking")
    with pytest.raises(NotFittedError, match="Call 'fit'"):
        MCDropout(_net()).predict(x)
