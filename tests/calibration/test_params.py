"""Every calibrator reports its fitted numbers through ``params`` (what the runner writes to
results.json), JSON-ready, and only once fitted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special

from trustml.calibration import (
    Calibrator,
    IsotonicRecalibration,
    SplitConformal,
    TemperatureScaling,
)
from trustml.exceptions import NotFittedError
from trustml.uq import Predictive


def _regression(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, 2))
    pred = Predictive.regression(np.zeros((2, n, 2)), np.full((2, n, 2), 0.5))
    return pred, y


def _classification(n=300, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, n, 3)) * 3
    labels = np.array([rng.choice(3, p=p) for p in special.softmax(logits.mean(0), -1)])
    return Predictive.classification(member_logits=logits * 3), labels


CASES = [
    ("conformal regression", lambda: SplitConformal(alpha=0.2), _regression),
    ("conformal classification", lambda: SplitConformal(alpha=0.2, score="lac"), _classification),
    ("isotonic", IsotonicRecalibration, _regression),
    ("temperature", TemperatureScaling, _classification),
]


@pytest.mark.parametrize(("name", "make", "data"), CASES, ids=[c[0] for c in CASES])
def test_params_need_fit_then_are_json_ready(name, make, data):
    calibrator = make()
    assert isinstance(calibrator, Calibrator)
    with pytest.raises(NotFittedError, match="Call 'fit'"):
        _ = calibrator.params
    pred, y = data()
    params = calibrator.fit(pred, y).params
    assert params["n_calibration"] == len(y)
    assert json.loads(json.dumps(params)) == params
    assert pred.task in calibrator.tasks


def test_conformal_params_are_the_fitted_quantile():
    pred, y = _regression()
    conf = SplitConformal(alpha=0.2).fit(pred, y)
    assert conf.params == {"n_calibration": 200, "std_multiplier": conf.q_.tolist()}
    probs, labels = _classification()
    sets = SplitConformal(alpha=0.2, score="lac").fit(probs, labels)
    assert sets.params == {"n_calibration": 300, "score": "lac", "threshold": sets.q_}


def test_isotonic_params_count_the_knots_per_target():
    pred, y = _regression()
    iso = IsotonicRecalibration().fit(pred, y)
    assert iso.params["n_knots"] == [x.size for x, _ in iso.knots_]
    assert len(iso.params["n_knots"]) == 2 and min(iso.params["n_knots"]) >= 2


def test_temperature_params_report_the_nll_before_and_after():
    pred, labels = _classification()
    ts = TemperatureScaling().fit(pred, labels)
    assert ts.params == {
        "n_calibration": 300,
        "temperature": ts.temperature_,
        "nll_calibration_before": ts.nll_before_,
        "nll_calibration_after": ts.nll_after_,
    }
    assert ts.params["temperature"] > 1.0  # the members were made over-confident
    assert ts.params["nll_calibration_after"] <= ts.params["nll_calibration_before"]


def test_params_are_a_copy():
    pred, y = _regression()
    iso = IsotonicRecalibration().fit(pred, y)
    iso.params["n_knots"].append(0)
    assert 0 not in iso.params["n_knots"]
