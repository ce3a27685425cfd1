"""The runner with several uncertainty methods, reference predictors, shifted test sets,
duplicate detection and every attribution check (issue 7 items 2-3; issues 4-5 wiring)."""

import copy

import numpy as np
import pytest

from trustml import metrics as M
from trustml.data import split_indices
from trustml.data._hdf5 import write_hdf5
from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol
from trustml.utils.seeding import child

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 3e-3}
BASE = {
    "trustml": 1,
    "name": "methods",
    "seed": 11,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 200, "size": 8}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 16, "dropout": 0.1}},
    "uncertainty": {"method": "deep_ensemble", "members": 2, "train": TRAIN},
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "coverage"],
}


def run(raw, **kw):
    return run_protocol(parse_protocol(copy.deepcopy(raw)), "", write=False, progress=False, **kw)


@pytest.fixture(scope="module")
def compared():
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = [
        BASE["uncertainty"],
        {"method": "mc_dropout", "samples": 8, "train": TRAIN},
        {"method": "bayes_svi", "samples": 8, "bayesian_layers": ["head"], "train": TRAIN},
        {"method": "deep_ensemble", "label": "big_ensemble", "members": 3, "train": TRAIN},
    ]
    raw["acceptance"] = {"rmse@mc_dropout": {"max": 1e-6}, "coverage": {"min": 0.0}}
    raw["data"]["shifts"] = {"high_amplitude": {"options": {"n": 40, "log_amplitude": [1.5, 2.5]}}}
    return run(raw).results


def test_adding_comparisons_leaves_the_primary_method_unchanged(compared):
    alone = run(BASE).results
    assert compared.summary["metrics"] == alone.summary["metrics"]
    np.testing.assert_array_equal(compared.arrays["test/mean"], alone.arrays["test/mean"])
    # ... and the primary's numbers are its entry of the comparison table.
    assert compared.summary["methods"]["deep_ensemble"]["metrics"] == alone.summary["metrics"]


def test_every_method_is_scored_on_the_same_test_split(compared):
    s, a = compared.summary, compared.arrays
    assert list(s["methods"]) == ["deep_ensemble", "mc_dropout", "bayes_svi", "big_ensemble"]
    y = a["test/targets"]
    for label, part in s["methods"].items():
        prefix = "test" if part["primary"] else f"methods/{label}/test"
        assert part["metrics"]["rmse"]["value"] == pytest.approx(
            M.rmse(a[f"{prefix}/mean"], y), rel=1e-12
        )
        lo, hi = part["metrics"]["rmse"]["ci"]
        assert lo <= part["metrics"]["rmse"]["value"] <= hi
    assert [p["primary"] for p in s["methods"].values()] == [True, False, False, False]
    assert [p["index"] for p in s["methods"].values()] == [0, 1, 2, 3]
    assert s["methods"]["big_ensemble"]["settings"]["members"] == 3
    assert len(s["methods"]["big_ensemble"]["history"]["loss"]) == 3  # one curve per member
    assert len(s["methods"]["mc_dropout"]["history"]["loss"]) == TRAIN["epochs"]


def test_bayesian_methods_carry_arviz_diagnostics(compared):
    diag = compared.summary["methods"]["bayes_svi"]["diagnostics"]
    assert diag["inference"] == "svi" and diag["chains"] == 1 and diag["draws"] == 8  # samples: 8
    assert diag["ess_bulk_min"] > 1 and len(diag["table"]) == 4 * 2  # 4 points x 2 targets
    assert "diagnostics" not in compared.summary["methods"]["deep_ensemble"]


def test_a_criterion_naming_a_method_applies_to_that_method(compared):
    rows = {r["criterion"]: r for r in compared.summary["acceptance"]}
    assert rows["rmse@mc_dropout"]["method"] == "mc_dropout"
    assert rows["rmse@mc_dropout"]["value"] == compared.summary["methods"]["mc_dropout"]["metrics"]["rmse"]["value"]
    assert not rows["rmse@mc_dropout"]["passed"] and rows["coverage"]["method"] == "deep_ensemble"
    assert compared.summary["verdict"] == "fail"


def test_the_reference_predictor_is_the_training_climatology(compared):
    s, a = compared.summary, compared.arrays
    ref = s["reference"]["climatology"]["metrics"]
    assert s["baseline_metrics"] == ref
    # Its RMSE is that of a constant prediction: at least the test targets' std around their mean.
    y = a["test/targets"]
    assert ref["rmse"]["value"] >= M.rmse(np.broadcast_to(y.mean(axis=0), y.shape), y) - 1e-12


def test_a_shifted_test_set_is_scored_with_the_calibrated_primary_method(compared):
    shift = compared.summary["shifts"]["high_amplitude"]
    a = compared.arrays
    assert shift["n"] == 40 and a["shifts/high_amplitude/mean"].shape == (40, 2)
    assert shift["metrics"]["rmse"]["value"] == pytest.approx(
        M.rmse(a["shifts/high_amplitude/mean"], a["shifts/high_amplitude/targets"])
    )
    # Amplitudes outside the training range: log_A targets all above the training maximum.
    assert a["shifts/high_amplitude/targets"][:, 0].min() > compared.summary["data"]["target_stats"]["train"]["log_A"]["max"]
    assert shift["mean_epistemic_var"] == pytest.approx(a["shifts/high_amplitude/epistemic_var"].mean())


def test_pit_values_are_the_calibrated_predictive_cdf(compared):
    pit = compared.arrays["test/pit"]
    assert pit.shape == compared.arrays["test/targets"].shape
    assert np.all((pit >= 0) & (pit <= 1))
    # Conformal PIT and intervals agree: |2 PIT - 1| < level exactly when y is covered.
    inside = np.mean(np.abs(2 * pit - 1) < 0.8)
    assert inside == pytest.approx(compared.summary["metrics"]["coverage"]["value"], abs=1e-9)


def test_nuts_runs_several_chains_and_reports_rhat():
    raw = copy.deepcopy(BASE)
    raw["model"] = {"builtin": "mlp", "options": {"hidden": [8]}}
    raw["data"]["options"] = {"n": 120, "size": 4}
    raw["uncertainty"] = {"method": "bayes_nuts", "num_samples": 30, "warmup": 30, "chains": 2}
    s = run(raw).results.summary
    diag = s["methods"]["bayes_nuts"]["diagnostics"]
    assert (diag["chains"], diag["draws"]) == (2, 30) and diag["divergences"] >= 0
    assert diag["rhat_max"] is not None and diag["rhat_max"] >= 0.99
    assert s["uncertainty"]["chains"] == 2 and s["uncertainty"]["samples"] is None


def test_method_specific_mistakes_fail_before_training():
    raw = copy.deepcopy(BASE)
    raw["model"]["options"].pop("dropout")
    raw["uncertainty"] = {"method": "mc_dropout"}
    with pytest.raises(ProtocolError) as info:
        run(raw)
    assert info.value.key == "model.options.dropout"
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = {"method": "bayes_svi", "bayesian_layers": ["haed"]}
    with pytest.raises(ProtocolError, match="no layer of the model is named 'haed'") as info:
        run(raw)
    assert info.value.key == "uncertainty.bayesian_layers[0]"
    raw = copy.deepcopy(BASE)
    raw["model"]["options"].update(channels=[16, 32], hidden=64)  # ~ 8,000 weights
    raw["uncertainty"] = [BASE["uncertainty"], {"method": "bayes_nuts"}]
    with pytest.raises(ProtocolError, match="bayes_nuts suits small networks") as info:
        run(raw)
    assert info.value.key == "uncertainty[1].method"


def _splits(n):
    """The runner's split of ``n`` samples for BASE's seed and fractions."""
    return split_indices(
        n, {"train": 0.7, "calibration": 0.15, "test": 0.15}, seed=child(BASE["seed"], "split")
    )


def _expected_duplicates(x, splits):
    keys = {k: {x[i].tobytes() for i in v} for k, v in splits.items()}
    return {
        f"{a}_{b}": sum(x[i].tobytes() in keys[a] for i in splits[b])
        for a, b in (("train", "test"), ("train", "calibration"), ("calibration", "test"))
    }


def test_sequences_get_a_persistence_reference(tmp_path):
    # An AR(1) series cut into windows: inputs (n, t, 1), target the next value.
    rng = np.random.default_rng(0)
    n, t = 260, 6
    z = np.zeros(n + t)
    for i in range(1, n + t):
        z[i] = 0.9 * z[i - 1] + rng.normal(0, 0.3)
    x = np.stack([z[i : i + t] for i in range(n)])[..., None].astype(np.float32)
    y = z[t : n + t, None].astype(np.float32)
    write_hdf5(tmp_path / "seq.h5", x, y, input_attrs={"layout": "NTF"})
    raw = copy.deepcopy(BASE)
    raw["data"] = {"hdf5": {"path": str(tmp_path / "seq.h5")}}
    raw["model"] = {"builtin": "lstm", "options": {"hidden": 8}}
    raw["metrics"] = ["rmse", "crps"]
    s = run(raw).results.summary
    test = _splits(n)["test"]
    persistence = s["reference"]["persistence"]["metrics"]["rmse"]["value"]
    assert persistence == pytest.approx(M.rmse(x[test, -1, :], y[test]), rel=1e-6)
    # On a persistent series, persistence beats climatology.
    assert persistence < s["reference"]["climatology"]["metrics"]["rmse"]["value"]
    assert "persistence" not in run(BASE).results.summary["reference"]  # images: none


def test_duplicates_between_splits_are_counted_exactly(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 1, 4, 4)).astype(np.float32)
    x[80:] = x[0]  # a third of the samples are copies of the first one
    y = rng.normal(size=(120, 1)).astype(np.float32)
    write_hdf5(tmp_path / "d.h5", x, y)
    raw = copy.deepcopy(BASE)
    raw["data"] = {"hdf5": {"path": str(tmp_path / "d.h5")}}
    raw["model"] = {"builtin": "mlp", "options": {"hidden": [4]}}
    dup = run(raw).results.summary["data"]["duplicates"]
    expected = _expected_duplicates(x, _splits(120))
    assert dup == expected and expected["train_test"] > 0


def test_every_attribution_method_and_check_is_reported():
    raw = copy.deepcopy(BASE)
    raw["attribution"] = {
        "methods": ["integrated_gradients", "saliency", "occlusion"],
        "n_examples": 3,
        "n_steps": 16,
        "target": 1,
        "checks": ["completeness", "randomization", "deletion", "insertion", "infidelity", "sensitivity"],
    }
    res = run(raw).results
    attr, a = res.summary["attribution"], res.arrays
    assert list(attr["methods"]) == ["integrated_gradients", "saliency", "occlusion"]
    assert attr["method"] == "integrated_gradients" and attr["checks"] == attr["methods"]["integrated_gradients"]["checks"]
    np.testing.assert_array_equal(a["attribution/maps"], a["attribution/integrated_gradients/maps"])
    for method, part in attr["methods"].items():
        assert a[f"attribution/{method}/maps"].shape == (2, 3, 1, 8, 8)
        expected = {"randomization", "deletion", "insertion", "infidelity", "sensitivity"}
        if method == "integrated_gradients":
            expected.add("completeness")
        assert set(part["checks"]) == expected
        for check in part["checks"].values():
            assert isinstance(check["passed"], bool) and check["threshold"] is not None
        assert 0.0 <= part["mean_sign_agreement"] <= 1.0
    # Saliency is |gradient|: non-negative everywhere.
    assert np.all(a["attribution/saliency/maps"] >= 0)


def test_a_bayesian_run_writes_its_posterior_for_arviz(tmp_path):
    import arviz as az

    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = [BASE["uncertainty"], {"method": "bayes_svi", "samples": 6, "bayesian_layers": ["head"], "train": TRAIN}]
    run_protocol(parse_protocol(raw), "", out=tmp_path / "out", progress=False)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "posterior_bayes_svi.nc" in files and not any(f.startswith("posterior_deep") for f in files)
    idata = az.from_netcdf(tmp_path / "out" / "posterior_bayes_svi.nc")
    assert {"posterior", "posterior_predictive"} <= set(idata.groups())
    weights = [v for v in idata.posterior.data_vars if v.startswith("head")]
    assert weights and all(not v.startswith("features") for v in idata.posterior.data_vars)
    assert idata.posterior.sizes["chain"] == 1


class _FourRanks:
    """A trustml Comm as rank 0 of four ranks on one node (collectives answer locally)."""

    rank, size, local_rank = 0, 4, 0

    def allgather(self, obj):
        return [0, 1, 2, 3]


def test_oversubscribed_ranks_get_a_warning_naming_the_fix():
    import os

    import torch

    from trustml.protocol.runner import _check_threads

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        message = _check_threads(_FourRanks())
        cores = os.cpu_count() or 1
        if 2 * 4 > cores:
            assert message is not None and f"OMP_NUM_THREADS={max(1, cores // 4)}" in message
        torch.set_num_threads(1)
        expected_none = 4 <= cores
        assert (_check_threads(_FourRanks()) is None) == expected_none
    finally:
        torch.set_num_threads(threads)
