"""Labels saved by uncertainty-driven acquisition, and the speed of scoring a large pool.

1. **Label saving on digits** (scikit-learn's 8x8 digits, 1797 images): the protocol below
   runs a simulated labeling campaign through ``trustml evaluate``'s runner: a 5-member CNN
   ensemble, 20 random labels to start, 10 more per round for 20 rounds, 5 repeats, every
   classification strategy. ``label_saving_x`` is the labels random acquisition needs to reach
   90 % test accuracy divided by those BALD needs (mean curves over repeats, linear
   interpolation between rounds); goal >= 1.5. Every strategy's figure is reported.
2. **Pool scoring**: ``trustml acquire`` with a 5-member ensemble on a pool of 100,000 8x8
   images in one HDF5 file (written to a temporary folder and removed); ``pool_samples_per_s``
   is the pool size over the scoring stage's wall time (from the picks manifest; fitting and
   selection excluded).

Run ``python -m benchmarks.acquisition`` alone on the machine; ``--quick`` runs one repeat of
a shorter campaign (a smoke test, not the figure). Writes ``benchmarks/results/acquisition.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from benchmarks._harness import report
from trustml.data import load_builtin
from trustml.protocol import parse_protocol, run_protocol
from trustml.protocol.acquire import run_acquire

POOL_N = 100_000
GOAL = 1.5

PROTOCOL: dict[str, Any] = {
    "trustml": 1,
    "name": "digits-campaign",
    "seed": 0,
    "device": "cpu",
    "data": {"builtin": "digits", "split": {"train": 0.7, "calibration": 0.05, "test": 0.25}},
    "task": "classification",
    "model": {"builtin": "cnn"},
    "uncertainty": {
        "method": "deep_ensemble",
        "members": 5,
        "train": {"epochs": 200, "batch_size": 32, "lr": 0.003},
    },
    "metrics": ["accuracy"],
    "acquisition": {
        "initial": 20,
        "step": 10,
        "rounds": 20,
        "repeats": 5,
        "strategies": [
            "random", "entropy", "margin", "least_confidence", "bald", "power_bald", "batchbald",
        ],
        "metric": "accuracy",
        "target": 0.9,
    },
}  # fmt: skip


MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _campaign(quick: bool, ranks: int, tmp: Path) -> dict[str, Any]:
    """The campaign, through ``trustml evaluate`` (under ``mpiexec -n ranks`` when > 1: the
    campaigns are spread over the ranks, one torch thread each; the numbers do not change)."""
    p = copy.deepcopy(PROTOCOL)
    if quick:
        p["acquisition"].update(rounds=4, repeats=1, strategies=["random", "bald"])
    t0 = time.perf_counter()
    if ranks == 1:
        results = run_protocol(parse_protocol(p), yaml.safe_dump(p), write=False).results
        assert results is not None
        s = results.summary["acquisition"]
    else:
        (tmp / "campaign.yaml").write_text(yaml.safe_dump(p))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(
            [str(MPIEXEC), "-n", str(ranks), sys.executable, "-m", "trustml.cli", "evaluate",
             str(tmp / "campaign.yaml"), "--out", str(tmp / "campaign"), "--quiet"],
            check=True, env=env,
        )  # fmt: skip
        s = json.loads((tmp / "campaign" / "results.json").read_text())["acquisition"]
    s["wall_s"] = round(time.perf_counter() - t0, 1)
    s["ranks"] = ranks
    return s


def _pool_scoring(tmp: Path) -> dict[str, Any]:
    """``trustml acquire`` on a 100k pool: digits tiled with a little noise (8x8 images)."""
    ds = load_builtin("digits", seed=0)
    x = ds.read(np.arange(len(ds)))[0]
    rng = np.random.default_rng(0)
    pool = x[rng.integers(0, len(x), POOL_N)] + rng.normal(0, 0.05, (POOL_N, *x.shape[1:]))
    with h5py.File(tmp / "pool.h5", "w") as f:
        f.create_dataset("x", data=pool.astype(np.float32), chunks=(4096, *x.shape[1:]))
    p = copy.deepcopy(PROTOCOL)
    del p["acquisition"]
    p["uncertainty"]["train"]["epochs"] = 5
    protocol = parse_protocol(p)
    rows = []
    for strategy in ("bald", "entropy", "power_bald"):
        out = tmp / f"picks-{strategy}"
        t0 = time.perf_counter()
        run_acquire(protocol, pool=tmp / "pool.h5", budget=100, strategy=strategy, out=out)
        total = time.perf_counter() - t0
        timings = json.loads((out / "picks.manifest.json").read_text())["timings_s"]
        rows.append(
            {
                "strategy": strategy,
                "pool": POOL_N,
                "members": 5,
                "scoring_s": timings["scoring"],
                "pool_samples_per_s": round(POOL_N / timings["scoring"]),
                "total_s": round(total, 2),
            }
        )
    return {"rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run, not the figure")
    ap.add_argument(
        "--ranks", type=int, default=2 if MPIEXEC.exists() else 1,
        help="MPI ranks for the campaign (default 2 when mpiexec is installed)",
    )  # fmt: skip
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="trustml-acq-bench-") as tmp:
        s = _campaign(args.quick, args.ranks, Path(tmp))
    rows = []
    for name in s.get("order") or s["strategies"]:
        entry = s["strategies"][name]
        rows.append(
            {
                "strategy": name,
                "labels_to_90": entry["labels_to_target"],
                "per_repeat": entry["labels_to_target_per_repeat"],
                "saving_vs_random": entry["saving_vs_random"],
                "lower_bound": entry["saving_is_lower_bound"],
                "final_accuracy": round(entry["mean"][-1], 4),
            }
        )
    saving = s["strategies"].get("bald", {}).get("saving_vs_random")
    with tempfile.TemporaryDirectory(prefix="trustml-acq-bench-") as tmp:
        pool = _pool_scoring(Path(tmp))
    best = max(r["pool_samples_per_s"] for r in pool["rows"] if r["strategy"] == "bald")
    report(
        "acquisition" + ("_quick" if args.quick else ""),
        rows,
        label_saving_x=saving,
        goal=GOAL,
        goal_met=saving is not None and saving >= GOAL,
        pool_samples_per_s=best,
        pool_scoring=pool["rows"],
        campaign={k: v for k, v in s.items() if k != "strategies"},
        curves={k: v["mean"] for k, v in s["strategies"].items()},
        protocol=PROTOCOL,
    )


if __name__ == "__main__":
    main()
