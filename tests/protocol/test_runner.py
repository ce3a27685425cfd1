import copy

import h5py
import numpy as np
import pytest

from trustml.distributed import SerialComm
from trustml.exceptions import RunFailed
from trustml.protocol import parse_protocol, run_protocol
from trustml.protocol import runner as runner_mod
from trustml.protocol._plan import make_plan

DIGITS = {
    "trustml": 1,
    "name": "digits-small",
    "seed": 3,
    "device": "cpu",
    "data": {
        "builtin": "digits",
        "options": {"n": 600},
        "split": {"train": 0.6, "calibration": 0.2, "test": 0.2},
    },
    "task": "classification",
    "model": {"builtin": "cnn", "options": {"channels": [16, 32], "hidden": 32}},
    "uncertainty": {"members": 2, "train": {"epochs": 8, "batch_size": 32, "lr": 3e-3}},
    "metrics": ["accuracy", "nll", "brier", "ece"],
    "attribution": {"n_examples": 3, "n_steps": 32},
    "acceptance": {"accuracy": {"min": 0.5}},
}


def test_classification_run_beats_the_class_frequency_baseline():
    p = parse_protocol(DIGITS)
    outcome = run_protocol(p, "", write=False, progress=False)
    s, arrays = outcome.results.summary, outcome.results.arrays
    assert s["verdict"] == "pass" and outcome.passed
    assert s["metrics"]["accuracy"]["value"] > s["baseline_metrics"]["accuracy"]["value"] + 0.4
    assert s["metrics"]["nll"]["value"] < s["baseline_metrics"]["nll"]["value"]
    assert arrays["test/probs"].shape == (120, 10)
    np.testing.assert_allclose(arrays["test/probs"].sum(1), 1.0, atol=1e-6)
    # The attributed class is the predicted one.
    np.testing.assert_array_equal(
        arrays["attribution/target_index"], arrays["test/probs"][:3].argmax(1)
    )
    assert s["attribution"]["checks"]["completeness"]["passed"]


def test_groups_never_straddle_splits_and_runs_are_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    y = np.stack([x.mean(axis=(1, 2, 3)), x.std(axis=(1, 2, 3))], axis=1)
    groups = np.repeat(np.arange(24), 5)
    with h5py.File(tmp_path / "d.h5", "w") as h:
        h["x"], h["y"], h["sim"] = x, y, groups
    raw = {
        "trustml": 1,
        "name": "groups",
        "seed": 11,
        "device": "cpu",
        "data": {"hdf5": {"path": "d.h5", "groups": "/sim"}},
        "task": "regression",
        "model": {"builtin": "mlp", "options": {"hidden": [16]}},
        "uncertainty": {"members": 2, "train": {"epochs": 2}},
        "calibration": {"method": "conformal", "alpha": 0.2},
    }
    p = parse_protocol(raw)
    plan = make_plan(p, tmp_path, SerialComm())
    owners = {}
    for name, idx in plan.splits.items():
        for g in np.unique(groups[idx]):
            assert owners.setdefault(g, name) == name, f"group {g} in {owners[g]} and {name}"
    assert sum(len(v) for v in plan.splits.values()) == n

    a = run_protocol(p, "", base_dir=tmp_path, write=False, progress=False).results
    b = run_protocol(p, "", base_dir=tmp_path, write=False, progress=False).results
    assert a.summary == b.summary
    np.testing.assert_array_equal(a.arrays["test/mean"], b.arrays["test/mean"])


def test_a_failure_mid_run_leaves_checkpoints_but_no_report(tmp_path, monkeypatch):
    p = parse_protocol(copy.deepcopy(DIGITS))

    def boom(*args, **kwargs):
        raise RuntimeError("attribution crashed")

    monkeypatch.setattr(runner_mod, "attribute_and_check", boom)
    with pytest.raises(RunFailed, match=r"^attribution failed: RuntimeError: attribution crashed; 2 finished member checkpoint\(s\) kept in .*checkpoints: run the same command again") as info:
        run_protocol(p, "", out=tmp_path / "out", progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)  # the original, for --debug
    # Nothing that looks like a report; the finished members are kept for a resume, in a
    # folder marked as trustml's (so the resume may write into it).
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == [".trustml-run", ".trustml.lock", "checkpoints"]
    assert len(list((tmp_path / "out" / "checkpoints" / "deep_ensemble").glob("member-*.pt"))) == 2
