"""Data parallelism inside a member: one member on P=2 ranks with ``parallel.data = 2`` versus P=1.

    python -m benchmarks.hybrid_scaling            # 512 samples of 2 x 32^3, 2 epochs
    python -m benchmarks.hybrid_scaling --smoke    # 64 samples of 2 x 16^3, 1 epoch (a check)

The benchmark writes a sharded HDF5 dataset into a temporary folder (16 files, one gzip-1
chunk per sample, so every read decompresses: reading costs CPU as it does from a parallel
file system) and trains one member of a small 3D CNN (``cnn``, channels [8, 16]) on it
through trustml's :class:`~trustml.data.ShardedHDF5Dataset`, minibatches of 32:

- ``P=1``: one process (``mpiexec -n 1``), one thread: it reads and computes every sample;
- ``P=2, D=2``: ``mpiexec -n 2``, one thread per rank: one data-parallel group
  (:func:`trustml.distributed.data_groups`); each rank reads and computes half of every
  minibatch and the gradients are averaged with the default all-reduce every step;
- ``P=1, 2 threads``: one process with both cores (reported, not judged: it is what a user
  without MPI gets).

``OMP_NUM_THREADS`` is set per run (1, except the 2-thread row), so the judged comparison uses
one core per rank on both sides. The time is the training call alone (``_fit_members``: the
engine is built inside it; interpreter and library start-up are excluded), the slower rank's,
after a barrier; the median of ``repeats`` runs taken in turn (1, 2, 1, 2, ...) so a slow
spell of the shared machine falls on both. ``efficiency_d2 = T(P=1) / (2 T(P=2, D=2))``; the issue's goal is >= 0.75 on the 2-core
machine. ``read_fraction`` is one epoch of reads alone (no training) over one epoch of
training, on one rank: how much of the work is reading.

One member trains in the loop engine (``vectorize=False``): the stacked engines run members in
blocks of 8 lanes, so a lone member would be computed 8 times (7 padding lanes).
``loss_rel_diff`` compares the final training loss of the two layouts (the same global
batches: rounding only). Written to ``benchmarks/results/hybrid_scaling.json``
(``hybrid_scaling_smoke.json`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import report

FULL = {"n": 512, "shards": 16, "shape": (2, 32, 32, 32), "epochs": 2, "repeats": 3}
SMOKE = {"n": 64, "shards": 4, "shape": (2, 16, 16, 16), "epochs": 1, "repeats": 1}
BATCH = 32
CHANNELS = [8, 16]


def _write(folder: Path, n: int, shards: int, shape: tuple[int, ...]) -> None:
    """``shards`` HDF5 files: ``/x`` float32 chunked per sample (gzip 1), ``/y`` one target."""
    import h5py

    rng = np.random.default_rng(0)
    per = n // shards
    for s in range(shards):
        x = rng.normal(size=(per, *shape)).astype(np.float32)
        y = x.mean(axis=tuple(range(1, x.ndim)))[:, None] * 10 + 0.1 * rng.normal(size=(per, 1))
        with h5py.File(folder / f"shard-{s:03d}.h5", "w") as f:
            f.create_dataset(
                "x", data=x, chunks=(1, *shape), compression="gzip", compression_opts=1
            )
            f.create_dataset("y", data=y.astype(np.float32))


def _worker(folder: Path, epochs: int, out: Path) -> None:
    import torch

    from trustml.data import ShardedHDF5Dataset
    from trustml.distributed import data_groups, free_group, get_comm
    from trustml.models import build_model
    from trustml.uq import DataShare, DeepEnsemble

    world = get_comm()
    # The first optimizer imports torch._dynamo (about 1 s): a start-up cost, paid before timing.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    ds = ShardedHDF5Dataset(str(folder / "shard-*.h5"), inputs="/x", targets="/y", validate=False)
    shape = tuple(ds.input_shape)

    def make() -> torch.nn.Module:
        return build_model("cnn", input_shape=shape, output_dim=2, channels=CHANNELS, hidden=32)

    _, _, group = data_groups(world, world.size, share=DataShare)
    ens = DeepEnsemble(make, members=1, task="regression", seed=3, vectorize=False)
    world.barrier()
    t0 = time.perf_counter()
    part = ens._fit_members([0], ds, epochs=epochs, batch_size=BATCH, progress=False, group=group)
    train_s = max(world.allgather(time.perf_counter() - t0))
    free_group(group)
    # One epoch of reads alone (as the training order reads: sorted minibatches, this
    # rank's share of each), for the read fraction.
    share = group.share if group is not None else DataShare()
    order = np.random.default_rng(1).permutation(len(ds))
    t0 = time.perf_counter()
    for start in range(0, len(ds), BATCH):
        batch = np.sort(order[start : start + BATCH])
        ds.read(np.array_split(batch, share.size)[share.rank])
    read_s = max(world.allgather(time.perf_counter() - t0))
    if world.rank == 0:
        result = {
            "train_s": train_s,
            "read_epoch_s": read_s,
            "final_loss": part["history"]["loss"][0][-1],
            "engine": part["engine"],
            "threads": torch.get_num_threads(),
        }
        out.write_text(json.dumps(result))


def _run(p: int, threads: int, folder: Path, epochs: int, smoke: bool) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "mpiexec"
    out = folder / f"result-{p}-{threads}.json"
    cmd = [str(exe), "-n", str(p), sys.executable, "-m", "benchmarks.hybrid_scaling"]
    cmd += ["--worker", str(folder), "--out", str(out), "--epochs", str(epochs)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"P={p} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small check, not the figure")
    parser.add_argument("--dir", type=Path, help="parent of the temporary data folder")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker, args.epochs, args.out)
        return
    size = SMOKE if args.smoke else FULL
    folder = Path(tempfile.mkdtemp(prefix="trustml-hybrid-", dir=args.dir))
    try:
        _write(folder, size["n"], size["shards"], size["shape"])
        data_mb = sum(f.stat().st_size for f in folder.glob("*.h5")) / 2**20
        layouts = {"P=1": (1, 1), "P=2,D=2": (2, 1)}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in layouts}
        for _ in range(size["repeats"]):
            for name, (p, threads) in layouts.items():
                runs[name].append(_run(p, threads, folder, size["epochs"], args.smoke))
        two_threads = _run(1, 2, folder, size["epochs"], args.smoke)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for name, (p, threads) in {**layouts, "P=1,2 threads": (1, 2)}.items():
        got = runs.get(name, [two_threads])
        rows.append(
            {
                "layout": name,
                "ranks": p,
                "threads_per_rank": threads,
                "train_s": round(statistics.median(r["train_s"] for r in got), 3),
                "train_s_runs": [round(r["train_s"], 3) for r in got],
                "read_epoch_s": round(statistics.median(r["read_epoch_s"] for r in got), 3),
                "final_loss": got[0]["final_loss"],
            }
        )
    t1, t2, t1_2 = (r["train_s"] for r in rows)
    one = runs["P=1"][0]
    report(
        "hybrid_scaling_smoke" if args.smoke else "hybrid_scaling",
        rows,
        workload=(
            f"{size['n']} samples of {'x'.join(map(str, size['shape']))} float32 in "
            f"{size['shards']} gzip-1 HDF5 shards ({data_mb:.0f} MB on disk), cnn {CHANNELS}, "
            f"1 member (loop engine), batch {BATCH}, {size['epochs']} epoch(s)"
        ),
        efficiency_d2=round(t1 / (2 * t2), 3),
        target_efficiency_d2=0.75,
        speedup_over_two_threads=round(t1_2 / t2, 3),
        read_fraction=round(one["read_epoch_s"] * size["epochs"] / one["train_s"], 3),
        loss_rel_diff=abs(rows[1]["final_loss"] - rows[0]["final_loss"])
        / abs(rows[0]["final_loss"]),
        engine=one["engine"],
        allreduce="mpi (trustml.distributed.DEFAULT_ALLREDUCE)",
    )


if __name__ == "__main__":
    main()
