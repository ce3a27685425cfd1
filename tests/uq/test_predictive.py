import dataclasses

import arviz as az
import numpy as np
import pytest
import torch
from scipy import special, stats

from trustml.exceptions import NotFittedError
from trustml.uq import Predictive
from trustml.uq.predictive import CalibrationMap


@pytest.fixture
def mixture():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(4, 50, 2))
    sd = rng.uniform(0.2, 1.5, size=(4, 50, 2))
    return Predictive.regression(mu, sd)


def test_law_of_total_variance(mixture):
    np.testing.assert_allclose(mixture.std**2, mixture.aleatoric_var + mixture.epistemic_var)
    # The mixture's variance computed from its second moment.
    second = (mixture.member_stds**2 + mixture.member_means**2).mean(0)
    np.testing.assert_allclose(mixture.var, second - mixture.mean**2, rtol=1e-10)


def test_interval_is_mixture_quantile(mixture):
    lo, hi = mixture.interval(0.9)
    np.testing.assert_allclose(mixture.cdf(lo), 0.05, atol=1e-8)
    np.testing.assert_allclose(mixture.cdf(hi), 0.95, atol=1e-8)


def test_single_gaussian_interval_matches_scipy():
    p = Predictive.regression(np.full((1, 3, 1), 2.0), np.full((1, 3, 1), 0.5))
    lo, hi = p.interval(0.8)
    np.testing.assert_allclose(lo, stats.norm.ppf(0.1, 2.0, 0.5), atol=1e-8)
    np.testing.assert_allclose(hi, stats.norm.ppf(0.9, 2.0, 0.5), atol=1e-8)


def test_interval_differs_from_mean_pm_z_std_for_bimodal_mixture():
    # Two well-separated members: the 50 % central interval of the mixture is not mean ± z·std.
    p = Predictive.regression(np.array([[[-3.0]], [[3.0]]]), np.full((2, 1, 1), 0.1))
    lo, hi = p.interval(0.5)
    z = stats.norm.ppf(0.75)
    assert abs(hi[0, 0] - z * p.std[0, 0]) > 0.5
    assert p.cdf(hi)[0, 0] == pytest.approx(0.75, abs=1e-8)


def test_samples_have_mixture_moments(mixture):
    draws = mixture.sample(40000, seed=1)
    assert draws.shape == (40000, 50, 2)
    np.testing.assert_allclose(draws.mean(0), mixture.mean, atol=0.05)
    np.testing.assert_allclose(draws.std(0), mixture.std, rtol=0.05)
    np.testing.assert_array_equal(draws, mixture.sample(40000, seed=1))


def test_classification_entropy_decomposition():
    probs = np.array([[[0.9, 0.1]], [[0.1, 0.9]]])  # two confident members that disagree
    p = Predictive.classification(probs)
    np.testing.assert_allclose(p.probs, [[0.5, 0.5]])
    assert p.entropy[0] == pytest.approx(np.log(2))
    member_entropy = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert p.mutual_information[0] == pytest.approx(np.log(2) - member_entropy)
    agree = Predictive.classification(np.array([[[0.7, 0.3]], [[0.7, 0.3]]]))
    assert agree.mutual_information[0] == pytest.approx(0.0, abs=1e-12)


def test_wrong_task_attribute_and_bad_shapes():
    p = Predictive.classification(np.full((2, 3, 4), 0.25))
    with pytest.raises(AttributeError, match="regression"):
        _ = p.mean
    with pytest.raises(ValueError, match=r"\(K, N, D\)"):
        Predictive.regression(np.zeros((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="level"):
        Predictive.regression(np.zeros((1, 1, 1)), np.ones((1, 1, 1))).interval(1.2)


def test_arrays_are_read_only_copies_and_the_object_is_frozen():
    mu = np.zeros((2, 3, 1))
    p = Predictive.regression(mu, np.ones((2, 3, 1)))
    mu[0, 0, 0] = 5.0
    assert p.member_means[0, 0, 0] == 0.0  # a copy, not a view of the caller's array
    with pytest.raises(ValueError, match="read-only"):
        p.member_means[0, 0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.member_means = mu


def test_with_calibration_returns_a_new_object_with_a_fresh_cache(mixture):
    lo, _ = mixture.interval(0.9)

    class Shifted(CalibrationMap):
        def interval(self, pred, level):
            a, b = pred.mixture_quantile((1 - level) / 2), pred.mixture_quantile((1 + level) / 2)
            return a + 1.0, b + 1.0

    shifted = mixture.with_calibration(Shifted("shift"))
    np.testing.assert_allclose(shifted.interval(0.9)[0], lo + 1.0)
    np.testing.assert_array_equal(mixture.interval(0.9)[0], lo)
    assert mixture.calibration is None and shifted.calibration.method == "shift"
    np.testing.assert_array_equal(shifted.var, mixture.var)


def test_array_quantiles_match_scalar_ones(mixture):
    q = np.array([0.1, 0.5, 0.9])[:, None, None]
    out = mixture.mixture_quantile(q)
    assert out.shape == (3, 50, 2)
    for i, qi in enumerate((0.1, 0.5, 0.9)):
        np.testing.assert_allclose(out[i], mixture.quantile(qi), atol=1e-9)


def test_classification_from_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 10, 4))
    p = Predictive.classification(member_logits=torch.as_tensor(logits))
    np.testing.assert_allclose(p.member_probs, special.softmax(logits, -1))
    np.testing.assert_array_equal(p.member_logits, logits)
    both = Predictive.classification(special.softmax(logits, -1), member_logits=logits)
    np.testing.assert_allclose(both.probs, p.probs)
    with pytest.raises(ValueError, match=r"softmax\(member_logits\)"):
        Predictive.classification(special.softmax(logits, -1), member_logits=2 * logits)
    with pytest.raises(ValueError, match="neither"):
        Predictive.classification()
    with pytest.raises(ValueError, match="rows summing to 1"):
        Predictive.classification(np.full((1, 2, 2), 0.7))
    with pytest.raises(NotFittedError, match="SplitConformal"):
        p.predict_set()


def test_regression_inference_data_groups_dims_and_values(mixture):
    y = np.zeros((50, 2))
    idata = mixture.to_inference_data(y, seed=3)
    assert set(idata.groups()) == {"posterior_predictive", "observed_data"}
    pp = idata.posterior_predictive
    for name in ("y", "mean", "std"):
        assert pp[name].dims == ("chain", "draw", "obs", "target")
        assert pp[name].shape == (1, 4, 50, 2)
    np.testing.assert_array_equal(pp["mean"].values[0], mixture.member_means)
    np.testing.assert_array_equal(pp["std"].values[0], mixture.member_stds)
    z = (pp["y"].values[0] - mixture.member_means) / mixture.member_stds
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1  # one draw from each member
    assert idata.observed_data["y"].dims == ("obs", "target")
    assert pp.attrs["task"] == "regression" and pp.attrs["calibration"] == "none"
    assert pp.attrs["n_members"] == 4
    np.testing.assert_array_equal(
        pp["y"].values, mixture.to_inference_data(seed=3).posterior_predictive["y"].values
    )
    # "obs", not "sample": arviz.extract stacks chain and draw into a dim named "sample".
    assert az.extract(idata, group="posterior_predictive")["mean"].sizes["sample"] == 4


def test_classification_inference_data():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 30, 3))
    p = Predictive.classification(member_logits=logits)
    idata = p.to_inference_data(np.arange(30) % 3)
    pp = idata.posterior_predictive
    assert pp["probs"].dims == ("chain", "draw", "obs", "class")
    assert pp["probs"].shape == pp["logits"].shape == (1, 5, 30, 3)
    assert pp["y"].dims == ("chain", "draw", "obs") and pp["y"].shape == (1, 5, 30)
    assert set(np.unique(pp["y"].values)) <= {0, 1, 2}
    assert idata.observed_data["y"].dims == ("obs",)
    assert (
        "logits"
        not in Predictive.classification(p.member_probs).to_inference_data().posterior_predictive
    )
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        p.to_inference_data(np.full(30, 3))


def test_classification_label_draws_follow_member_probs():
    p = Predictive.classification(np.tile([[[0.2, 0.8]]], (4000, 1, 1)))
    draws = p.to_inference_data(seed=0).posterior_predictive["y"].values
    assert draws.mean() == pytest.approx(0.8, abs=0.02)


def test_member_subset_keeps_the_chosen_members_in_order_with_repeats():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6, 3))
    p = Predictive.classification(member_logits=logits)
    sub = p.member_subset([2, 0, 2])
    np.testing.assert_array_equal(sub.member_logits, logits[[2, 0, 2]])
    np.testing.assert_allclose(sub.probs, p.member_probs[[2, 0, 2]].mean(axis=0))
    means, stds = rng.normal(size=(3, 5, 2)), rng.uniform(0.5, 1.5, size=(3, 5, 2))
    r = Predictive.regression(means, stds).member_subset([1])
    np.testing.assert_array_equal(r.mean, means[1])
    np.testing.assert_allclose(r.std, stds[1])  # one member: no epistemic spread
