"""A small model of a trustml epoch's time at scale, checked against the measured benchmarks.

``python -m benchmarks.scaling_model`` prints (and writes ``benchmarks/results/scaling_model.json``):

1. the figures docs/scaling.md quotes for a 100 TB, 1,000-GPU evaluation of a CosmoFlow-sized
   problem (bytes per sample, read bandwidth per GPU, staging time, memory per rank, epoch time
   against P, file-system bandwidth and staging), and
2. the model's prediction for this machine next to what ``benchmarks.data_throughput`` and
   ``benchmarks.hybrid_scaling`` measured (their JSON must exist; run them first).

The model (all times per epoch, an ensemble of K members on P ranks in G = P / D groups of D
data-parallel ranks; each group trains k = ceil(K / G) members as vectorized lanes, and one read
of a sample serves all k lanes):

- compute  ``T_c = N * k / (D * r)``   with r samples/s of one member on one GPU
- gradient averaging ``T_ar = N / (D * b) * (alpha + 2 * k * W * 4 / beta)`` when D > 1
  (one allreduce of the k lanes' W float32 weights per step; b samples per rank per step)
- reading  ``T_io = max(G * N * s / B_fs, g * (N * s / D) / B_node)`` from the parallel
  file system (every group reads the whole split once per epoch), or ``(N * s / D) / B_local``
  from node-local copies
- staging (once per run) ``T_stage = g * (N * s / D) / min(B_fs / nodes, B_node, B_write)``
- epoch ``T = max(T_c + T_ar, T_io)`` (the background reader overlaps reading with compute).

Facts carried over (not measured here): CosmoFlow samples are 128^3 voxels x 4 redshift
channels (MLPerf HPC), stored as int16 in the preprocessed sets (5.1 TB for 262,144 training +
65,536 validation samples in MLPerf HPC v0.7); the reference implementation trains about 14
samples/s per V100 and optimised submissions about 65 samples/s per A100.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks._harness import RESULTS_DIR, report

GB = 1e9
TB = 1e12


@dataclass(frozen=True)
class Cluster:
    """A machine: P GPUs (ranks), g per node, and its bandwidths in bytes/s."""

    gpus: int
    gpus_per_node: int
    fs_bandwidth: float  # aggregate parallel file system read bandwidth
    node_link: float  # one node's network injection bandwidth
    local_read: float  # node-local storage (NVMe / DRAM) read bandwidth per rank
    local_write: float  # node-local write bandwidth per node (staging)
    allreduce_alpha: float = 20e-6  # latency per allreduce, s
    allreduce_beta: float = 20 * GB  # ring allreduce bus bandwidth, bytes/s

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_node)


@dataclass(frozen=True)
class Workload:
    """N samples of s bytes; K members of W weights; r samples/s of one member on one GPU."""

    samples: int
    sample_bytes: float
    members: int
    weights: int
    rate: float
    local_batch: int = 4  # samples per rank per step (a 128^3 x 4 volume fills a GPU quickly)


def epoch(w: Workload, c: Cluster, data_parallel: int, *, staged: bool) -> dict[str, float]:
    """Seconds per epoch of the model above (and its parts) for one layout."""
    p, d = c.gpus, data_parallel
    groups = p // d
    lanes = math.ceil(w.members / groups)
    t_c = w.samples * lanes / (d * w.rate)
    t_ar = 0.0
    if d > 1:
        steps = w.samples / (d * w.local_batch)  # global batch = D x local batch
        t_ar = steps * (c.allreduce_alpha + 2 * lanes * w.weights * 4 / c.allreduce_beta)
    share = w.samples * w.sample_bytes / d  # bytes one rank reads per epoch
    if staged:
        t_io = share / c.local_read
    else:
        t_io = max(
            groups * w.samples * w.sample_bytes / c.fs_bandwidth,
            c.gpus_per_node * share / c.node_link,
        )
    stage = c.gpus_per_node * share / min(c.fs_bandwidth / c.nodes, c.node_link, c.local_write)
    return {
        "D": d,
        "groups": groups,
        "lanes_per_rank": lanes,
        "compute_s": t_c,
        "allreduce_s": t_ar,
        "read_s": t_io,
        "epoch_s": max(t_c + t_ar, t_io),
        "io_bound": t_io > t_c + t_ar,
        "stage_once_s": stage if staged else 0.0,
        "read_per_rank_gb_per_s": share / max(t_c + t_ar, t_io) / GB,
        "staged_gb_per_node": c.gpus_per_node * share / GB if staged else 0.0,
    }


def cosmoflow_100tb() -> dict[str, Any]:
    """The docs/scaling.md case: 100 TB of 128^3 x 4 int16 samples, 8 members, 1,000 GPUs."""
    sample_bytes = 128**3 * 4 * 2  # int16 on disk
    samples = int(100 * TB // sample_bytes)
    out: dict[str, Any] = {
        "sample_bytes": sample_bytes,
        "sample_bytes_float32": 128**3 * 4 * 4,
        "samples": samples,
        "check_mlperf_v07_tb": round((262_144 + 65_536) * sample_bytes / TB, 2),
    }
    for gpu, rate in (("V100 reference", 14.0), ("A100 optimised", 65.0)):
        out[f"read_mb_per_s_per_gpu_{gpu.split()[0]}"] = round(rate * sample_bytes / 1e6, 1)
    # A Perlmutter-class system: 4 GPUs per node, 4 x 25 GB/s injection, an all-flash Lustre.
    rows = []
    wl = Workload(
        samples=samples, sample_bytes=sample_bytes, members=8, weights=3_000_000, rate=65.0
    )
    for fs in (1 * TB, 5 * TB):
        for p in (256, 1024):
            c = Cluster(
                gpus=p,
                gpus_per_node=4,
                fs_bandwidth=fs,
                node_link=100 * GB,
                local_read=5 * GB,
                local_write=10 * GB,
            )
            for d in sorted({p // 8, p // 2, p}):
                for staged in (False, True):
                    e = epoch(wl, c, d, staged=staged)
                    rows.append(
                        {
                            "P": p,
                            "fs_tb_per_s": fs / TB,
                            "staged": staged,
                            **{
                                k: (round(v, 2) if isinstance(v, float) else v)
                                for k, v in e.items()
                            },
                        }
                    )
    out["rows"] = rows
    # Memory per rank: the loader holds about two windows (the one training, the one read
    # ahead) of float32 samples; streaming evaluation holds per-sample scalars.
    window = 64
    out["loader_window_samples"] = window
    out["loader_memory_gb"] = round(2 * window * 128**3 * 4 * 4 / GB, 2)
    out["eval_per_sample_scalars_mb"] = round(samples * 8 * 4 / 1e6, 1)
    return out


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def check_here() -> dict[str, Any]:
    """The model's prediction for this machine against the measured benchmarks."""
    checks: dict[str, Any] = {}
    hybrid = _load("hybrid_scaling")
    allreduce = _load("allreduce")
    if hybrid is not None and allreduce is not None:
        one = next(r for r in hybrid["rows"] if r["layout"] == "P=1")
        two = next(r for r in hybrid["rows"] if r["layout"] == "P=2,D=2")
        # 512 samples, batch 32, 2 epochs: 32 steps, one allreduce each. The CNN has fewer
        # than 10^5 weights: the 10^5-float allreduce time bounds its cost from above.
        steps = 512 // 32 * 2
        t_ar = next(
            r["ms_per_call"] for r in allreduce["rows"]
            if r["engine"] == "mpi" and r["floats"] == 100_000
        ) / 1e3  # fmt: skip
        t1 = one["train_s"]
        predicted_t2 = t1 / 2 + steps * t_ar
        checks["hybrid_t1_s"] = t1
        checks["hybrid_predicted_t2_s"] = round(predicted_t2, 3)
        checks["hybrid_measured_t2_s"] = two["train_s"]
        checks["hybrid_predicted_efficiency"] = round(t1 / (2 * predicted_t2), 3)
        checks["hybrid_measured_efficiency"] = hybrid.get("efficiency_d2")
        checks["hybrid_read_epoch_s_p1_vs_p2"] = [one["read_epoch_s"], two["read_epoch_s"]]
    throughput = _load("data_throughput")
    streaming = _load("eval_streaming")
    if streaming is not None:
        checks["eval_peak_rss_over_cap"] = streaming.get("peak_rss_over_cap")
    if throughput is not None:
        checks["loader_throughput_ratio"] = throughput.get("throughput_ratio")
        checks["loader_rss_growth_mb"] = throughput.get("rss_growth_mb")
        raw, loader = throughput["rows"][0], throughput["rows"][1]
        checks["raw_read_gib_per_s_here"] = raw["gib_per_s"]
        checks["loader_gib_per_s_here"] = loader["gib_per_s"]
        # What this machine's loader could feed: CosmoFlow int16 samples per second.
        checks["cosmoflow_samples_per_s_this_loader_feeds"] = round(
            loader["gib_per_s"] * 1024**3 / (128**3 * 4 * 2), 1
        )
    return checks


def main() -> None:
    case = cosmoflow_100tb()
    here = check_here()
    rows = case.pop("rows")
    report(
        "scaling_model",
        rows,
        cosmoflow_100tb=case,
        here=here,
        assumptions={
            "cluster": asdict(Cluster(1024, 4, 5 * TB, 100 * GB, 5 * GB, 10 * GB)),
            "workload": "8 members, 3M weights each, 65 samples/s per member per A100",
        },
    )
    print(json.dumps({"cosmoflow_100tb": case, "here": here}, indent=2))


if __name__ == "__main__":
    main()
