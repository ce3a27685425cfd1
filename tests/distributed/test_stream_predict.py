"""Predictions written to one HDF5 file by every rank in turn equal those gathered to rank 0."""

import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

# Trains a tiny ensemble (the same in every process), then predicts a split both ways:
# predict_sharded (arrays sent to rank 0) and predict_to_h5 (rows written in turns).
SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    from torch import nn
    from trustml.data import ArrayDataset
    from trustml.distributed import get_comm
    from trustml.protocol._parallel import predict_sharded
    from trustml.protocol._stream_predict import StagedPredictions, predict_to_h5
    from trustml.uq import DeepEnsemble

    out, task, block_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    comm = get_comm()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1100, 3)).astype(np.float32)
    if task == "regression":
        y = (x[:, :2] * 2.0 + 0.1 * rng.normal(size=(1100, 2))).astype(np.float32)
        make = lambda: nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4))
    else:
        y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)
        make = lambda: nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
    ds = ArrayDataset(x, y)
    model = DeepEnsemble(make, members=3, task=task, seed=5).fit(ds, epochs=1, progress=False)
    indices = np.arange(1100)[::-1][:1037].copy()  # not in order, not whole batches
    gathered = predict_sharded(model, ds, indices, comm=comm)
    staged = predict_to_h5(
        model, ds, indices, out + "/staged.h5", comm=comm, batch_size=128, block_bytes=block_bytes
    )
    if comm.rank == 0:
        again = StagedPredictions.open(out + "/staged.h5")
        assert again == staged, (again, staged)
        if task == "regression":
            np.savez(out + "/gathered.npz", means=gathered.member_means, stds=gathered.member_stds)
        else:
            np.savez(out + "/gathered.npz", probs=gathered.member_probs)
        print("done", staged.n, staged.n_members, staged.width, staged.keys)
    """
)


def _run_serial(tmp: Path, task: str, block_bytes: int):
    import os
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp), task, str(block_bytes)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def _staged(folder: Path) -> dict:
    with h5py.File(folder / "staged.h5", "r") as f:
        return {k: f[k][()] for k in f}


def _gathered(folder: Path) -> dict:
    with np.load(folder / "gathered.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.mpi
@pytest.mark.determinism
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_two_ranks_write_the_rows_one_process_writes(mpirun, tmp_path, task):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    # A block of 3 batches of 128 rows: several rounds of turns, a partial last block.
    block = 3 * 128 * 3 * (4 if task == "regression" else 3) * 8
    r1 = _run_serial(one, task, block)
    assert r1.returncode == 0, r1.stderr
    r2 = mpirun(2, "-c", SCRIPT, str(two), task, str(block))
    assert r2.returncode == 0, r2.stderr
    assert "done 1037 3" in r2.stdout
    s1, s2 = _staged(one), _staged(two)
    assert sorted(s1) == (["means", "stds"] if task == "regression" else ["probs"])
    for key, value in s1.items():
        assert value.shape[:2] == (3, 1037)
        np.testing.assert_array_equal(s2[key], value)  # bit for bit
        # ... and both equal the predictions gathered to rank 0 by sending arrays.
        np.testing.assert_array_equal(_gathered(two)[key], value)
        np.testing.assert_array_equal(_gathered(one)[key], value)


PROTOCOL = {
    "trustml": 1,
    "name": "stream-mpi",
    "seed": 21,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 1400, "size": 8}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 8}},
    "uncertainty": {"members": 3, "train": {"epochs": 1, "batch_size": 64}},
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "crps", "coverage", "interval_width"],
}


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.determinism
def test_streamed_protocol_on_two_ranks_gives_the_in_memory_results(mpirun, tmp_path, monkeypatch):
    import json
    import os
    import subprocess

    import yaml

    protocol = tmp_path / "p.yaml"
    protocol.write_text(yaml.safe_dump(PROTOCOL))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("TRUSTML_STREAM_BYTES", None)
    args = ["-m", "trustml.cli", "evaluate", str(protocol), "--quiet", "--out"]
    one = subprocess.run(
        [sys.executable, *args, "mem"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    monkeypatch.setenv("TRUSTML_STREAM_BYTES", "0")  # the test split goes through disk
    two = mpirun(2, *args, "str", cwd=tmp_path, timeout=300)
    assert two.returncode == 0, two.stderr
    mem, got = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("mem", "str"))
    assert got == mem
    with (
        h5py.File(tmp_path / "mem" / "arrays.h5") as a,
        h5py.File(tmp_path / "str" / "arrays.h5") as b,
    ):
        assert sorted(a) == sorted(b)
        np.testing.assert_array_equal(b["test/mean"][()], a["test/mean"][()])
        np.testing.assert_array_equal(b["test/targets"][()], a["test/targets"][()])
    assert not any(p.name.startswith(".trustml-staging") for p in (tmp_path / "str").iterdir())
