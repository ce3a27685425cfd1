"""tm.Laplace: laplace-torch around a trained network (issue 17 item 2).

The common contract is checked in ``test_contract.py``; here, properties of the Laplace
approximation itself, and the same numbers as calling laplace-torch directly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from laplace import Laplace as LaplaceTorch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trustml.exceptions import TrustmlInputError
from trustml.uq import DeepEnsemble, Laplace

TRAIN = {"epochs": 30, "batch_size": 16, "lr": 1e-2, "progress": False}


def net(d_in: int = 1, out: int = 1, hidden: int = 16, act: type[nn.Module] = nn.Tanh) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), act(), nn.Linear(hidden, out))


def regression(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    return x, 3.0 + 2.0 * np.sin(2 * x) + 0.1 * rng.normal(size=(n, 1))


def classification(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(size=(n, 2)).astype(np.float32) + 3.0 * np.eye(3, 2, dtype=np.float32)[y]
    return x, y


def map_mean(la: Laplace, x: np.ndarray) -> np.ndarray:
    """The MAP network's prediction in data units."""
    with torch.no_grad():
        f = la.model_(torch.as_tensor(x)).double().numpy()
    return f * la.target_scale_ + la.target_shift_


# -- the predictive -----------------------------------------------------------------------
@pytest.mark.parametrize("subset", ["last_layer", "all"])
def test_the_glm_predictive_mean_is_the_map_prediction(subset):
    x, y = regression()
    la = Laplace(net(), subset_of_weights=subset, samples=10, seed=0).fit(x, y, **TRAIN)
    pred = la.predict(x)
    np.testing.assert_allclose(pred.mean, map_mean(la, x), rtol=1e-6, atol=1e-6)
    assert np.all(pred.epistemic_var > 0)
    noise = np.broadcast_to((la.sigma_noise_ * la.target_scale_) ** 2, pred.mean.shape)
    np.testing.assert_allclose(pred.aleatoric_var, noise)


def test_the_draws_spread_less_as_the_prior_precision_grows():
    x, y = regression()
    spreads = [
        Laplace(net(), hessian="diag", prior_precision=p, samples=20, seed=0)
        .fit(x, y, **TRAIN)
        .predict(x)
        .epistemic_var
        for p in (0.01, 1.0, 100.0)
    ]
    assert np.all(spreads[0] > spreads[1]) and np.all(spreads[1] > spreads[2])


def test_the_epistemic_variance_grows_away_from_the_data():
    x, y = regression(n=80)
    la = Laplace(net(act=nn.ReLU), subset_of_weights="all", hessian="full", samples=200, seed=0)
    pred = la.fit(x, y, **TRAIN).predict(np.array([[0.0], [0.5], [4.0], [-4.0]], np.float32))
    inside, outside = pred.epistemic_var[:2].max(), pred.epistemic_var[2:].min()
    assert outside > 10 * inside


def test_classification_draws_are_distributions_around_the_map_logits():
    x, y = classification()
    la = Laplace(net(2, 3), task="classification", samples=10, seed=0).fit(x, y, **TRAIN)
    pred = la.predict(x)
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0, atol=1e-9)
    with torch.no_grad():
        logits = la.model_(torch.as_tensor(x)).double().numpy()
    # mirrored draws of a last layer: the draws' mean logit is the MAP logit
    np.testing.assert_allclose(pred.member_logits.mean(axis=0), logits, rtol=1e-5, atol=1e-5)
    assert np.mean(pred.probs.argmax(1) == y) > 0.8
    assert pred.mutual_information.max() > 0


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_marglik_tunes_the_prior_and_raises_the_marginal_likelihood(task):
    x, y = regression() if task == "regression" else classification()
    model = net() if task == "regression" else net(2, 3)
    la = Laplace(model, task=task, samples=4, seed=0).fit(x, y, **TRAIN)
    t = la.tuning_
    assert t["prior_precision"] != pytest.approx(1.0, rel=1e-3)
    assert t["log_marginal_likelihood"] > t["log_marginal_likelihood_initial"]
    assert t["log_marginal_likelihood"] == pytest.approx(
        float(la.laplace_.log_marginal_likelihood()), rel=1e-6
    )
    if task == "regression":  # the noise is tuned too, from its maximum-likelihood value
        assert 0 < t["sigma_noise"] < 1


def test_gridsearch_picks_a_grid_value_on_held_out_data():
    x, y = regression()
    la = Laplace(net(), prior_precision="gridsearch", pred="nn", samples=6, seed=0)
    la.fit(x, y, **TRAIN)
    assert len(la.validation_indices_) == round(0.1 * len(x))
    exponent = np.log10(la.tuning_["prior_precision"])
    assert -4 <= exponent <= 4 and abs(exponent / 0.4 - round(exponent / 0.4)) < 1e-4
    with pytest.raises(ValueError, match="validation > 0"):
        Laplace(net(), prior_precision="gridsearch", seed=0).fit(x, y, validation=0.0, **TRAIN)


# -- the same numbers as laplace-torch ----------------------------------------------------
@pytest.mark.parametrize("hessian", ["kron", "full"])
def test_same_numbers_as_laplace_torch_on_the_same_network(hessian):
    x, y = regression()
    la = Laplace(net(), hessian=hessian, pred="nn", samples=2000, seed=3).fit(x, y, **TRAIN)
    y_std = (y - la.target_shift_) / la.target_scale_
    data = TensorDataset(torch.as_tensor(x), torch.as_tensor(y_std, dtype=torch.float32))
    ref = LaplaceTorch(
        la.model_, "regression", subset_of_weights="last_layer", hessian_structure=hessian,
        last_layer_name=la.last_layer_,
    )  # fmt: skip
    ref.fit(DataLoader(data, batch_size=TRAIN["batch_size"]))
    ref.prior_precision = la.tuning_["prior_precision"]
    ref.sigma_noise = la.tuning_["sigma_noise"]
    assert float(ref.log_marginal_likelihood()) == pytest.approx(
        la.tuning_["log_marginal_likelihood"], rel=1e-5
    )
    xt = torch.as_tensor(x[:8])
    # draws 0, 2, 4, ... are laplace-torch's own weight samples, from the same generator seed
    gen = torch.Generator().manual_seed(la._draw_seed)
    own = ref.predictive_samples(xt, pred_type="nn", n_samples=1000, generator=gen).numpy()
    pred = la.predict(x[:8])
    standardized = (pred.member_means - la.target_shift_) / la.target_scale_
    np.testing.assert_allclose(standardized[0::2], own, rtol=1e-4, atol=1e-4)
    # the draws' moments are laplace-torch's GLM predictive (exact mean, sampled variance)
    f_mu, f_var = ref(xt, pred_type="glm")
    np.testing.assert_allclose(standardized.mean(0), f_mu.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(standardized.var(0), f_var[:, :, 0].numpy(), rtol=0.15)


def test_the_map_network_is_deep_ensemble_member_zero():
    x, y = regression()
    la = Laplace(net(), samples=4, seed=7).fit(x, y, **TRAIN)
    ens = DeepEnsemble(net(), members=1, heteroscedastic=False, seed=7).fit(x, y, **TRAIN)
    with torch.no_grad():
        member = ens.members_[0].model(torch.as_tensor(x)).numpy()
        ours = la.model_(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(ours, member)


# -- determinism, persistence, attribution ------------------------------------------------
@pytest.mark.determinism
@pytest.mark.parametrize(
    ("subset", "hessian", "pred"), [("last_layer", "kron", "glm"), ("all", "kron", "glm"), ("all", "diag", "nn")]
)  # fmt: skip
def test_the_same_seed_gives_identical_draws(subset, hessian, pred):
    x, y = regression()

    def fitted() -> Laplace:
        return Laplace(
            net(), subset_of_weights=subset, hessian=hessian, pred=pred, samples=6, seed=11
        ).fit(x, y, **TRAIN)

    a, b = fitted(), fitted()
    np.testing.assert_array_equal(a.predict(x).member_means, b.predict(x).member_means)
    assert a.tuning_ == b.tuning_


@pytest.mark.parametrize(
    ("subset", "hessian", "pred", "task"),
    [("all", "full", "glm", "regression"), ("all", "kron", "nn", "classification")],
)
def test_save_and_load_give_identical_predictions(tmp_path, subset, hessian, pred, task):
    x, y = regression() if task == "regression" else classification()
    model = net() if task == "regression" else net(2, 3)
    la = Laplace(
        model, subset_of_weights=subset, hessian=hessian, pred=pred, task=task, samples=5, seed=2
    ).fit(x, y, **TRAIN)
    loaded = Laplace.load(la.save(tmp_path / "la.pt"), model)
    np.testing.assert_array_equal(loaded.predict(x).members, la.predict(x).members)
    assert loaded.tuning_ == la.tuning_ and loaded.history_ == la.history_
    with pytest.raises(ValueError, match="different architecture"):
        Laplace.load(tmp_path / "la.pt", net(hidden=5) if task == "regression" else net(2, 4))


@pytest.mark.parametrize("pred", ["glm", "nn"])
def test_explain_modules_are_differentiable_in_the_input(pred):
    x, y = regression()
    la = Laplace(net(), subset_of_weights="all", hessian="diag", pred=pred, samples=4, seed=0)
    la.fit(x, y, **TRAIN)
    xt = torch.as_tensor(x[:5]).requires_grad_()
    (module,) = la.explain_modules(samples=1)
    (grad,) = torch.autograd.grad(module(xt).sum(), xt)
    eps = 1e-2
    with torch.no_grad():
        fd = (module(xt + eps) - module(xt - eps)) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), fd.numpy(), rtol=1e-2, atol=1e-3)


# -- what laplace-torch cannot do ---------------------------------------------------------
def test_a_heteroscedastic_head_is_refused_naming_the_alternatives():
    x, y = regression()
    with pytest.raises(
        TrustmlInputError, match="heteroscedastic head.*D = 1 outputs.*DeepEnsemble"
    ):
        Laplace(net(out=2), seed=0).fit(x, y, **TRAIN)


def test_a_model_whose_output_is_not_a_linear_layer_is_refused_for_last_layer():
    x, y = regression()
    ends_in_tanh = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1), nn.Tanh())
    with pytest.raises(
        TrustmlInputError, match="last layer '3' is a Tanh.*subset_of_weights='all'"
    ):
        Laplace(ends_in_tanh, seed=0).fit(x, y, **TRAIN)
    la = Laplace(ends_in_tanh, subset_of_weights="all", samples=4, seed=0).fit(x, y, **TRAIN)
    assert la.predict(x).member_means.shape == (4, len(x), 1)


@pytest.mark.parametrize(
    ("subset", "hessian", "hidden", "field", "limit", "what"),
    [
        # 135k weights, 4096 outputs (a 64^2 field): a 200 GB full Hessian
        ("all", "full", 32, 64**2, 2**33, "full posterior of 135,296 weights"),
        # a 32^3 field: Jacobians of every output, 170 GB per batch of 8
        ("last_layer", "diag", 4, 32**3, 2**33, "Jacobians of 32,768 outputs"),
        # a 64^3 field with the default limit (half the memory): terabytes
        ("last_layer", "kron", 2, 64**3, None, "Jacobians of 262,144 outputs"),
    ],
)
def test_a_dense_field_output_is_refused_before_anything_is_allocated(
    subset, hessian, hidden, field, limit, what
):
    model = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, field))
    x, y = np.zeros((8, 3), np.float32), np.zeros((8, field), np.float32)
    la = Laplace(model, subset_of_weights=subset, hessian=hessian, max_memory=limit, seed=0)
    # epochs=10**9: the error must come before training (and before laplace-torch allocates)
    with pytest.raises(
        TrustmlInputError, match=f"would need about .*{what}.*nothing was allocated"
    ):
        la.fit(x, y, epochs=10**9, progress=False)
