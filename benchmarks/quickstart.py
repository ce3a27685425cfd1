"""Wall time of the quickstart protocol, end to end and per stage.

    python -m benchmarks.quickstart

The issue's target: the quickstart protocol end to end in at most 60 s on a 2-core CPU. The
stages are timed in-process (under cProfile); ``cli_wall_s`` is the whole command,
``trustml evaluate protocols/quickstart.yaml`` (what ``make demo`` runs), interpreter and
library start-up included.
"""

from __future__ import annotations

import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import report

PROTOCOL = Path(__file__).resolve().parent.parent / "protocols" / "quickstart.yaml"


def main() -> None:
    from trustml.protocol import load_protocol, run_protocol

    protocol, text = load_protocol(PROTOCOL)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        profiler.enable()
        outcome = run_protocol(protocol, text, out=Path(tmp) / "out", progress=False)
        profiler.disable()
        total = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    stage_fns = {
        "train (fit)": "fit_method",
        "predict": "predict_sharded",
        "attribution": "attribute_and_check",
        "coverage curve": "_coverage_curve",
        "metrics + bootstrap": "score",
        "write report": "write",
    }
    rows = []
    for stage, fn_name in stage_fns.items():
        cum = sum(
            v[3]
            for (path, _, name), v in stats.stats.items()
            if name == fn_name and "trustml" in path
        )
        rows.append({"stage": stage, "seconds": round(cum, 2)})
    rows.append({"stage": "total", "seconds": round(total, 2)})
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(sys.executable).parent / "trustml"
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(exe), "evaluate", str(PROTOCOL), "--out", str(Path(tmp) / "cli"), "--quiet"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        cli_wall = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"trustml evaluate failed ({done.returncode}): {done.stderr[-2000:]}")
    report(
        "quickstart",
        rows,
        total_s=round(total, 2),
        cli_wall_s=round(cli_wall, 2),
        target_s=60,
        verdict=outcome.results.summary["verdict"],
        metrics={k: v["value"] for k, v in outcome.results.summary["metrics"].items()},
    )


if __name__ == "__main__":
    main()
