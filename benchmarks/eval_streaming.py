"""Scoring a test split whose predictions are 4x larger than a memory cap.

    python -m benchmarks.eval_streaming            # cap 256 MiB, predictions 1 GiB
    python -m benchmarks.eval_streaming --smoke    # cap 16 MiB, predictions 64 MiB

The issue's goal: ``peak_rss_over_cap <= 1.0``. The benchmark writes the member predictions of
a classification test split (``K`` members x ``N`` samples x ``C`` classes, float64) to HDF5
files in a temporary folder, as a streamed run stages them, then scores them in a fresh
subprocess exactly as the runner does (:func:`trustml.protocol._stream_eval.score_staged`:
temperature scaling fitted on a calibration split held in memory (1/32 of the cap), then
chunk by chunk (1/16 of the cap):
calibrated probabilities, mutual information and the per-sample scores written to disk,
then the values and 1,000 bootstrap replicates of accuracy, NLL, Brier and ECE). The
subprocess measures its resident memory after its imports and its peak (``VmHWM``, reset
after the imports where the kernel allows): ``peak_rss_over_cap`` is the growth, peak minus
after-imports, over the cap. The cap is measured, not enforced (torch's virtual reservations
rule out ``RLIMIT_AS``). The temporary folder is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import proc_status, report

MiB = 1 << 20
MEMBERS, CLASSES = 16, 10
GENERATE_ROWS = 32_768
#: The calibration split (held in memory, as the runner holds it) is 1/32 of the cap.
CALIBRATION_SHARE = 32


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _protocol() -> Any:
    from trustml.protocol import parse_protocol

    return parse_protocol(
        {
            "trustml": 1,
            "name": "eval-streaming",
            "seed": 3,
            "device": "cpu",
            "data": {"builtin": "cosmology2d"},
            "task": "classification",
            "model": {"builtin": "mlp"},
            "uncertainty": {"members": MEMBERS},
            "calibration": {"method": "temperature"},
            "metrics": ["accuracy", "nll", "brier", "ece"],
        }
    )


def _logits(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Member logits ``(K, n, C)``: the label favoured, members disagreeing a little."""
    base = rng.normal(size=(len(labels), CLASSES))
    base[np.arange(len(labels)), labels] += 1.2
    return 2.5 * (base[None] + 0.5 * rng.normal(size=(MEMBERS, *base.shape)))


def _generate(folder: Path, predictions_bytes: int, calibration_bytes: int) -> dict[str, Any]:
    """Staged test predictions of ``predictions_bytes``, their labels and a calibration split."""
    from scipy import special

    from trustml.protocol._stream_predict import create_staged

    folder.mkdir(parents=True, exist_ok=True)
    per_sample = 8 * MEMBERS * CLASSES
    n = predictions_bytes // per_sample
    n_cal = max(100, calibration_bytes // per_sample)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, size=n)
    staged = create_staged(folder / "test.h5", "classification", n, MEMBERS, CLASSES, ("probs",))
    for a in range(0, n, GENERATE_ROWS):
        b = min(a + GENERATE_ROWS, n)
        staged.write(a, {"probs": special.softmax(_logits(rng, labels[a:b]), axis=-1)})
    np.save(folder / "labels.npy", labels)
    cal_labels = rng.integers(0, CLASSES, size=n_cal)
    np.save(folder / "cal_probs.npy", special.softmax(_logits(rng, cal_labels) * 1.5, axis=-1))
    np.save(folder / "cal_labels.npy", cal_labels)
    return {
        "n_test": int(n),
        "n_calibration": int(n_cal),
        "predictions_mib": round(staged.nbytes / MiB, 1),
        "calibration_mib": round(n_cal * per_sample / MiB, 2),
    }


def _score_folder(folder: Path, chunk_bytes: int) -> tuple[dict[str, Any], list[str]]:
    from trustml import results_keys as rk
    from trustml.protocol._stream_eval import ArrayStore, score_staged
    from trustml.protocol._stream_predict import StagedPredictions
    from trustml.uq import Predictive

    protocol = _protocol()
    staged = StagedPredictions.open(folder / "test.h5")
    labels = np.load(folder / "labels.npy")
    pred_cal = Predictive.classification(np.load(folder / "cal_probs.npy"))
    cal_labels = np.load(folder / "cal_labels.npy")
    store = ArrayStore(folder / "arrays.h5")
    part, arrays, _ = score_staged(
        protocol, protocol.methods[0], pred_cal, cal_labels, staged, labels, rk.PRIMARY_TEST,
        store, targets=True, chunk_bytes=chunk_bytes,
    )  # fmt: skip
    return part, sorted(arrays)


def _score(folder: Path, cap: int) -> dict[str, Any]:
    """In the scoring subprocess: score the staged split, measuring resident memory.

    A tiny split is scored first, so that what scoring imports on first use is loaded
    before the baseline is taken.
    """
    _generate(folder / "warm-up", 64 * 1024, 16 * 1024)
    _score_folder(folder / "warm-up", MiB)
    rss_imports = proc_status("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    chunk = max(MiB, cap // 16)
    part, arrays = _score_folder(folder, chunk)
    seconds = time.perf_counter() - t0
    peak = proc_status("VmHWM")
    return {
        "rss_after_imports_mib": round(rss_imports / MiB, 1),
        "peak_rss_mib": round(peak / MiB, 1),
        "peak_growth_mib": round((peak - rss_imports) / MiB, 1),
        "peak_was_reset": reset,
        "scoring_s": round(seconds, 2),
        "chunk_mib": round(chunk / MiB, 2),
        "metrics": part["metrics"],
        "temperature": round(part["calibration"]["temperature"], 4),
        "arrays_written": arrays,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a small run (cap 16 MiB), not the figure")
    ap.add_argument("--score", type=Path, help=argparse.SUPPRESS)  # the subprocess's entry
    ap.add_argument("--cap", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.score is not None:
        print(json.dumps(_score(args.score, args.cap)))
        return
    cap = (16 if args.smoke else 256) * MiB
    with tempfile.TemporaryDirectory(prefix="trustml-eval-stream-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        sizes = _generate(folder, 4 * cap, cap // CALIBRATION_SHARE)
        generate_s = time.perf_counter() - t0
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        run = subprocess.run(
            [sys.executable, "-m", "benchmarks.eval_streaming", "--score", str(folder), "--cap", str(cap)],
            capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        if run.returncode != 0:
            sys.exit(f"the scoring subprocess failed:\n{run.stderr}")
        scored = json.loads(run.stdout.strip().splitlines()[-1])
    growth = scored["peak_growth_mib"] * MiB
    metrics = scored.pop("metrics")
    rows = [
        {"metric": name, "value": round(m["value"], 5), "ci": [round(c, 5) for c in m["ci"]]}
        for name, m in metrics.items()
    ]
    report(
        "eval_streaming" + ("_smoke" if args.smoke else ""),
        rows,
        cap_mib=cap // MiB,
        **sizes,
        members=MEMBERS,
        classes=CLASSES,
        predictions_over_cap=round(sizes["predictions_mib"] * MiB / cap, 2),
        peak_rss_over_cap=round(growth / cap, 3),
        goal_peak_rss_over_cap=1.0,
        generate_s=round(generate_s, 2),
        **scored,
    )


if __name__ == "__main__":
    main()
