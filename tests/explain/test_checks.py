"""Sanity and faithfulness checks on a network trained on a task with a known relevant region:
localization, randomization, deletion/insertion, infidelity, sensitivity, JSON results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _explain_fixtures import Ensemble, builtin_members
from torch import nn

from trustml.explain import (
    CheckResult,
    attribute,
    completeness_check,
    deletion_curve,
    infidelity,
    insertion_curve,
    localization,
    randomization_test,
    sensitivity,
)


@pytest.fixture(scope="module")
def ig(region_ensemble):
    ens, x, y, _ = region_ensemble
    return attribute(ens, x, method="integrated_gradients", target=y, n_steps=32)


def test_attribution_mass_concentrates_in_the_region_the_label_depends_on(region_ensemble, ig):
    _, _, _, mask = region_ensemble
    check = localization(ig, mask)
    area = check.extra["area_share"]
    assert area == pytest.approx(25 / 256)
    assert check.value > 3 * area and check.passed
    assert check.extra["lift"] == pytest.approx(check.value / area)
    # A map that ignores the region only gets about the area share.
    rng = np.random.default_rng(0)
    noise = localization(rng.random(ig.mean.shape), mask)
    assert noise.value == pytest.approx(area, abs=0.02) and not noise.passed


def test_localization_of_exact_and_absolute_relevance():
    a = np.zeros((2, 1, 4, 4))
    a[:, 0, :2, :2] = 1.0
    a[1, 0, 3, 3] = -3.0
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :2, :2] = True
    assert localization(a, mask).extra["mass"] == [1.0, 1.0]
    assert localization(a, mask, relevance="absolute").extra["mass"] == [1.0, pytest.approx(4 / 7)]
    with pytest.raises(ValueError, match="does not broadcast"):
        localization(a, np.ones((3, 3), bool))


def test_saliency_of_a_trained_network_does_not_survive_randomization(region_ensemble):
    ens, x, y, _ = region_ensemble
    check = randomization_test(ens, x[:16], method="saliency", target=y[:16])
    e = check.extra
    assert check.passed and check.value < 0.5 and check.comparison == "<"
    assert e["stages"] == ["original", "head.3", "head.0", "features.3", "features.0"]
    assert e["spearman_abs"][0] == 1.0 and e["spearman_abs"][-1] == check.value
    assert len(e["spearman"]) == len(e["spearman_abs_std"]) == len(e["stages"])
    # The model itself is untouched.
    again = attribute(ens, x[:16], method="saliency", target=y[:16])
    first = attribute(ens, x[:16], method="saliency", target=y[:16])
    np.testing.assert_array_equal(again.members, first.members)


def test_a_model_independent_explainer_is_flagged(region_ensemble):
    ens, x, y, _ = region_ensemble

    def edge_detector(module, inputs, target):  # looks plausible, ignores the model
        return (inputs - inputs.roll(1, dims=-1)).abs().detach()

    check = randomization_test(ens, x[:8], method=edge_detector, target=y[:8], max_stages=2)
    assert not check.passed and check.value == pytest.approx(1.0)
    assert len(check.extra["stages"]) == 3


def test_randomization_is_seeded():
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    a = randomization_test(net, x, seed=3)
    b = randomization_test(net, x, seed=3)
    c = randomization_test(net, x, seed=4)
    assert a.extra["spearman_abs"] == b.extra["spearman_abs"] != c.extra["spearman_abs"]


def test_deletion_and_insertion_of_a_faithful_explainer_beat_random_order(region_ensemble, ig):
    ens, x, y, _ = region_ensemble
    deletion = deletion_curve(ens, x, ig, target=y, steps=10)
    insertion = insertion_curve(ens, x, ig, target=y, steps=10)
    for check in (deletion, insertion):
        e = check.extra
        assert check.passed and check.value > 0.2 and check.comparison == ">="
        assert len(e["fraction"]) == len(e["attribution"]) == len(e["random"]) == 11
    d, i = deletion.extra, insertion.extra
    assert d["attribution"][0] == pytest.approx(1.0) and d["attribution"][-1] == pytest.approx(0.0)
    assert i["attribution"][0] == pytest.approx(0.0) and i["attribution"][-1] == pytest.approx(1.0)
    assert d["auc_attribution"] < d["auc_random"]
    # The reversed ranking removes the least relevant features first: worse than random.
    reverse = deletion_curve(ens, x, -ig.mean, target=y, steps=10)
    assert reverse.value < 0 and not reverse.passed


def test_deletion_curve_of_a_linear_model_is_exact():
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    x = np.ones((1, 4), dtype=np.float32)
    check = deletion_curve(lin, x, np.array([[4.0, 3.0, 2.0, 1.0]]), target=0, steps=4)
    np.testing.assert_allclose(check.extra["attribution"], [1.0, 0.6, 0.3, 0.1, 0.0])


def test_infidelity_prefers_the_gradient_under_gaussian_perturbations(region_ensemble):
    ens, x, y, _ = region_ensemble
    grad = attribute(ens, x[:16], method="saliency", target=y[:16], abs=False)
    good = infidelity(ens, x[:16], grad, target=y[:16], noise_scale=0.02)
    noise = np.random.default_rng(0).normal(size=grad.mean.shape)
    bad = infidelity(ens, x[:16], noise, target=y[:16], noise_scale=0.02)
    assert good.passed and good.value < 0.1
    assert not bad.passed and bad.value > 0.8
    assert len(good.extra["per_example"]) == 16


def test_sensitivity_is_relative_and_grows_with_the_radius(region_ensemble):
    ens, x, y, _ = region_ensemble
    small = sensitivity(ens, x[:8], method="saliency", target=y[:8], radius=0.001)
    large = sensitivity(ens, x[:8], method="saliency", target=y[:8], radius=0.2)
    assert 0 <= small.value < large.value
    assert small.passed and small.comparison == "<="
    members = builtin_members("cnn", (1, 8, 8))
    xs = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)
    ig = sensitivity(
        Ensemble(members), xs, target=np.array([0, 1, 2]), n_steps=8, n_perturb_samples=2
    )
    assert np.isfinite(ig.value) and len(ig.extra["per_example"]) == 3


def test_completeness_check_fails_for_a_broken_attribution():
    lin = nn.Linear(4, 1)
    a = attribute(lin, np.ones((2, 4), dtype=np.float32), target=0)
    broken = type(a)(a.members * 2.0, a.outputs, a.baseline_outputs, a.convergence_delta, a.method)
    assert completeness_check(a).passed
    assert not completeness_check(broken).passed


def test_check_results_are_json_friendly(region_ensemble, ig):
    _, _, _, mask = region_ensemble
    checks = [completeness_check(ig), localization(ig, mask)]
    checks.append(
        CheckResult("x", float("nan"), 0.5, False, "could not compute", "<", {"a": np.arange(2)})
    )
    for c in checks:
        d = c.as_dict()
        assert json.loads(json.dumps(d, allow_nan=False)) == d
        assert {"name", "value", "threshold", "passed", "detail", "comparison", "extra"} <= set(d)
    assert checks[-1].as_dict()["value"] is None and checks[-1].as_dict()["extra"] == {"a": [0, 1]}


def test_localization_leaves_out_examples_without_a_mask():
    a = np.zeros((3, 1, 4, 4))
    a[:, 0, :2, :2] = 1.0
    mask = np.zeros((3, 1, 4, 4), bool)
    mask[0, 0, :2, :2] = True  # only the first example has ground truth
    check = localization(a, mask)
    assert check.value == 1.0 and check.extra["area_share"] == 0.25
    assert (check.extra["examples_used"], check.extra["examples_without_mask"]) == (1, 2)
    assert check.passed and check.extra["mass"] == [1.0]
    none = localization(a, np.zeros_like(mask))
    assert np.isnan(none.value) and not none.passed
    assert none.as_dict()["value"] is None
