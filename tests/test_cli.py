"""The trustml command: exit codes, one-line errors, nothing written on invalid input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from trustml.cli import main

ROOT = Path(__file__).resolve().parent.parent

SMALL = {
    "trustml": 1,
    "name": "small",
    "seed": 7,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 240, "size": 16}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4, 8], "hidden": 16}},
    "uncertainty": {
        "method": "deep_ensemble",
        "members": 2,
        "train": {"epochs": 2, "batch_size": 32},
    },
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "crps", "coverage", "interval_width"],
    "attribution": {"n_examples": 2, "n_steps": 16, "target": 1},
    "acceptance": {"coverage": {"min": 0.0}},
}


def write_protocol(tmp_path: Path, raw: dict, name: str = "p.yaml") -> Path:
    f = tmp_path / name
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    return f


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "trustml.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_help_lists_commands():
    out = run_cli("--help", cwd=ROOT)
    assert out.returncode == 0
    for cmd in ("evaluate", "init", "data"):
        assert cmd in out.stdout


def test_misspelt_top_level_key_exits_2_names_it_and_writes_nothing(tmp_path):
    raw = dict(SMALL)
    raw["uncertanity"] = raw.pop("uncertainty")
    f = write_protocol(tmp_path, raw)
    out = run_cli("evaluate", str(f), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "uncertanity" in lines[0] and "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.update(data={"hdf5": {"path": "missing.h5"}}), "missing.h5"),
        (lambda r: r.update(data={"builtin": "cosmology5d"}), "cosmology5d"),
        (lambda r: r["model"].update(options={"chanels": [4]}), "chanels"),
        (
            lambda r: r.update(
                task="classification", metrics=["accuracy"], acceptance={}, calibration={}
            ),
            "task",
        ),
        (lambda r: r.update(uncertainty={"method": "mc_dropout"}), "model.options.dropout"),
        (lambda r: r["uncertainty"].update(method="bayes_svi"), "uncertainty.members"),
        (lambda r: r["attribution"].update(target=5), "attribution.target"),
    ],
)
def test_invalid_protocol_or_data_exits_2_in_process(tmp_path, capsys, mutate, expected):
    raw = yaml.safe_load(yaml.safe_dump(SMALL))
    mutate(raw)
    f = write_protocol(tmp_path, raw)
    code = main(["evaluate", str(f), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_nan_in_hdf5_exits_2(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(60, 1, 8, 8)).astype(np.float32)
    x[17, 0, 3, 3] = np.nan
    with h5py.File(tmp_path / "d.h5", "w") as h:
        h["x"], h["y"] = x, np.zeros((60, 2), np.float32)
    raw = dict(SMALL, data={"hdf5": {"path": "d.h5"}})
    f = write_protocol(tmp_path, raw)
    assert main(["evaluate", str(f), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "d.h5" in err and "17" in err
    assert not (tmp_path / "out").exists()


def test_init_writes_a_valid_starter_and_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "protocol.yaml"
    assert main(["init", str(target)]) == 0
    text = target.read_text()
    assert text.count("#") > 10  # it is commented
    from trustml.protocol import load_protocol

    load_protocol(target)
    assert main(["init", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_data_export_round_trips(tmp_path):
    from trustml.data import HDF5Dataset, load_builtin

    out = tmp_path / "digits.h5"
    assert main(["data", "export", "digits", str(out), "--seed", "3", "--option", "n=100"]) == 0
    ds = HDF5Dataset(out)
    ref = load_builtin("digits", seed=3, n=100)
    assert ds.fingerprint() == ref.fingerprint()


@pytest.mark.slow
def test_evaluate_small_protocol_end_to_end_pass_then_fail(tmp_path):
    f = write_protocol(tmp_path, SMALL)
    out = run_cli("evaluate", str(f), "--out", "run", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    for name in ("report.html", "results.json", "manifest.json", "arrays.h5", "protocol.yaml"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    assert results["verdict"] == "pass"
    for m in SMALL["metrics"]:
        v, (lo, hi) = results["metrics"][m]["value"], results["metrics"][m]["ci"]
        assert lo <= v <= hi
    assert results["data"]["splits"] == {"train": 168, "calibration": 36, "test": 36}
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 7 and len(manifest["protocol_sha256"]) == 64
    with h5py.File(run / "arrays.h5") as h:
        assert h["test/mean"].shape == (36, 2)
        assert h["attribution/maps"].shape == (2, 2, 1, 16, 16)

    # An impossible criterion: the run finishes, the report is written, exit status 1.
    out = run_cli(
        "evaluate",
        str(f),
        "--out",
        "run2",
        "--quiet",
        "--set",
        "acceptance.coverage.min=1.01",
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stderr
    again = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert again["verdict"] == "fail"
    # Same protocol and seed -> identical numbers.
    assert again["metrics"] == results["metrics"]


@pytest.mark.slow
def test_verify_reproduces_and_detects_tampering_and_report_rebuilds(tmp_path, capsys):
    f = write_protocol(tmp_path, SMALL)
    run = tmp_path / "run"
    assert main(["evaluate", str(f), "--out", str(run), "--quiet"]) == 0
    assert main(["verify", str(run), "--quiet"]) == 0
    assert "reproduced" in capsys.readouterr().out

    results = json.loads((run / "results.json").read_text())
    results["metrics"]["rmse"]["value"] += 1e-9
    (run / "results.json").write_text(json.dumps(results))
    assert main(["verify", str(run), "--quiet"]) == 1
    assert "results.metrics.rmse.value" in capsys.readouterr().out  # the table of differences

    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").stat().st_size > 10_000

    assert main(["verify", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_console_imports_with_the_collector_paused_then_freezes_what_they_made():
    # In a fresh interpreter: freezing objects is for a process that is about to do one command.
    code = (
        "import gc\n"
        "from trustml.cli import _gc_paused\n"
        "before = gc.get_freeze_count()\n"
        "with _gc_paused():\n"
        "    assert not gc.isenabled()\n"
        "    made = [[i] for i in range(5000)]\n"
        "assert gc.isenabled(), 'collector left off'\n"
        "assert gc.get_freeze_count() >= before + 5000, gc.get_freeze_count()\n"
        "gc.disable()\n"
        "with _gc_paused():\n"
        "    pass\n"
        "assert not gc.isenabled(), 'a paused collector must stay paused'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
