"""``method: laplace`` in a protocol: side by side with a deep ensemble, end to end through
the CLI, and its bad options refused with exit 2 naming the key (issue 17 item 2)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import yaml

from trustml.cli import main

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 3e-3}
BASE = {
    "trustml": 1,
    "name": "laplace-vs-ensemble",
    "seed": 5,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 160, "size": 8}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 16}},
    "uncertainty": [
        {"method": "deep_ensemble", "members": 2, "train": TRAIN},
        {"method": "laplace", "hessian": "kron", "samples": 8, "train": TRAIN},
    ],
    "calibration": {"method": "none"},
    "metrics": ["rmse", "nll", "crps", "coverage"],
}


def evaluate(tmp_path, raw) -> tuple[int, str]:
    f = tmp_path / "protocol.yaml"
    f.write_text(yaml.safe_dump(raw))
    return main(["evaluate", str(f), "--out", str(tmp_path / "out"), "--quiet"]), str(f)


def finite_metrics(part: dict) -> dict[str, float]:
    values = {name: m["value"] for name, m in part["metrics"].items()}
    assert values and all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    return values


@pytest.mark.parametrize(
    ("task", "data", "metrics"),
    [
        ("regression", BASE["data"], ["rmse", "nll", "crps", "coverage"]),
        ("classification", {"builtin": "digits", "options": {"n": 240}}, ["nll", "ece", "accuracy"]),
    ],
    ids=["cosmology2d", "digits"],
)  # fmt: skip
def test_laplace_runs_side_by_side_with_a_deep_ensemble(tmp_path, task, data, metrics):
    raw = copy.deepcopy(BASE)
    raw.update(task=task, data=data, metrics=metrics)
    if task == "classification":
        raw["model"] = {"builtin": "mlp", "options": {"hidden": [16]}}
        raw["uncertainty"][1].update(subset_of_weights="all", hessian="diag", pred="nn")
    code, _ = evaluate(tmp_path, raw)
    assert code in (0, 1)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    methods = results["methods"]
    assert list(methods) == ["deep_ensemble", "laplace"]
    ens, lap = finite_metrics(methods["deep_ensemble"]), finite_metrics(methods["laplace"])
    assert set(ens) == set(lap) == set(metrics)
    settings = methods["laplace"]["settings"]
    assert settings["samples"] == 8 and settings["prior_precision"] == "marglik"
    assert len(methods["laplace"]["history"]["loss"]) == TRAIN["epochs"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"hessian": "lowrank"}, "uncertainty[1].hessian"),
        ({"subset_of_weights": "subnetwork"}, "uncertainty[1].subset_of_weights"),
        ({"prior_precision": "cv"}, "uncertainty[1].prior_precision"),
        ({"prior_precision": -1.0}, "uncertainty[1].prior_precision"),
        ({"pred": "mc"}, "uncertainty[1].pred"),
        ({"members": 3}, "uncertainty[1].members"),
    ],
)
def test_a_bad_laplace_option_exits_2_naming_the_key(tmp_path, capsys, change, key):
    raw = copy.deepcopy(BASE)
    raw["uncertainty"][1].update(change)
    code, _ = evaluate(tmp_path, raw)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert key in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_model_without_a_linear_output_layer_exits_2_naming_the_key(tmp_path, capsys):
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = [{"method": "laplace", "train": TRAIN}]
    raw["model"] = {"factory": "tests.protocol.test_laplace_protocol:conv_head", "options": {}}
    code, _ = evaluate(tmp_path, raw)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "uncertainty.subset_of_weights" in err and "nn.Linear" in err
    assert len(err.splitlines()) == 1


def conv_head(input_shape, output_dim):
    """A model whose output comes from a convolution (no last nn.Linear)."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(input_shape[0], output_dim, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
