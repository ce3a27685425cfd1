"""Training-loader throughput and memory: chunk-aligned block reading versus a raw h5py read.

    python -m benchmarks.data_throughput            # 64 shards, 8 GiB; RSS at 2 and 8 GiB
    python -m benchmarks.data_throughput --smoke    # 8 shards, 2 MiB (a check, not the figure)
    python -m benchmarks.data_throughput --shards 8 --per-shard 16   # 512 MiB, 4 MiB samples

Anything but the full size writes ``data_throughput_smoke.json``.

The issue's goals: ``throughput_ratio >= 0.8`` and ``rss_growth_mb < 200``.

The benchmark writes a dataset of 64 HDF5 shard files (CosmoFlow-like samples of 4 x 64^3
float32, 4 MiB each, one HDF5 chunk per sample, uncompressed; 32 samples a file: 8 GiB) into a
temporary folder (``--dir`` chooses its parent; it is removed at the end), then measures

- ``raw``: every file read in order with h5py, whole arrays at once (``f["x"][...]``): the
  fastest way to get the bytes into numpy;
- ``blocks``: one training epoch through trustml's loader (:class:`trustml.uq.BlockShuffle`
  over a :class:`trustml.data.ShardedHDF5Dataset`: windows of 256 MiB read a window ahead by a
  background thread, minibatches of 16 drawn from each member's shuffle of the window) feeding
  a trivial consumer (it only takes the batch), for 1 member and for 4 members (whose
  batches share each window's read);

alternately (raw, blocks, raw, blocks, ...), best of ``repeats`` each. The page cache is *not*
dropped (that needs root): the files were just written and fit in memory here, so both read
from the page cache after the same warm-up, and the ratio measures the loader's own overhead
(copies, Python, the thread), not the disk. ``throughput_ratio`` is blocks (1 member) over raw,
in samples/s.

Memory: a fresh subprocess per dataset size (the first 16 shards, 2 GiB, and all 64, 8 GiB)
opens the dataset, resets its peak RSS (``VmHWM``) and runs one loader epoch; ``rss_growth_mb``
is the 8 GiB peak minus the 2 GiB peak (flat in dataset size: the loader holds about two
windows, whatever the size).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import proc_status, report

MiB = 1 << 20
FULL = {"shards": 64, "per_shard": 32, "shape": (4, 64, 64, 64), "small_shards": 16}
SMOKE = {"shards": 8, "per_shard": 4, "shape": (4, 8, 8, 8), "small_shards": 2}
BATCH = 16


def _write(folder: Path, shards: int, per_shard: int, shape: tuple[int, ...]) -> list[Path]:
    """``shards`` files of ``per_shard`` samples: /x float32 chunked per sample, /y (n, 4)."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(shards):
        path = folder / f"shard-{k:03d}.h5"
        with h5py.File(path, "w") as f:
            x = f.create_dataset(
                "x", shape=(per_shard, *shape), dtype="f4", chunks=(1, *shape)
            )  # uncompressed
            for i in range(per_shard):
                x[i] = rng.standard_normal(shape, dtype=np.float32)
            f.create_dataset("y", data=rng.standard_normal((per_shard, 4)).astype(np.float32))
        paths.append(path)
    return paths


def _raw(paths: list[Path]) -> int:
    import h5py

    n = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            x = f["x"][...]
            f["y"][...]
            n += len(x)
            del x
    return n


def _open(paths: list[Path]) -> Any:
    """The shards as one dataset (its index built now, as a run's planning does)."""
    from trustml.data import ShardedHDF5Dataset

    return ShardedHDF5Dataset([str(p) for p in paths], validate=False)


def _loader_epoch(ds: Any, members: int) -> int:
    """One epoch of BlockShuffle over ``ds`` with a trivial consumer; the samples a member saw."""
    import torch

    from trustml.uq import BlockShuffle
    from trustml.uq._fit_loop import DataShare
    from trustml.uq._source import Source

    source = Source(ds)
    source.task = "regression"
    source.shift, source.scale = np.zeros(4), np.ones(4)
    rngs = [np.random.default_rng(k) for k in range(members)]
    batches = BlockShuffle(seed=0).epoch(
        source, np.arange(len(ds)), rngs, BATCH, torch.device("cpu"), DataShare()
    )
    n = 0
    for x, _ in batches:  # the consumer only takes the batch
        n += x.shape[1]
    ds.close()
    return n


def _rate(fn: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0), n


def _rss_child(folder: str, shards: int) -> None:
    """In a fresh process: RSS after imports, peak RSS over one loader epoch (JSON)."""
    import torch  # noqa: F401 - imported before the baseline, as training would

    import trustml.uq  # noqa: F401

    ds = _open(sorted(Path(folder).glob("shard-*.h5"))[:shards])
    base = proc_status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    n = _loader_epoch(ds, members=1)
    print(json.dumps({"base": base, "peak": proc_status("VmHWM"), "reset": reset, "samples": n}))


def _rss(folder: Path, shards: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.data_throughput", "--rss-child", str(folder),
         str(shards)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny run (2 MiB), not the figure")
    ap.add_argument("--dir", default=None, help="parent of the temporary data folder")
    ap.add_argument("--repeats", type=int, default=None, help="passes of each reader")
    ap.add_argument("--shards", type=int, default=None, help="shard files (64; smoke 8)")
    ap.add_argument("--per-shard", type=int, default=None, help="samples a file (32; smoke 4)")
    ap.add_argument("--side", type=int, default=None, help="grid side of a sample (64; smoke 8)")
    ap.add_argument("--rss-child", nargs=2, metavar=("FOLDER", "SHARDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    cfg = dict(SMOKE if args.smoke else FULL)
    for key in ("shards", "per_shard"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.side is not None:
        cfg["shape"] = (4, args.side, args.side, args.side)
    full = not args.smoke and all(cfg[k] == FULL[k] for k in ("shards", "per_shard", "shape"))
    cfg["small_shards"] = max(1, min(cfg["small_shards"], cfg["shards"] // 4))
    import torch  # noqa: F401 - imported before any clock starts

    import trustml.uq  # noqa: F401

    repeats = args.repeats or (2 if args.smoke else 3)
    tmp = Path(tempfile.mkdtemp(prefix="trustml-data-throughput-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        paths = _write(tmp / "shards", cfg["shards"], cfg["per_shard"], cfg["shape"])
        write_s = time.perf_counter() - t0
        total = sum(p.stat().st_size for p in paths)
        sample_bytes = 4 * int(np.prod(cfg["shape"]))
        n = cfg["shards"] * cfg["per_shard"]
        rates: dict[str, list[float]] = {"raw": [], "blocks_1": [], "blocks_4": []}
        for _ in range(repeats):
            rates["raw"].append(_rate(lambda: _raw(paths))[0])
            for members in (1, 4):
                ds = _open(paths)
                rate, seen = _rate(lambda ds=ds, m=members: _loader_epoch(ds, m))
                assert seen == n, (seen, n)
                rates[f"blocks_{members}"].append(rate)
        best = {k: max(v) for k, v in rates.items()}
        small, large = (
            _rss(tmp / "shards", cfg["small_shards"]),
            _rss(tmp / "shards", cfg["shards"]),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        {
            "reader": name,
            "members": members,
            "samples_per_s": round(best[key], 1),
            "gib_per_s": round(best[key] * sample_bytes / 1024**3, 3),
            "runs_samples_per_s": [round(v, 1) for v in rates[key]],
        }
        for name, members, key in (
            ("raw h5py, whole files in order", 1, "raw"),
            ("BlockShuffle + background reader", 1, "blocks_1"),
            ("BlockShuffle + background reader", 4, "blocks_4"),
        )
    ]
    small_gib = cfg["small_shards"] * cfg["per_shard"] * sample_bytes / 1024**3
    report(
        "data_throughput" + ("" if full else "_smoke"),
        rows,
        throughput_ratio=round(best["blocks_1"] / best["raw"], 3),
        goal_throughput_ratio=0.8,
        rss_small_peak_mb=round(small["peak"] / MiB, 1),
        rss_large_peak_mb=round(large["peak"] / MiB, 1),
        rss_small_over_imports_mb=round((small["peak"] - small["base"]) / MiB, 1),
        rss_large_over_imports_mb=round((large["peak"] - large["base"]) / MiB, 1),
        rss_growth_mb=round((large["peak"] - small["peak"]) / MiB, 1),
        goal_rss_growth_mb=200,
        data={
            "shards": cfg["shards"],
            "samples": n,
            "sample_shape": list(cfg["shape"]),
            "chunk": "one sample, uncompressed float32",
            "bytes": total,
            "rss_sizes_gib": [round(small_gib, 3), round(n * sample_bytes / 1024**3, 3)],
            "write_s": round(write_s, 1),
        },
        loader={"buffer_bytes": 256 * MiB, "block_bytes": 16 * MiB, "prefetch": 1,
                "batch_size": BATCH},
        method="alternating passes, best of each; page cache warm (not dropped: needs root)",
        repeats=repeats,
        full_size=full,
    )  # fmt: skip


if __name__ == "__main__":
    main()
