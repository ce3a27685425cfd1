"""Issue 16's end-to-end claims on small generated shards, under a real ``mpiexec -n 2``.

- A protocol over 64 HDF5 shard files, read in chunk-aligned blocks, with one data-parallel
  group of two ranks (``parallel: {data: 2}``), gives identical results.json twice in a row.
- A shard deleted or truncated between two runs (the same command again, into the same
  folder) exits 2 with one line naming the file, and nothing in the folder changes: the index
  the first run cached lists the deleted file, and the truncated one no longer opens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

MPIEXEC = Path(sys.executable).parent / "mpiexec"
SHARDS = 64
PER_SHARD = 5

PROTOCOL = {
    "trustml": 1,
    "name": "shards-d2",
    "seed": 16,
    "device": "cpu",
    "data": {
        "hdf5": {"files": "shards/*.h5", "inputs": "/x", "targets": "/y"},
        "loader": {"order": "blocks", "buffer": 64},
        "split": {"train": 0.6, "calibration": 0.2, "test": 0.2},
    },
    "task": "regression",
    "model": {"builtin": "mlp", "options": {"hidden": [16]}},
    "parallel": {"data": 2},
    "uncertainty": {"members": 2, "train": {"epochs": 2, "batch_size": 16}},
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "coverage"],
}


def _write_shards(folder: Path) -> list[Path]:
    """64 files of 5 samples each: x (5, 1, 6) float32 ([N, C, L]), y a known linear map of
    x plus noise."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 1))
    paths = []
    (folder / "shards").mkdir()
    for k in range(SHARDS):
        x = rng.normal(size=(PER_SHARD, 1, 6)).astype(np.float32)
        y = (x[:, 0] @ w + 0.1 * rng.normal(size=(PER_SHARD, 1))).astype(np.float32)
        path = folder / "shards" / f"part-{k:03d}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=x, chunks=(PER_SHARD, 1, 6))
            f.create_dataset("y", data=y)
        paths.append(path)
    return paths


def _evaluate(folder: Path, out: str) -> subprocess.CompletedProcess:
    if not MPIEXEC.exists():
        pytest.skip("mpiexec not found next to the interpreter (install the mpich wheel)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "trustml.cli", "evaluate",
           "protocol.yaml", "--out", out, "--quiet"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=folder)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded_d2")
    paths = _write_shards(folder)
    (folder / "protocol.yaml").write_text(yaml.safe_dump(PROTOCOL))
    done = _evaluate(folder, "run1")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return folder, paths, json.loads((folder / "run1" / "results.json").read_text())


def test_64_shards_with_a_data_parallel_group_reproduce_results_exactly(first_run):
    folder, _, first = first_run
    assert first["data"]["n_samples"] == SHARDS * PER_SHARD
    assert (folder / "run1" / "checkpoints" / "data_index.json").exists()
    done = _evaluate(folder, "run2")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    again = json.loads((folder / "run2" / "results.json").read_text())
    assert again == first
    # The model learned the linear map: far better than predicting the mean (RMSE ~ 2.4).
    assert first["metrics"]["rmse"]["value"] < 1.0


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_shard_damaged_between_two_runs_exits_2_naming_it(first_run, damage):
    folder, paths, _ = first_run
    victim = paths[17] if damage == "delete" else paths[40]
    saved = victim.read_bytes()
    before = _listing(folder / "run1")
    try:
        if damage == "delete":
            victim.unlink()
        else:
            victim.write_bytes(saved[: len(saved) // 2])
        done = _evaluate(folder, "run1")
        err = done.stderr.strip()
        assert done.returncode == 2, err[-3000:]
        assert victim.name in err and "Traceback" not in err, err
        assert len({line for line in err.splitlines() if line.strip()}) == 1, err
        assert _listing(folder / "run1") == before  # nothing written, nothing removed
    finally:
        victim.write_bytes(saved)
