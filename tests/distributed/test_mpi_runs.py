"""`trustml evaluate` under a real `mpiexec -n 2`: same numbers as one process, resume after a crash."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

PROTOCOL = {
    "trustml": 1,
    "name": "mpi",
    "seed": 21,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 300, "size": 16}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4, 8], "hidden": 16}},
    # 3 members over 2 ranks: uneven blocks, so members train beside different neighbours.
    "uncertainty": {"members": 3, "train": {"epochs": 2, "batch_size": 32}},
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "crps", "coverage"],
    "attribution": {"n_examples": 6, "n_steps": 16, "target": 1},
}


def serial(args, cwd):
    # Float reductions depend on the number of threads, not on the number of ranks: compare
    # with the one thread per process that the mpirun fixture gives each rank.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "trustml.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture
def protocol(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(PROTOCOL))
    return f


def results(outdir: Path) -> dict:
    return json.loads((outdir / "results.json").read_text())


def figures(outdir: Path) -> list[str]:
    return re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", (outdir / "report.html").read_text())


def one_and_two(mpirun, protocol: Path, cwd: Path, tag: str) -> tuple[Path, Path]:
    """Evaluate ``protocol`` in one process and under ``mpiexec -n 2``; both must succeed."""
    one = serial(["evaluate", str(protocol), "--out", f"{tag}1", "--quiet"], cwd)
    assert one.returncode == 0, one.stderr
    two = mpirun(2, "-m", "trustml.cli", "evaluate", str(protocol), "--out", f"{tag}2", "--quiet", cwd=cwd, timeout=300)
    assert two.returncode == 0, two.stderr
    return cwd / f"{tag}1", cwd / f"{tag}2"


@pytest.mark.determinism
def test_two_ranks_give_the_numbers_of_one(mpirun, protocol, tmp_path):
    one_and_two(mpirun, protocol, tmp_path, "p")
    assert results(tmp_path / "p2") == results(tmp_path / "p1")
    # The two ranks drew the report's figures between them: the same PNGs as one process.
    assert len(figures(tmp_path / "p1")) >= 5
    assert figures(tmp_path / "p2") == figures(tmp_path / "p1")
    manifest = json.loads((tmp_path / "p2" / "manifest.json").read_text())
    assert manifest["mpi_world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "p2" / "checkpoints" / "deep_ensemble").iterdir()) == [
        "member-00000.pt",
        "member-00001.pt",
        "member-00002.pt",
    ]


@pytest.mark.determinism
def test_a_crashed_rank_resumes_from_its_checkpoints(mpirun, protocol, tmp_path, monkeypatch):
    ref = serial(["evaluate", str(protocol), "--out", "ref", "--quiet"], tmp_path)
    assert ref.returncode == 0, ref.stderr

    # Rank 1 dies (like a lost node) right after checkpointing its member.
    monkeypatch.setenv("TRUSTML_TEST_CRASH_AFTER_CHECKPOINT", "1")
    crashed = mpirun(2, "-m", "trustml.cli", "evaluate", str(protocol), "--out", "run", cwd=tmp_path, timeout=300)
    assert crashed.returncode != 0
    assert not (tmp_path / "run" / "results.json").exists()
    assert (tmp_path / "run" / "checkpoints" / "deep_ensemble" / "member-00002.pt").exists()

    monkeypatch.delenv("TRUSTML_TEST_CRASH_AFTER_CHECKPOINT")
    resumed = mpirun(2, "-m", "trustml.cli", "evaluate", str(protocol), "--out", "run", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "rank 1: resumed members [2] from checkpoints" in resumed.stderr
    assert results(tmp_path / "run") == results(tmp_path / "ref")


def test_invalid_protocol_under_mpi_exits_2_with_one_line(mpirun, tmp_path):
    bad = dict(PROTOCOL, uncertanity={"members": 2})
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    out = mpirun(2, "-m", "trustml.cli", "evaluate", str(f), "--out", "x", cwd=tmp_path, timeout=120)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("trustml: error")]
    assert len(errors) == 1 and "uncertanity" in errors[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.determinism
def test_every_uncertainty_method_gives_the_same_numbers_on_two_ranks(mpirun, tmp_path):
    # Single-network methods are fitted alike on every rank; their predictions and the
    # attributions are sharded. Two attribution methods and a model-based check too.
    raw = dict(
        PROTOCOL,
        data={"builtin": "cosmology2d", "options": {"n": 240, "size": 8}},
        model={"builtin": "cnn", "options": {"channels": [4], "hidden": 16, "dropout": 0.1}},
        uncertainty=[
            {"method": "deep_ensemble", "members": 3, "train": {"epochs": 2, "batch_size": 32}},
            {"method": "mc_dropout", "samples": 8, "train": {"epochs": 2, "batch_size": 32}},
            {"method": "bayes_svi", "samples": 8, "bayesian_layers": ["head"], "train": {"epochs": 2}},
        ],
        attribution={
            "methods": ["integrated_gradients", "saliency"],
            "n_examples": 5,
            "n_steps": 8,
            "checks": ["completeness", "deletion"],
        },
    )
    f = tmp_path / "methods.yaml"
    f.write_text(yaml.safe_dump(raw))
    a, b = (results(out) for out in one_and_two(mpirun, f, tmp_path, "m"))
    order = sorted(a["methods"], key=lambda label: a["methods"][label]["index"])
    assert order == ["deep_ensemble", "mc_dropout", "bayes_svi"]
    assert a == b


def test_nuts_chains_spread_over_ranks_give_the_draws_of_one_process(mpirun, tmp_path):
    # Each chain depends on its own seed only, so 3 chains over 2 ranks (2 + 1) gather into
    # the posterior of one process: same predictions, metrics and convergence diagnostics.
    raw = dict(
        PROTOCOL,
        data={"builtin": "cosmology2d", "options": {"n": 160, "size": 8}},
        model={"builtin": "mlp", "options": {"hidden": [8]}},
        uncertainty={"method": "bayes_nuts", "num_samples": 25, "warmup": 25, "chains": 3},
        attribution={"n_examples": 3, "n_steps": 8},
    )
    f = tmp_path / "nuts.yaml"
    f.write_text(yaml.safe_dump(raw))
    n1, n2 = one_and_two(mpirun, f, tmp_path, "n")
    a, b = results(n1), results(n2)
    assert a["methods"]["bayes_nuts"]["diagnostics"]["chains"] == 3
    assert a == b
    with h5py.File(n1 / "arrays.h5") as h1, h5py.File(n2 / "arrays.h5") as h2:
        np.testing.assert_array_equal(h1["test/mean"][()], h2["test/mean"][()])
