"""An optional validation split: held out from training, calibration and test, and recorded."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol

BASE = {
    "trustml": 1,
    "name": "validation",
    "seed": 3,
    "device": "cpu",
    "data": {
        "builtin": "cosmology2d",
        "options": {"n": 200, "size": 8},
        "split": {"train": 0.5, "validation": 0.1, "calibration": 0.2, "test": 0.2},
    },
    "task": "regression",
    "model": {"builtin": "mlp", "options": {"hidden": [8]}},
    "uncertainty": {"method": "deep_ensemble", "members": 2, "train": {"epochs": 1}},
    "metrics": ["rmse"],
}


def test_the_validation_split_is_disjoint_and_sized_by_its_fraction():
    results = run_protocol(parse_protocol(copy.deepcopy(BASE)), "", write=False, progress=False).results
    data = results.summary["data"]
    assert data["splits"] == {"train": 100, "validation": 20, "calibration": 40, "test": 40}
    # every pair of splits is checked for shared samples, the validation split included
    assert set(data["duplicates"]) == {
        "train_validation", "train_calibration", "train_test",
        "validation_calibration", "validation_test", "calibration_test",
    }  # fmt: skip
    assert "validation" in data["target_stats"]


def test_the_fractions_with_a_validation_split_must_sum_to_one():
    raw = copy.deepcopy(BASE)
    raw["data"]["split"]["validation"] = 0.2
    with pytest.raises(ProtocolError, match="train \\+ validation \\+ calibration \\+ test must sum to 1"):
        parse_protocol(raw)


def test_without_validation_the_splits_are_todays():
    from trustml.data import split_indices
    from trustml.protocol._plan import _split
    from trustml.utils.seeding import child

    raw = copy.deepcopy(BASE)
    raw["data"]["split"] = {"train": 0.6, "calibration": 0.2, "test": 0.2}
    protocol = parse_protocol(raw)
    from trustml.data import load_builtin

    ds = load_builtin("cosmology2d", seed=child(3, "data"), n=200, size=8)
    want = split_indices(200, {"train": 0.6, "calibration": 0.2, "test": 0.2}, seed=child(3, "split"))
    got = _split(protocol, ds)
    assert list(got) == ["train", "calibration", "test"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
