"""Strong scaling of ``mpiexec -n P trustml evaluate``: K=8 members over P ranks.

    python -m benchmarks.mpi_scaling

One thread per rank (``OMP_NUM_THREADS=1``), so P ranks use P cores. Wall time of the whole
command, start-up and report included. ``efficiency_p2 = t1 / (2 * t2)``; the issue asks for
>= 0.8 on the 2-core machine. P = 4 is oversubscribed on 2 cores: reported, not judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._harness import report

PROTOCOL = {
    "trustml": 1,
    "name": "mpi-scaling",
    "seed": 5,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 1200, "size": 32}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [16, 32], "hidden": 64}},
    "uncertainty": {"method": "deep_ensemble", "members": 8, "train": {"epochs": 6, "batch_size": 64}},
    "calibration": {"method": "conformal", "alpha": 0.1},
    "metrics": ["rmse", "nll", "crps", "coverage"],
    "attribution": {"n_examples": 8, "n_steps": 32},
}


def _run(p: int, protocol: Path, out: Path) -> float:
    exe = Path(sys.executable).parent
    cmd = [str(exe / "mpiexec"), "-n", str(p), str(exe / "trustml"), "evaluate", str(protocol), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"P={p} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return elapsed


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        protocol = Path(tmp) / "p.yaml"
        protocol.write_text(yaml.safe_dump(PROTOCOL))
        metrics = {}
        for p in (1, 2, 4):
            out = Path(tmp) / f"out{p}"
            t = _run(p, protocol, out)
            metrics[p] = json.loads((out / "results.json").read_text())["metrics"]
            rows.append({"ranks": p, "wall_s": round(t, 2), "oversubscribed": p > (os.cpu_count() or 1)})
    t1, t2 = rows[0]["wall_s"], rows[1]["wall_s"]
    report(
        "mpi_scaling",
        rows,
        members=PROTOCOL["uncertainty"]["members"],
        efficiency_p2=round(t1 / (2 * t2), 3),
        target_efficiency_p2=0.8,
        identical_metrics=metrics[1] == metrics[2] == metrics[4],
    )


if __name__ == "__main__":
    main()
