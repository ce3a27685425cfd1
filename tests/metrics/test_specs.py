import dataclasses

import numpy as np
import pytest
import torch

import trustml.metrics as tmm
from trustml.exceptions import TrustmlInputError
from trustml.metrics import METRICS, MetricSpec, metric_names

NAMES = ["accuracy", "brier", "coverage", "crps", "ece", "interval_width", "mae", "nll", "rmse"]
QUANTITIES = {"mean", "std", "lower", "upper", "probs"}


def test_registered_names():
    assert METRICS.names() == NAMES
    # Registration order: a protocol's default metrics, in the order of the report's tables.
    assert metric_names("regression") == ["rmse", "mae", "nll", "crps", "coverage", "interval_width"]
    assert metric_names("classification") == ["accuracy", "nll", "brier", "ece"]
    with pytest.raises(TrustmlInputError, match="task 'segmentation'"):
        metric_names("segmentation")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError, match="Unknown metric 'rsme'; valid: accuracy, brier"):
        METRICS.get("rsme")


@pytest.mark.parametrize("name", NAMES)
def test_descriptors_are_consistent(name):
    spec = METRICS.get(name)
    assert isinstance(spec, MetricSpec) and spec.name == name and spec.description
    assert spec.tasks and set(spec.tasks) <= {"regression", "classification"}
    for task in spec.tasks:
        assert set(spec.needs(task)) <= QUANTITIES
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"
    with pytest.raises(TypeError):
        spec.impls["regression"] = None


def test_directions():
    directions = {n: METRICS.get(n).higher_is_better for n in NAMES}
    assert directions == {
        "accuracy": True,
        "brier": False,
        "coverage": None,
        "crps": False,
        "ece": False,
        "interval_width": False,
        "mae": False,
        "nll": False,
        "rmse": False,
    }


def test_compute_matches_the_functions():
    rng = np.random.default_rng(0)
    y, mean, std = rng.normal(size=30), rng.normal(size=30), rng.uniform(0.5, 1.5, 30)
    reg = {"mean": mean, "std": std, "lower": mean - std, "upper": mean + std, "probs": None}
    assert METRICS.get("rmse").compute("regression", y, **reg) == tmm.rmse(mean, y)
    assert METRICS.get("mae").compute("regression", y, **reg) == tmm.mae(mean, y)
    assert METRICS.get("nll").compute("regression", y, **reg) == tmm.nll_gaussian(mean, std, y)
    assert METRICS.get("crps").compute("regression", y, **reg) == tmm.crps_gaussian(mean, std, y)
    assert METRICS.get("coverage").compute("regression", y, **reg) == tmm.coverage(
        mean - std, mean + std, y
    )
    assert METRICS.get("interval_width").compute("regression", y, **reg) == pytest.approx(
        2 * std.mean()
    )

    probs = rng.dirichlet([1, 1, 1], size=30)
    labels = torch.as_tensor(rng.integers(0, 3, size=30))
    cls = {"probs": torch.as_tensor(probs)}
    assert METRICS.get("nll").compute("classification", labels, **cls) == tmm.nll_categorical(
        probs, labels
    )
    assert METRICS.get("accuracy").compute("classification", labels, **cls) == tmm.accuracy(
        probs, labels
    )
    assert METRICS.get("brier").compute("classification", labels, **cls) == tmm.brier(probs, labels)
    assert METRICS.get("ece").compute("classification", labels, **cls) == tmm.ece(probs, labels)


def test_wrong_task_and_missing_quantity():
    with pytest.raises(
        TrustmlInputError,
        match="'ece' does not apply to task 'regression'; it applies to: classification",
    ):
        METRICS.get("ece").compute("regression", [0.0], mean=[0.0])
    with pytest.raises(TrustmlInputError, match="'crps' \\(regression\\) needs 'std'; got mean"):
        METRICS.get("crps").compute("regression", [0.0], mean=[0.0], std=None)


def test_public_names():
    for name in tmm.__all__:
        assert hasattr(tmm, name)
    assert len(tmm.__all__) == len(set(tmm.__all__))
