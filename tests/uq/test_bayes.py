import subprocess
import sys

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from torch import nn

from trustml.exceptions import NotFittedError
from trustml.models import build_model
from trustml.uq import BayesianNN


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


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


def _mlp(d_in=3, d_out=2, width=8):
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, d_out))


def _fit(net, x, y, **kw):
    opts = {"epochs": 2, "batch_size": 16, "progress": False} | kw.pop("fit", {})
    return BayesianNN(net, seed=kw.pop("seed", 0), **kw).fit(x, y, **opts)


def test_svi_posterior_is_wider_in_the_gap_than_in_the_data():
    x, y = _gap_data()
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))
    bnn = BayesianNN(net, seed=0).fit(
        x, y, epochs=300, batch_size=250, lr=1e-2, particles=8, progress=False
    )
    assert bnn.svi_engine_ == "fused"
    in_gap = bnn.predict(np.linspace(-0.5, 0.5, 11)[:, None]).std.mean()
    in_data = bnn.predict(x[::20]).std.mean()
    assert in_gap >= 2.0 * in_data


@pytest.mark.parametrize("particles", [1, 3])
def test_fused_engine_takes_the_same_steps_as_pyros_elbo(particles):
    x, y = _regression()
    runs = {
        engine: _fit(_mlp(), x, y, fit={"engine": engine, "particles": particles, "epochs": 3})
        for engine in ("fused", "pyro")
    }
    assert runs["fused"].svi_engine_ == "fused" and runs["pyro"].svi_engine_ == "pyro"
    np.testing.assert_allclose(
        runs["fused"].history_["loss"], runs["pyro"].history_["loss"], rtol=1e-5
    )
    a, b = (r.predict(x, samples=5).member_means for r in runs.values())
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_nuts_runs_two_chains_that_agree_on_the_predictive_mean():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(20, 1)).astype(np.float32)
    y = np.sin(x) + 0.3 * rng.normal(size=x.shape)
    bnn = BayesianNN(_mlp(1, 2, 4), inference="nuts", prior_scale=0.5, seed=1)
    bnn.fit(x, y, num_samples=150, warmup=150, chains=2, max_tree_depth=4, progress=False)
    assert bnn.nuts_engine_ == "fused"
    assert bnn.samples_["0.weight"].shape == (2, 150, 4, 1)
    idata = bnn.to_inference_data()
    assert dict(idata.posterior.sizes)["chain"] == 2 and dict(idata.posterior.sizes)["draw"] == 150
    assert idata.sample_stats["diverging"].shape == (2, 150)
    assert dict(idata.posterior_predictive["mean"].sizes) == {
        "chain": 2, "draw": 150, "obs": 8, "target": 1
    }  # fmt: skip
    diag = bnn.diagnostics(np.linspace(-1.5, 1.5, 4)[:, None])
    assert {"r_hat", "ess_bulk", "ess_tail"} <= set(diag["summary"].columns)
    assert len(diag["summary"]) == 4 and diag["chains"] == 2
    assert diag["r_hat_max"] < 1.05
    assert diag["ess_bulk_min"] > 50
    assert diag["divergences"] == int(bnn.diverging_.sum())
    assert bnn.predict(x[:3], samples=10).member_means.shape == (10, 3, 1)


class _Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 3, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3, 4)))


def _prior_shapes(bnn, x):
    """Event shape and scale of every prior, from a Pyro trace of the fitted model."""
    xt = torch.as_tensor(x[:2])
    trace = poutine.trace(bnn.pyro_model_).get_trace(xt, None, torch.arange(2), size=2)
    return {
        name: (tuple(site["fn"].event_shape), round(float(site["fn"].base_dist.scale.max()), 6))
        for name, site in trace.iter_stochastic_nodes()
        if name not in ("data", "obs")  # the plate's subsample and the (unobserved) targets
    }


def test_conv3d_model_gets_priors_on_conv_and_linear_weights_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 1, 4, 4, 4)).astype(np.float32)
    y = x.mean(axis=(1, 2, 3, 4))[:, None]
    bnn = _fit(_Conv3dNet(), x, y, prior_scale=0.7, fit={"batch_size": 8})
    expected = {
        "conv.weight": (3, 1, 3, 3, 3),
        "conv.bias": (3,),
        "head.weight": (2, 3),
        "head.bias": (2,),
    }
    assert bnn.sites_ == expected
    assert _prior_shapes(bnn, x) == {k: (v, 0.7) for k, v in expected.items()}
    # Normalisation stays deterministic: a point-estimated parameter, not a sample site.
    assert "norm.weight" in dict(bnn.pyro_model_.net.named_parameters())
    idata = bnn.to_inference_data(samples=6)
    assert idata.posterior["conv.weight"].shape == (1, 6, 3, 1, 3, 3, 3)
    assert bnn.predict(x[:3], samples=5).member_means.shape == (5, 3, 1)


def test_builtin_lstm_gets_priors_on_its_hand_written_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 6, 2)).astype(np.float32)
    y = x.sum(axis=(1, 2))[:, None]
    net = build_model("lstm", input_shape=(6, 2), output_dim=2, hidden=4)
    bnn = _fit(net, x, y, fit={"batch_size": 12})
    expected = {
        "lstm.weight_ih_l0": (16, 2),
        "lstm.weight_hh_l0": (16, 4),
        "lstm.bias_ih_l0": (16,),
        "lstm.bias_hh_l0": (16,),
        "head.weight": (2, 4),
        "head.bias": (2,),
    }
    assert bnn.sites_ == expected
    assert {k: v[0] for k, v in _prior_shapes(bnn, x).items()} == expected
    assert bnn.svi_engine_ == "fused"
    draws = bnn.to_inference_data(samples=4).posterior
    assert draws["lstm.weight_hh_l0"].shape == (1, 4, 16, 4)
    pred = bnn.predict(x[:5], samples=4)
    assert pred.member_means.shape == (4, 5, 1) and np.all(pred.epistemic_var > 0)


def test_torch_lstm_samples_reach_the_kernel():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(2, 4, batch_first=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5, 2)).astype(np.float32)
    y = x.sum(axis=(1, 2))[:, None]
    runs = {
        engine: _fit(Seq(), x, y, bayesian_layers=["rnn"], fit={"batch_size": 12, "engine": engine})
        for engine in ("fused", "pyro")
    }
    assert set(runs["pyro"].sites_) == {
        f"rnn.{k}_l0" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    # Only the LSTM is random, so any spread over draws comes from sampled LSTM weights.
    assert np.all(runs["pyro"].predict(x[:4], samples=6).epistemic_var > 0)
    np.testing.assert_allclose(
        runs["fused"].history_["loss"], runs["pyro"].history_["loss"], rtol=1e-5
    )


def test_same_seed_same_predictions_and_other_seed_differs():
    x, y = _regression()
    a = _fit(_mlp(), x, y, seed=3).predict(x, samples=7)
    b = _fit(_mlp(), x, y, seed=3)
    c = _fit(_mlp(), x, y, seed=4).predict(x, samples=7)
    np.testing.assert_array_equal(a.member_means, b.predict(x, samples=7).member_means)
    np.testing.assert_array_equal(a.member_stds, b.predict(x, samples=7).member_stds)
    assert not np.allclose(a.member_means, c.member_means)


def test_bayesian_layers_restricts_the_random_weights():
    x, y = _regression()
    net = build_model("mlp", input_shape=(3,), output_dim=2, hidden=(8, 8))
    bnn = _fit(net, x, y, bayesian_layers=["net.6"])
    assert set(bnn.sites_) == {"net.6.weight", "net.6.bias"}
    point = dict(bnn.pyro_model_.net.named_parameters())
    assert set(point) == {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"}
    # Point-estimated layers are trained: they moved away from their initial values.
    start = BayesianNN(net, seed=0, bayesian_layers=["net.6"])
    start.fit(x, y, epochs=1, batch_size=64, lr=1e-12, progress=False)
    assert not torch.allclose(
        point["net.0.weight"], dict(start.pyro_model_.net.named_parameters())["net.0.weight"]
    )
    with pytest.raises(ValueError, match=r"'net\.9'.*net\.0"):
        _fit(net, x, y, bayesian_layers=["net.9"])


def test_classification_logits_and_probabilities():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    bnn = _fit(
        _mlp(2, 2, 16),
        x,
        labels,
        task="classification",
        fit={"epochs": 40, "batch_size": 100, "lr": 2e-2},
    )
    pred = bnn.predict(x, samples=20)
    assert pred.member_logits.shape == (20, 300, 2)
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0, atol=1e-6)
    assert (pred.probs.argmax(axis=1) == labels).mean() > 0.9
    assert bnn.explain_modules(samples=3)[0](torch.as_tensor(x[:4])).shape == (4, 2)


def test_lowrank_guide_trains_with_pyros_elbo():
    x, y = _regression()
    bnn = _fit(_mlp(), x, y, guide="lowrank", fit={"epochs": 3})
    assert bnn.svi_engine_ == "pyro"
    assert type(bnn.guide_).__name__ == "AutoLowRankMultivariateNormal"
    assert np.all(bnn.predict(x[:4], samples=5).epistemic_var > 0)


def test_explain_modules_are_the_predictive_members():
    x, y = _regression()
    bnn = _fit(_mlp(), x, y)
    pred = bnn.predict(x[:6], samples=4)
    modules = bnn.explain_modules(samples=4)
    with torch.no_grad():
        means = np.stack([m(torch.as_tensor(x[:6])).double().numpy() for m in modules])
        stds = np.stack(
            [
                m(torch.as_tensor(x[:6])).double().numpy()
                for m in bnn.explain_modules(samples=4, output="std")
            ]
        )
    np.testing.assert_allclose(means, pred.member_means, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stds, pred.member_stds, rtol=1e-5, atol=1e-6)


def test_svi_inference_data_holds_guide_draws():
    x, y = _regression()
    bnn = _fit(_mlp(), x, y)
    idata = bnn.to_inference_data(samples=9)
    assert idata.posterior["0.weight"].shape == (1, 9, 8, 3)
    assert dict(idata.posterior_predictive["std"].sizes) == {
        "chain": 1,
        "draw": 9,
        "obs": 8,
        "target": 1,
    }
    assert (
        idata.posterior.attrs["inference"] == "svi" and idata.posterior.attrs["engine"] == "fused"
    )
    diag = bnn.diagnostics()
    assert diag["divergences"] == 0 and diag["draws"] == 100


def test_errors_name_the_parameter_and_the_valid_values():
    x, y = _regression()
    with pytest.raises(ValueError, match=r"'inference'.*\{'svi', 'nuts'\}.*'mcmc'"):
        _fit(_mlp(), x, y, inference="mcmc")
    with pytest.raises(ValueError, match=r"'guide'.*\{'normal', 'lowrank'\}"):
        _fit(_mlp(), x, y, guide="flow")
    with pytest.raises(ValueError, match=r"'engine'.*'auto', 'fused', 'pyro'"):
        _fit(_mlp(), x, y, fit={"engine": "jit"})
    bad_scale = r"'prior_scale' parameter of BayesianNN must be a float > 0\. Got 0\.0 instead"
    with pytest.raises(ValueError, match=bad_scale):
        _fit(_mlp(), x, y, prior_scale=0.0)
    with pytest.raises(TypeError, match=r"\['num_samples'\] do not apply to inference='svi'"):
        _fit(_mlp(), x, y, fit={"num_samples": 10})
    with pytest.raises(ValueError, match="bayesian_layers needs inference='svi'"):
        _fit(_mlp(), x, y, inference="nuts", bayesian_layers=["0"])
    with pytest.raises(ValueError, match="2\\*D = 2"):
        _fit(_mlp(d_out=3), x, y)
    with pytest.raises(NotFittedError, match="Call 'fit'"):
        BayesianNN(_mlp()).predict(x)


def test_import_trustml_does_not_import_pyro():
    code = (
        "import sys, trustml, trustml.uq\n"
        "from trustml.uq import DeepEnsemble, Predictive\n"
        "assert 'pyro' not in sys.modules, 'pyro imported'\n"
        "from trustml.uq import BayesianNN\n"
        "assert 'pyro' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class _Dataset:
    """A ``trustml.data``-style dataset: ``read(indices) -> (x, y)``."""

    def __init__(self, x, y):
        self.x, self.y, self.reads = x, y, 0

    def __len__(self):
        return len(self.x)

    def read(self, idx):
        self.reads += 1
        return self.x[idx], self.y[idx]


def test_fit_reads_datasets_and_data_loaders_like_arrays():
    x, y = _regression()
    arrays = _fit(_mlp(), x, y)
    data = _Dataset(x, y)
    from_dataset = _fit(_mlp(), data, None)
    assert data.reads > 4  # minibatch by minibatch
    np.testing.assert_allclose(
        from_dataset.predict(x, samples=4).member_means,
        arrays.predict(x, samples=4).member_means,
        atol=1e-6,
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), batch_size=16
    )
    assert _fit(_mlp(), loader, None).predict(loader, samples=3).member_means.shape == (3, 64, 1)
    with pytest.raises(ValueError, match="NUTS evaluates all the data at once"):
        BayesianNN(_mlp(), inference="nuts").fit(loader, progress=False)
