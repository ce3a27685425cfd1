"""Wall time of the quickstart protocol, end to end and per stage.

    python -m benchmarks.quickstart

The issue's target: at most 90 s on a 2-core CPU after install.
"""

from __future__ import annotations

import cProfile
import pstats
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
        "train (fit)": "fit",
        "predict": "predict",
        "attribution": "_attribute",
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
    report(
        "quickstart",
        rows,
        total_s=round(total, 2),
        target_s=90,
        verdict=outcome.results.summary["verdict"],
        metrics={k: v["value"] for k, v in outcome.results.summary["metrics"].items()},
    )


if __name__ == "__main__":
    main()
