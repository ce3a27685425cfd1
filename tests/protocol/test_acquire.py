"""``trustml acquire``: picks from an HDF5 pool, streamed, resumable, and its one-line errors."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from trustml.cli import main
from trustml.data import load_builtin
from trustml.protocol import acquire as acquire_mod
from trustml.utils.rundir import write_files

MPIEXEC = Path(sys.executable).parent / "mpiexec"

CLASSIFY = {
    "trustml": 1,
    "name": "tiny",
    "seed": 3,
    "device": "cpu",
    "data": {"builtin": "digits", "options": {"n": 200}},
    "task": "classification",
    "model": {"builtin": "cnn", "options": {"channels": [4]}},
    "uncertainty": {
        "method": "deep_ensemble",
        "members": 2,
        "train": {"epochs": 1, "batch_size": 32},
    },
    "calibration": {"method": "none"},
    "metrics": ["accuracy"],
    "acceptance": {},
}
POOL_N = 300


def _write_pool(path: Path, x: np.ndarray, key: str = "x", chunk: int = 32) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=x, chunks=(min(chunk, len(x)), *x.shape[1:]))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("acquire")
    (root / "p.yaml").write_text(yaml.safe_dump(CLASSIFY, sort_keys=False))
    ds = load_builtin("digits", seed=9, n=POOL_N)
    x, _ = ds.read(np.arange(POOL_N))
    _write_pool(root / "pool.h5", x)
    code = main(["acquire", str(root / "p.yaml"), "--pool", str(root / "pool.h5"),
                 "--budget", "7", "--out", str(root / "first"), "--quiet"])  # fmt: skip
    assert code == 0
    return root


def _picks(out: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(out / "picks.h5", "r") as f:
        return f["indices"][()], f["scores"][()]


def _acquire(root: Path, out: Path, *extra: str, budget: int = 7) -> int:
    return main(["acquire", str(root / "p.yaml"), "--pool", str(root / "pool.h5"),
                 "--budget", str(budget), "--out", str(out), "--quiet", *extra])  # fmt: skip


def test_picks_are_distinct_in_the_pool_with_all_outputs(setup):
    out = setup / "first"
    idx, scores = _picks(out)
    assert idx.dtype == np.int64 and idx.shape == (7,) and scores.dtype == np.float64
    assert len(set(idx.tolist())) == 7 and idx.min() >= 0 and idx.max() < POOL_N
    assert np.all(np.diff(scores) <= 0)  # bald, top-k: most wanted first
    with h5py.File(out / "picks.h5", "r") as f:
        assert f.attrs["strategy"] == "bald" and f.attrs["budget"] == 7
        assert f.attrs["seed"] == 3 and f.attrs["pool"].endswith("pool.h5")
    with open(out / "picks.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["index", "score", "prediction", "total_uncertainty", "aleatoric",
                       "epistemic"]  # fmt: skip
    body = np.array(rows[1:], dtype=float)
    assert body.shape == (7, 6)
    assert np.array_equal(body[:, 0].astype(int), idx)
    np.testing.assert_allclose(body[:, 1], scores)
    np.testing.assert_allclose(body[:, 3], body[:, 4] + body[:, 5], rtol=1e-9)  # H = E[H] + MI
    np.testing.assert_allclose(body[:, 5], body[:, 1])  # bald score is the MI
    assert set(body[:, 2]) <= set(range(10))
    page = (out / "picks.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and str(idx[0]) in page and "http" not in page


def test_same_seed_same_picks_and_a_rerun_resumes_from_checkpoints(setup, tmp_path):
    first = setup / "first"
    ckpts = sorted((first / "checkpoints").rglob("*.pt"))
    assert len(ckpts) == 2
    before = {p: p.stat().st_mtime_ns for p in ckpts}
    assert _acquire(setup, first) == 0  # the re-run: members loaded, not retrained
    assert {p: p.stat().st_mtime_ns for p in ckpts} == before
    fresh = tmp_path / "fresh"  # trained again from scratch: the same picks
    assert _acquire(setup, fresh) == 0
    a, b = _picks(first), _picks(fresh)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_streaming_in_tiny_blocks_equals_one_pass(setup, tmp_path, monkeypatch):
    out = tmp_path / "small-blocks"
    shutil.copytree(setup / "first" / "checkpoints", out / "checkpoints")
    monkeypatch.setattr(acquire_mod, "POOL_CHUNK", 8)
    assert _acquire(setup, out) == 0
    a, b = _picks(setup / "first"), _picks(out)
    assert np.array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


@pytest.mark.parametrize("strategy", ["random", "power_bald", "batchbald", "margin"])
def test_other_strategies_pick_distinct_samples_reproducibly(setup, tmp_path, strategy):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        shutil.copytree(setup / "first" / "checkpoints", out / "checkpoints")
        assert _acquire(setup, out, "--strategy", strategy, budget=4) == 0
        runs.append(_picks(out)[0])
    assert np.array_equal(*runs) and len(set(runs[0].tolist())) == 4


def test_regression_defaults_to_epistemic_variance(tmp_path):
    raw = {**CLASSIFY, "task": "regression", "metrics": ["rmse"],
           "data": {"builtin": "cosmology2d", "options": {"n": 200, "size": 8}}}  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    x, _ = load_builtin("cosmology2d", seed=5, n=40, size=8).read(np.arange(40))
    _write_pool(tmp_path / "pool.h5", x, chunk=16)
    assert _acquire(tmp_path, tmp_path / "out", budget=5) == 0
    idx, scores = _picks(tmp_path / "out")
    with h5py.File(tmp_path / "out" / "picks.h5", "r") as f:
        assert f.attrs["strategy"] == "epistemic_variance"
    body = np.loadtxt(tmp_path / "out" / "picks.csv", delimiter=",", skiprows=1)
    assert len(set(idx.tolist())) == 5 and np.all(scores >= 0)
    np.testing.assert_allclose(body[:, 3], body[:, 4] + body[:, 5], rtol=1e-9)


def _bad_cases(root: Path) -> dict[str, tuple[list[str], str]]:
    (root / "notes.txt").write_text("not hdf5")
    x = np.zeros((20, 1, 6, 6), dtype=np.float32)
    _write_pool(root / "wrong_shape.h5", x)
    _write_pool(root / "other_key.h5", np.zeros((20, 1, 8, 8), dtype=np.float32), key="images")
    return {
        "missing pool": (["--pool", str(root / "nope.h5")], "nope.h5"),
        "not hdf5": (["--pool", str(root / "notes.txt")], "notes.txt"),
        "inputs key missing": (["--inputs", "/images"], "'/images'"),
        "wrong sample shape": (["--pool", str(root / "wrong_shape.h5")], "(1, 6, 6)"),
        "budget zero": (["--budget", "0"], "--budget"),
        "budget above pool": (["--budget", str(POOL_N + 1)], "larger than the pool"),
        "unknown strategy": (["--strategy", "bold"], "'bold'"),
        "strategy of the other task": (["--strategy", "epistemic_variance"], "regression"),
    }


BAD = ["missing pool", "not hdf5", "inputs key missing", "wrong sample shape", "budget zero",
       "budget above pool", "unknown strategy", "strategy of the other task"]  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(setup, tmp_path, capsys, case):
    args, culprit = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    base = {"--pool": str(setup / "pool.h5"), "--budget": "3"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["acquire", str(setup / "p.yaml"), "--out", str(out), "--quiet"]
    argv += [item for kv in base.items() for item in kv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and culprit in err, err
    assert not out.exists()


def test_unknown_strategy_lists_the_valid_ones(setup, tmp_path, capsys):
    argv = ["acquire", str(setup / "p.yaml"), "--pool", str(setup / "pool.h5"), "--budget",
            "2", "--out", str(tmp_path / "o"), "--strategy", "bold"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bald" in err and "batchbald" in err and "power_bald" in err


def test_whole_pool_strategy_too_large_suggests_power_bald(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(acquire_mod, "WHOLE_POOL_BYTES", 1024)
    out = tmp_path / "o"
    argv = ["acquire", str(setup / "p.yaml"), "--pool", str(setup / "pool.h5"), "--budget",
            "2", "--out", str(out), "--strategy", "batchbald"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "batchbald" in err and "power_bald" in err
    assert not out.exists()


def test_picks_and_a_run_in_one_folder_leave_each_other_alone(tmp_path):
    out = tmp_path / "run"
    run_files = {n: (lambda p, n=n: p.write_text(n)) for n in ("manifest.json", "report.html")}
    write_files(out, {**run_files, "results.json": lambda p: p.write_text("{}")})
    write_files(out, {"picks.csv": lambda p: p.write_text("x"), "picks.h5": lambda p: p.write_text("h")})
    assert {"manifest.json", "report.html", "results.json", "picks.csv", "picks.h5"} <= set(os.listdir(out))
    # New picks replace the old ones (a stale picks file goes), the run's files stay.
    write_files(out, {"picks.csv": lambda p: p.write_text("y")})
    assert (out / "picks.csv").read_text() == "y" and not (out / "picks.h5").exists()
    assert (out / "results.json").read_text() == "{}" and (out / "report.html").exists()
    # A new run replaces the run's files and leaves the picks alone.
    write_files(out, {**run_files, "results.json": lambda p: p.write_text("[]")})
    assert (out / "results.json").read_text() == "[]" and (out / "picks.csv").read_text() == "y"


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not found next to the interpreter")
def test_two_ranks_pick_what_one_rank_picks(setup, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           acquire_mod.CHUNK_ENV: "64"}  # fmt: skip  # 5 blocks: both ranks score some
    cmd = [sys.executable, "-m", "trustml.cli", "acquire", str(setup / "p.yaml"), "--pool",
           str(setup / "pool.h5"), "--budget", "7", "--quiet"]  # fmt: skip
    subprocess.run([*cmd, "--out", str(tmp_path / "one")], check=True, env=env, timeout=300)
    two = subprocess.run(
        [str(MPIEXEC), "-n", "2", *cmd, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    a, b = _picks(tmp_path / "one"), _picks(tmp_path / "two")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
