"""Wall time of ``trustml report OUTDIR``: re-rendering report.html from saved results.

    python -m benchmarks.report_render [--results OUTDIR] [--repeats 5]

Two results directories are rendered:

- ``quickstart``: a real run of ``protocols/quickstart.yaml`` (made once in a temporary folder,
  about 20-60 s, unless ``--results`` names one already made);
- ``full-contract``: the synthetic results of the report tests, scaled up: three uncertainty
  methods compared, two attribution methods with 16 examples each (8 drawn), every check,
  Bayesian diagnostics, a distribution shift, 1000 test samples.

Each is timed as the user meets it: ``trustml report OUTDIR`` in a fresh process (interpreter
start, imports, loading results.json and arrays.h5, drawing every figure, writing the page),
best and median of ``--repeats``. The issue's target: at most 5 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import report

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocols" / "quickstart.yaml"
TARGET_S = 5.0


def _trustml() -> list[str]:
    exe = shutil.which("trustml", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "trustml.cli"]


def _quickstart(folder: Path) -> tuple[Path, float]:
    out = folder / "quickstart"
    t0 = time.perf_counter()
    subprocess.run(
        [*_trustml(), "evaluate", str(PROTOCOL), "--out", str(out), "--quiet"],
        check=True,
        cwd=folder,
    )
    return out, time.perf_counter() - t0


def _full_contract(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "report"))
    from _report_data import make_results  # the report tests' synthetic results

    results = make_results(n_test=1000, n_examples=16, members=8)
    return results.write(folder / "full-contract")


def _time_report(outdir: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([*_trustml(), "report", str(outdir)], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="an existing quickstart results folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rows = []
    extra: dict[str, object] = {"target_s": TARGET_S, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.results is not None:
            quick = Path(shutil.copytree(args.results, folder / "quickstart"))
        else:
            quick, evaluate_s = _quickstart(folder)
            extra["quickstart_evaluate_s"] = round(evaluate_s, 2)
        for name, outdir in (("quickstart", quick), ("full-contract", _full_contract(folder))):
            times = _time_report(outdir, args.repeats)
            page = (outdir / "report.html").read_text(encoding="utf-8")
            rows.append(
                {
                    "results": name,
                    "best_s": round(min(times), 3),
                    "median_s": round(statistics.median(times), 3),
                    "figures": page.count('src="data:image/png;base64,'),
                    "html_mb": round(len(page.encode("utf-8")) / 2**20, 3),
                    "arrays_mb": round((outdir / "arrays.h5").stat().st_size / 2**20, 3),
                    "within_target": max(times) <= TARGET_S,
                }
            )
    try:
        import os

        extra["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    report("report_render", rows, **extra)


if __name__ == "__main__":
    main()
