"""The runner's calibration methods: fitted on the calibration split, reported, and applied to
the test predictive that the metrics see."""

import h5py
import numpy as np
import pytest

from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol


def _protocol(tmp_path, task, method, **extra):
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 6)).astype(np.float32)
    if task == "regression":
        y = (x[:, :1] + 0.5 * rng.normal(size=(n, 1))).astype(np.float32)
    else:
        y = (x[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(np.int64) + (x[:, 1] > 1)
    with h5py.File(tmp_path / "d.h5", "w") as h:
        h["x"], h["y"] = x[:, None, :], y  # [N, C, L]
    return parse_protocol(
        {
            "trustml": 1,
            "name": f"{task}-{method}",
            "seed": 5,
            "device": "cpu",
            "data": {
                "hdf5": {"path": "d.h5"},
                "split": {"train": 0.5, "calibration": 0.3, "test": 0.2},
            },
            "task": task,
            "model": {"builtin": "mlp", "options": {"hidden": [16]}},
            "uncertainty": {"members": 2, "train": {"epochs": 3, "batch_size": 32, "lr": 1e-2}},
            "calibration": {"method": method, "alpha": 0.2},
            **extra,
        }
    )


def _run(tmp_path, task, method):
    p = _protocol(tmp_path, task, method)
    return run_protocol(p, "", base_dir=tmp_path, write=False, progress=False).results


def test_isotonic_regression_intervals_come_from_the_recalibrated_predictive(tmp_path):
    s = _run(tmp_path, "regression", "isotonic").summary
    cal = s["calibration"]
    assert cal["method"] == "isotonic" and cal["n_calibration"] == 90 and cal["level"] == 0.8
    assert len(cal["n_knots"]) == 1 and cal["n_knots"][0] >= 2
    curve = s["coverage_curve"]
    assert curve["empirical"] != curve["empirical_raw"]
    assert s["metrics"]["coverage"]["value"] == pytest.approx(curve["empirical"][3])  # level 0.8


def test_conformal_regression_reports_the_multiplier(tmp_path):
    s = _run(tmp_path, "regression", "conformal").summary
    assert s["calibration"]["std_multiplier"][0] > 0
    assert s["metrics"]["coverage"]["value"] == pytest.approx(s["coverage_curve"]["empirical"][3])


def test_temperature_scaling_changes_the_test_probabilities(tmp_path):
    cal = _run(tmp_path, "classification", "temperature")
    raw = _run(tmp_path, "classification", "none")
    info = cal.summary["calibration"]
    assert info["temperature"] > 0 and info["temperature"] != 1.0
    assert info["nll_calibration_after"] <= info["nll_calibration_before"]
    assert not np.allclose(cal.arrays["test/probs"], raw.arrays["test/probs"])
    np.testing.assert_allclose(cal.arrays["test/probs"].sum(1), 1.0)


def test_conformal_classification_reports_sets(tmp_path):
    r = _run(tmp_path, "classification", "conformal")
    info, sets = r.summary["calibration"], r.arrays["test/prediction_sets"]
    labels = r.arrays["test/labels"]
    assert sets.shape == (60, 3) and sets.dtype == bool
    assert info["set_coverage"] == pytest.approx(np.mean(sets[np.arange(60), labels]))
    assert 1.0 <= info["mean_set_size"] <= 3.0 and info["score"] == "aps"


@pytest.mark.parametrize(
    ("task", "method"), [("regression", "temperature"), ("classification", "isotonic")]
)
def test_method_of_the_other_task_is_refused_before_training(tmp_path, task, method):
    with pytest.raises(ProtocolError, match="calibration.method: .* available: "):
        _run(tmp_path, task, method)
