"""Cost of a shift ladder: the quickstart protocol with a 5-level noise ladder over without one.

    python -m benchmarks.shift_ladder

The issue's goal: ``ladder_overhead_x <= 1.6``. Nothing is re-trained per level: every level
is the test split corrupted on read, predicted by the fitted ensemble and scored with the
calibration fitted once. Both protocols run in-process, alternately, best of ``REPEATS``
each; the per-stage times of the fastest runs come from their manifests (``timings_s``), and
``ladder_stage_s`` is what the ladder adds to them (its prediction, and its scoring).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._harness import report

PROTOCOL = Path(__file__).resolve().parent.parent / "protocols" / "quickstart.yaml"
LEVELS = [0.1, 0.2, 0.4, 0.8, 1.6]
REPEATS = 3


def _run(raw: dict, out: Path) -> tuple[float, dict]:
    from trustml.protocol import parse_protocol, run_protocol

    protocol = parse_protocol(copy.deepcopy(raw))
    t0 = time.perf_counter()
    outcome = run_protocol(protocol, yaml.safe_dump(raw), out=out, progress=False)
    return time.perf_counter() - t0, outcome.results.summary


def main() -> None:
    import json

    plain = yaml.safe_load(PROTOCOL.read_text())
    laddered = copy.deepcopy(plain)
    laddered["data"]["shifts"] = {"noise": {"corruption": "noise", "levels": LEVELS}}
    times: dict[str, list[float]] = {"plain": [], "ladder": []}
    summary: dict = {}
    timings: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(REPEATS):
            for name, raw in (("plain", plain), ("ladder", laddered)):
                out = Path(tmp) / f"{name}{r}"
                seconds, s = _run(raw, out)
                times[name].append(seconds)
                stages = json.loads((out / "manifest.json").read_text())["timings_s"]
                if name == "ladder":
                    summary = s
                if seconds == min(times[name]):
                    timings[name] = stages
    best = {k: min(v) for k, v in times.items()}
    levels = summary["shifts"]["noise"]["levels"]
    rows = [
        {
            "level": lv["label"],
            "rmse": round(lv["methods"]["deep_ensemble"]["metrics"]["rmse"]["value"], 4),
            "coverage": round(lv["methods"]["deep_ensemble"]["metrics"]["coverage"]["value"], 4),
            "mean_epistemic_var": round(lv["methods"]["deep_ensemble"]["mean_epistemic_var"], 5),
        }
        for lv in levels
    ]
    report(
        "shift_ladder",
        rows,
        plain_s=round(best["plain"], 2),
        ladder_s=round(best["ladder"], 2),
        runs_s={k: [round(t, 2) for t in v] for k, v in times.items()},
        ladder_overhead_x=round(best["ladder"] / best["plain"], 3),
        goal_overhead_x=1.6,
        # What the ladder itself costs, from the stage clocks of the fastest runs (training
        # time varies by a second or two between runs, more than the ladder costs):
        ladder_stage_s=round(
            timings["ladder"].get("ladders.predict", 0.0)
            + timings["ladder"]["scoring"] - timings["plain"]["scoring"], 2
        ),
        levels=LEVELS,
        timings_s=timings,
        test_metrics={k: v["value"] for k, v in summary["metrics"].items()},
    )


if __name__ == "__main__":
    main()
