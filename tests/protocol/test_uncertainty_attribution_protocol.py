"""``attribution.explain`` end to end: uncertainty maps in arrays.h5, the deletion check in
results.json and the maps in the report; a bad item exits 2 naming the key."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from trustml import results_keys as rk
from trustml.cli import main

SMALL = {
    "trustml": 1,
    "name": "unsure",
    "seed": 7,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 160, "size": 8}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4, 8], "hidden": 16}},
    "uncertainty": {"method": "deep_ensemble", "members": 2, "train": {"epochs": 2}},
    "calibration": {"method": "none"},
    "metrics": ["rmse", "nll"],
    "attribution": {
        "n_examples": 3,
        "n_steps": 16,
        "target": 1,
        "explain": ["prediction", "epistemic"],
    },  # fmt: skip
    "acceptance": {"rmse": {"min": 0.0}},
}


def _write(tmp_path, raw):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    return f


def test_uncertainty_maps_values_check_and_report_are_written(tmp_path):
    out = tmp_path / "out"
    assert main(["evaluate", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "results.json").read_text())
    entry = summary["attribution"]["uncertainty"]["epistemic"]
    assert set(summary["attribution"]["uncertainty"]) == {"epistemic"}
    assert entry["method"] == "integrated_gradients" and entry["members"] == 2
    assert "epistemic variance" in entry["target"]
    deletion = entry["checks"]["deletion"]
    assert isinstance(deletion["passed"], bool) and deletion["comparison"] == "<="
    assert deletion["value"] is None or np.isfinite(deletion["value"])
    assert deletion["extra"]["quantity"] == "epistemic"
    with h5py.File(out / "arrays.h5") as h:
        inputs = h[rk.ATTRIBUTION_INPUTS][()]
        maps = h[rk.uncertainty_maps("epistemic")][()]
        values = h[rk.uncertainty_values("epistemic")][()]
        assert rk.uncertainty_maps("aleatoric") not in h
        prediction = h[rk.attribution_maps()][()]
    assert maps.shape == (1, *inputs.shape) and maps.dtype == np.float32
    assert prediction.shape == (2, *inputs.shape)
    assert values.shape == (3,) and np.isfinite(values).all() and (values >= 0).all()
    assert np.isfinite(maps).all() and np.abs(maps).max() > 0
    assert entry["mean_value"] == pytest.approx(float(values.mean()))
    html = (out / "report.html").read_text()
    assert "Where the model is unsure" in html and "epistemic uncertainty" in html
    assert "Uncertainty maps next to prediction maps" in html


def test_without_explain_the_summary_has_no_uncertainty(tmp_path):
    raw = yaml.safe_load(yaml.safe_dump(SMALL))
    del raw["attribution"]["explain"]
    raw["attribution"]["n_examples"] = 1
    out = tmp_path / "out"
    assert main(["evaluate", str(_write(tmp_path, raw)), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert "uncertainty" not in summary["attribution"]
    with h5py.File(out / "arrays.h5") as h:
        assert "uncertainty" not in h[rk.ATTRIBUTION]
    assert "Where the model is unsure" not in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("explain", "methods", "expected"),
    [
        (["prediction", "epistemc"], None, "attribution.explain"),
        (["prediction", "epistemic", "epistemic"], None, "attribution.explain"),
        (["epistemic"], None, "attribution.explain: must list 'prediction'"),
        (["prediction", "total"], ["gradcam"], "attribution.explain"),
    ],
)
def test_a_bad_explain_item_exits_2_naming_the_key(tmp_path, capsys, explain, methods, expected):
    raw = yaml.safe_load(yaml.safe_dump(SMALL))
    raw["attribution"]["explain"] = explain
    if methods:
        raw["attribution"].update(methods=methods, checks=[])
    code = main(["evaluate", str(_write(tmp_path, raw)), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
