"""NUTS chains spread over MPI ranks: ``mpiexec -n P trustml evaluate`` with 4 chains.

    python -m benchmarks.mpi_nuts

Each chain of ``bayes_nuts`` depends on its own seed only, so the ranks run contiguous
blocks of the chains and gather them; the results equal one process's. One thread per rank,
whole-command wall time (start-up and report included), one run per rank count.
``efficiency_p2 = t1 / (2 * t2)``. Not a target of the issue (ensembles are); reported so the
speed-up of Bayesian runs under MPI is measured, not assumed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from benchmarks._harness import report
from benchmarks.mpi_scaling import _run

CHAINS = 4
PROTOCOL = {
    "trustml": 1,
    "name": "mpi-nuts",
    "seed": 5,
    "device": "cpu",
    "data": {"builtin": "cosmology2d", "options": {"n": 400, "size": 8}},
    "task": "regression",
    "model": {"builtin": "mlp", "options": {"hidden": [16]}},
    "uncertainty": {"method": "bayes_nuts", "num_samples": 100, "warmup": 100, "chains": CHAINS},
    "calibration": {"method": "conformal", "alpha": 0.1},
    "metrics": ["rmse", "nll", "crps", "coverage"],
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nuts.yaml"
        path.write_text(yaml.safe_dump(PROTOCOL))
        rows, summaries = [], {}
        for p in (1, 2):
            out = Path(tmp) / f"out-{p}"
            rows.append({"ranks": p, "wall_s": round(_run(p, path, out), 2)})
            summaries[p] = json.loads((out / "results.json").read_text())
    t1, t2 = rows[0]["wall_s"], rows[1]["wall_s"]
    report(
        "mpi_nuts",
        rows,
        chains=CHAINS,
        workload="cosmology2d n=400 8^2, mlp [16], NUTS 100 warm-up + 100 draws per chain",
        efficiency_p2=round(t1 / (2 * t2), 3),
        identical_results=summaries[1] == summaries[2],
    )


if __name__ == "__main__":
    main()
