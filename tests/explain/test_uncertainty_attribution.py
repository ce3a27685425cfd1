"""Attribution of predictive uncertainty (``attribute_uncertainty``) and its deletion check,
on real trustml ensembles and real Captum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _explain_fixtures import SHAPES, UserLSTM, builtin_members
from torch import nn

from trustml.explain import (
    UNCERTAINTY_QUANTITIES,
    UncertaintyAttribution,
    attribute_uncertainty,
    completeness_check,
    uncertainty_deletion_curve,
    uncertainty_quantities,
)
from trustml.explain._uncertainty_quantities import classification_quantities
from trustml.uq import DeepEnsemble, MCDropout

#: The region no training input ever fills (members keep their random weights there), and the
#: region a constructed noise head reads.
UNSEEN = np.zeros((1, 8, 8), dtype=bool)
UNSEEN[0, :3, :3] = True
NOISY = np.zeros((1, 8, 8), dtype=bool)
NOISY[0, 5:, 5:] = True


def _linear_grid_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 2))


def _grid_inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def _mass(maps: np.ndarray, region: np.ndarray) -> float:
    a = np.abs(maps)
    return float((a * region).sum() / a.sum())


@pytest.fixture(scope="module")
def unseen_region_ensemble() -> DeepEnsemble:
    """Four linear members trained on grids whose UNSEEN region is always zero: there the
    gradient is zero, so each member keeps its own random weights and they disagree on any
    input that fills the region; elsewhere they learn the same function."""
    x = _grid_inputs(256, 0)
    x[:, UNSEEN] = 0.0
    rng = np.random.default_rng(1)
    y = (x[:, 0, 3:5, :].sum(axis=(1, 2)) / 4 + 0.1 * rng.normal(size=len(x)))[:, None]
    return DeepEnsemble(_linear_grid_net, members=4, seed=0).fit(
        x, y, epochs=100, lr=1e-2, progress=False
    )


@pytest.fixture(scope="module")
def constructed_ensemble() -> DeepEnsemble:
    """Three linear heteroscedastic members with set weights: their means share every weight
    except on UNSEEN (so they disagree only there) and their noise head reads only NOISY."""
    x = _grid_inputs(32, 2)
    ens = DeepEnsemble(_linear_grid_net, members=3, seed=0)
    ens.fit(x, x.reshape(32, -1)[:, :1], epochs=1, progress=False)
    common = np.full(64, 0.2, dtype=np.float32)
    for k, member in enumerate(ens.members_):
        mean_row = common.copy()
        mean_row[UNSEEN.reshape(-1)] = 0.6 * (k - 1)
        noise_row = np.where(NOISY.reshape(-1), 0.7, 0.0).astype(np.float32)
        with torch.no_grad():
            member[1].weight.copy_(torch.as_tensor(np.stack([mean_row, noise_row])))
            member[1].bias.zero_()
    return ens


@pytest.fixture(scope="module")
def classifier() -> DeepEnsemble:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    ens = DeepEnsemble(
        lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)),
        members=3,
        task="classification",
        seed=0,
    )
    return ens.fit(x, labels, epochs=5, progress=False)


# -- the quantities are trustml's own Predictive values --------------------------------------


def test_regression_quantities_equal_the_predictives_variances(unseen_region_ensemble):
    x = _grid_inputs(6, 5)
    pred = unseen_region_ensemble.predict(x)
    for j in range(pred.mean.shape[1]):
        u = uncertainty_quantities(unseen_region_ensemble, x, target=j)
        np.testing.assert_allclose(u["epistemic"], pred.epistemic_var[:, j], rtol=1e-5)
        np.testing.assert_allclose(u["aleatoric"], pred.aleatoric_var[:, j], rtol=1e-5)
        np.testing.assert_allclose(u["total"], pred.var[:, j], rtol=1e-5)
        # The law of total variance holds exactly, not just to tolerance.
        np.testing.assert_array_equal(u["total"], u["aleatoric"] + u["epistemic"])


def test_regression_quantities_sum_over_outputs_without_a_target():
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.stack([x[:, 0], x[:, 1] * 2.0], axis=1)
    ens = DeepEnsemble(lambda: nn.Linear(3, 4), members=3, seed=1).fit(
        x, y, epochs=2, progress=False
    )
    pred = ens.predict(x)
    u = uncertainty_quantities(ens, x)
    np.testing.assert_allclose(u["total"], pred.var.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(u["epistemic"], pred.epistemic_var.sum(axis=1), rtol=1e-5)


def test_classification_quantities_equal_entropy_and_mutual_information(classifier):
    x = np.random.default_rng(4).normal(size=(10, 5)).astype(np.float32)
    pred = classifier.predict(x)
    u = uncertainty_quantities(classifier, x)
    np.testing.assert_allclose(u["total"], pred.entropy, rtol=1e-6, atol=1e-9)
    # Predictive clips the mutual information at 0; the decomposition here is exact.
    np.testing.assert_allclose(np.maximum(u["epistemic"], 0), pred.mutual_information, atol=1e-9)
    np.testing.assert_array_equal(u["epistemic"], u["total"] - u["aleatoric"])
    assert (u["epistemic"] > -1e-12).all()
    assert (u["aleatoric"] <= u["total"] + 1e-12).all()


def test_mc_dropout_uses_the_draws_its_predict_uses():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = x[:, :1] + 0.1 * rng.normal(size=(40, 1))
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 2))
    mc = MCDropout(net, samples=6, seed=0).fit(x, y, epochs=2, progress=False)
    pred = mc.predict(x[:5])
    u = uncertainty_quantities(mc, x[:5])
    np.testing.assert_allclose(u["epistemic"], pred.epistemic_var[:, 0], rtol=1e-4)
    np.testing.assert_allclose(u["aleatoric"], pred.aleatoric_var[:, 0], rtol=1e-4)
    a = attribute_uncertainty(mc, x[:3], quantity="total", n_steps=64)
    assert a.n_samples == 6 and a.strategy == "loop"  # fixed masks are drawn, not vmapped
    assert completeness_check(a).value < 0.01


def test_entropy_stays_finite_and_differentiable_for_saturated_members():
    logits = torch.tensor([[[1e4, -1e4, 0.0]], [[-1e4, 1e4, -float("inf")]]], requires_grad=True)
    q = classification_quantities(logits)
    assert all(torch.isfinite(v).all() for v in q.values())
    np.testing.assert_allclose(q["total"].detach()[0], np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(q["aleatoric"].detach()[0], 0.0, atol=1e-12)
    q["epistemic"].sum().backward()
    assert torch.isfinite(logits.grad).all()


# -- attribution ----------------------------------------------------------------------------


@pytest.mark.parametrize("quantity", UNCERTAINTY_QUANTITIES)
def test_integrated_gradients_are_complete_on_the_uncertainty(unseen_region_ensemble, quantity):
    x = _grid_inputs(4, 6)
    a = attribute_uncertainty(unseen_region_ensemble, x, quantity=quantity, n_steps=64)
    assert isinstance(a, UncertaintyAttribution)
    assert a.mean.shape == x.shape and a.members.shape == (1, *x.shape)
    gap = a.values - a.baseline_outputs[0]
    np.testing.assert_allclose(a.mean.reshape(4, -1).sum(axis=1), gap, rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(a.values, uncertainty_quantities(unseen_region_ensemble, x)[quantity],
                               rtol=1e-5)  # fmt: skip
    assert completeness_check(a).passed


def test_classification_uncertainty_is_complete(classifier):
    x = np.random.default_rng(7).normal(size=(5, 5)).astype(np.float32)
    for quantity in UNCERTAINTY_QUANTITIES:
        a = attribute_uncertainty(classifier, x, quantity=quantity, n_steps=64)
        np.testing.assert_allclose(
            a.mean.sum(axis=1), a.values - a.baseline_outputs[0], rtol=1e-3, atol=1e-6
        )


def test_epistemic_and_aleatoric_attributions_sit_where_they_come_from(constructed_ensemble):
    x = _grid_inputs(8, 8)
    epi = attribute_uncertainty(constructed_ensemble, x, quantity="epistemic")
    ale = attribute_uncertainty(constructed_ensemble, x, quantity="aleatoric")
    assert _mass(epi.mean, UNSEEN) > 0.999
    assert _mass(ale.mean, NOISY) > 0.999
    total = attribute_uncertainty(constructed_ensemble, x, quantity="total")
    # IG is linear in the explained function: total = aleatoric + epistemic, map by map.
    np.testing.assert_allclose(total.mean, epi.mean + ale.mean, rtol=1e-3, atol=1e-5)


def test_members_that_never_saw_a_region_put_their_doubt_there(unseen_region_ensemble):
    x = _grid_inputs(32, 9)
    a = attribute_uncertainty(unseen_region_ensemble, x, quantity="epistemic")
    area = float(UNSEEN.mean())
    assert _mass(a.mean, UNSEEN) > 0.6 > 4 * area
    check = uncertainty_deletion_curve(unseen_region_ensemble, x, a, seed=0)
    assert check.passed and check.value < 0.7, check.detail
    assert check.extra["quantity"] == "epistemic"
    curve = np.asarray(check.extra["attribution"])
    assert curve[0] == pytest.approx(1.0) and curve[-1] == pytest.approx(0.0, abs=1e-9)


def test_the_deletion_check_fails_for_a_random_map(unseen_region_ensemble):
    x = _grid_inputs(32, 9)
    ratios = []
    for s in range(3):
        noise = np.random.default_rng(100 + s).normal(size=x.shape)
        check = uncertainty_deletion_curve(
            unseen_region_ensemble, x, noise, quantity="epistemic", seed=s
        )
        assert not check.passed, check.value
        ratios.append(check.value)
    assert abs(float(np.mean(ratios)) - 1.0) < 0.15


def test_the_deletion_check_is_seeded(constructed_ensemble):
    x = _grid_inputs(6, 10)
    a = attribute_uncertainty(constructed_ensemble, x, quantity="aleatoric")
    first = uncertainty_deletion_curve(constructed_ensemble, x, a, seed=3)
    again = uncertainty_deletion_curve(constructed_ensemble, x, a, seed=3)
    assert first.value == again.value and first.passed
    other = uncertainty_deletion_curve(constructed_ensemble, x, a, seed=4)
    assert other.extra["random"] != first.extra["random"]


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_grids_and_sequences_of_any_rank(kind):
    shape = SHAPES[kind]
    builtin = "lstm" if kind == "sequence" else "cnn"
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    nets = builtin_members(builtin, shape, k=3, out=3)
    a = attribute_uncertainty(nets, x, quantity="epistemic", task="classification", n_steps=16)
    assert a.mean.shape == (3, *shape) and np.isfinite(a.mean).all()
    assert a.strategy == "vmap"  # the builtins stack under torch.func
    assert (np.abs(a.mean).reshape(3, -1).max(axis=1) > 0).all()
    r = attribute_uncertainty(nets, x, task="regression", target=2, method="saliency")
    assert r.mean.shape == (3, *shape) and np.isfinite(r.mean).all() and r.target == 2


def test_recurrent_members_run_one_by_one():
    torch.manual_seed(0)
    nets = [UserLSTM(3, out=2) for _ in range(3)]
    x = np.random.default_rng(1).normal(size=(2, 10, 3)).astype(np.float32)
    a = attribute_uncertainty(nets, x, quantity="total", task="classification", n_steps=32)
    assert a.strategy == "loop" and a.mean.shape == (2, 10, 3)
    np.testing.assert_allclose(a.mean.reshape(2, -1).sum(1), a.values - a.baseline_outputs[0],
                               rtol=0.02, atol=1e-6)  # fmt: skip


def test_vectorized_and_looped_members_give_the_same_maps(constructed_ensemble):
    x = _grid_inputs(3, 11)
    v = attribute_uncertainty(constructed_ensemble, x, quantity="total", strategy="vmap")
    lo = attribute_uncertainty(constructed_ensemble, x, quantity="total", strategy="loop")
    assert (v.strategy, lo.strategy) == ("vmap", "loop")
    np.testing.assert_allclose(v.mean, lo.mean, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["saliency", "occlusion", "feature_ablation", "deeplift"])
def test_other_captum_methods_explain_the_uncertainty(constructed_ensemble, method):
    x = _grid_inputs(2, 12)
    a = attribute_uncertainty(constructed_ensemble, x, quantity="epistemic", method=method)
    assert a.mean.shape == x.shape and np.isfinite(a.mean).all() and a.method == method
    if method == "deeplift":
        assert a.strategy == "loop"  # DeepLift hooks the members' modules
    # feature_ablation removes 2x2 blocks: the four that cover the region
    blocks = np.zeros_like(UNSEEN)
    blocks[0, :4, :4] = True
    assert _mass(a.mean, blocks) > 0.99


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error(constructed_ensemble, classifier):
    x = _grid_inputs(2, 13)
    with pytest.raises(ValueError, match=r"'quantity'.*\{'total', 'aleatoric', 'epistemic'\}"):
        attribute_uncertainty(constructed_ensemble, x, quantity="epistemc")
    with pytest.raises(ValueError, match="gradcam"):
        attribute_uncertainty(constructed_ensemble, x, method="gradcam")
    with pytest.raises(ValueError, match="target 5 is out of range for 1 outputs"):
        attribute_uncertainty(constructed_ensemble, x, target=5)
    with pytest.raises(ValueError, match="target must be None for classification"):
        attribute_uncertainty(classifier, np.zeros((2, 5), np.float32), target=0)
    nets = [nn.Linear(3, 1), nn.Linear(3, 1)]
    with pytest.raises(ValueError, match="task="):
        attribute_uncertainty(nets, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="'aleatoric' needs members that predict their noise"):
        attribute_uncertainty(nets, np.zeros((2, 3), np.float32), quantity="aleatoric",
                              task="regression")  # fmt: skip
    with pytest.raises(ValueError, match="needs quantity="):
        uncertainty_deletion_curve(constructed_ensemble, x, np.zeros_like(x))
