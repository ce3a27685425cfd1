"""Attribution over ensemble members: trustml vs a plain Captum loop over members.

K = 8 small CNNs (``build_model("cnn", input_shape=(1, 32, 32), output_dim=4,
channels=(16, 32))``, seeds 0..7), 64 inputs, integrated gradients with 50 steps. trustml
(``strategy="auto"``, which stacks the members) is timed against

- ``captum_loop``: ``IntegratedGradients(member).attribute(x, target=0, n_steps=50)`` for every
  member, Captum's defaults (what one writes by hand);
- ``captum_loop_chunked``: the same with ``internal_batch_size`` set to the rows per pass
  trustml chose (a tuned hand-written loop);
- ``trustml_loop``: trustml with ``strategy="loop"``.

All must agree to 1e-5. The peak RSS of a ``[8, 1, 64, 64, 64]`` volume with IG (50 steps)
over 4 members is measured in a fresh subprocess. Run ``python -m benchmarks.attribution``;
``--quick`` runs fewer repeats.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from captum.attr import IntegratedGradients

from benchmarks._harness import best_of, report
from trustml.explain import attribute
from trustml.explain._members import Members
from trustml.models import build_model

K, N, STEPS = 8, 64, 50
SHAPE = (1, 32, 32)


class _Ensemble:
    """The smallest object honouring the attribution contract: ``explain_modules()``."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self._modules = modules

    def explain_modules(self) -> list[torch.nn.Module]:
        return self._modules


def _members(k: int, shape: tuple[int, ...]) -> list[torch.nn.Module]:
    mods = []
    for seed in range(k):
        torch.manual_seed(seed)
        mods.append(build_model("cnn", input_shape=shape, output_dim=4, channels=(16, 32)).eval())
    return mods


def _captum_loop(mods, x, ibs=None) -> np.ndarray:
    return np.stack(
        [
            IntegratedGradients(m)
            .attribute(x, target=0, n_steps=STEPS, internal_batch_size=ibs)
            .detach()
            .numpy()
            for m in mods
        ]
    )


def _peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the process image and starts
    afresh at ``exec``; ``ru_maxrss`` would carry over the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _volume(members: int, device: str) -> dict:
    """Runs in a fresh process: peak RSS of IG on a [8, 1, 64, 64, 64] volume."""
    mods = [m.to(device) for m in _members(members, (1, 64, 64, 64))]
    x = torch.randn(8, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0))
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    a = attribute(_Ensemble(mods), x, method="integrated_gradients", target=0, n_steps=STEPS)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mb()
    gap = np.abs(a.members.reshape(members, 8, -1).sum(-1) - (a.outputs - a.baseline_outputs))
    return {
        "volume_shape": [8, 1, 64, 64, 64],
        "volume_members": members,
        "volume_strategy": a.strategy,
        "volume_s": seconds,
        "volume_rss_before_mb": rss0,
        "volume_peak_rss_mb": peak,
        "volume_gpu_peak_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        ),
        "volume_completeness_max_abs_gap": float(gap.max()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, for smoke tests")
    parser.add_argument("--volume-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.volume_only:
        print(json.dumps(_volume(4, args.device)))
        return
    repeats = 1 if args.quick else 5
    # The volume first, in a fresh process, while this one is still small.
    volume = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.attribution",
                "--volume-only",
                "--device",
                args.device,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    device = torch.device(args.device)
    mods = [m.to(device) for m in _members(K, SHAPE)]
    ens = _Ensemble(mods)
    x = torch.randn(N, *SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    rows = Members(mods).rows_per_pass(x[:1])

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    results: dict[str, np.ndarray] = {}

    def run(name, fn):
        def timed():
            results[name] = fn()
            sync()

        return timed

    fns = {
        "trustml": run("trustml", lambda: attribute(ens, x, n_steps=STEPS).members),
        "trustml_loop": run(
            "trustml_loop", lambda: attribute(ens, x, n_steps=STEPS, strategy="loop").members
        ),
        "captum_loop": run("captum_loop", lambda: _captum_loop(mods, x)),
        "captum_loop_chunked": run("captum_loop_chunked", lambda: _captum_loop(mods, x, rows)),
    }
    for fn in fns.values():  # warm-up (allocator, oneDNN/cuDNN primitives)
        fn()
    seconds = {name: float("inf") for name in fns}
    for _ in range(repeats):  # interleaved, so drifting machine load hits all alike
        for name, fn in fns.items():
            seconds[name] = min(seconds[name], best_of(fn, repeats=1))
    ref = results["captum_loop"]
    diffs = {name: float(np.abs(res - ref).max()) for name, res in results.items()}
    if max(diffs.values()) > 1e-5:
        raise SystemExit(f"attributions differ from the Captum loop by more than 1e-5: {diffs}")
    rows_table = [
        {
            "variant": name,
            "seconds": seconds[name],
            "ratio_vs_captum_loop": seconds[name] / seconds["captum_loop"],
            "max_abs_diff": diffs[name],
        }
        for name in fns
    ]
    report(
        "attribution",
        rows_table,
        members=K,
        inputs=[N, *SHAPE],
        method="integrated_gradients",
        n_steps=STEPS,
        rows_per_pass=rows,
        strategy=attribute(ens, x[:2], n_steps=2).strategy,
        trustml_s=seconds["trustml"],
        captum_loop_s=seconds["captum_loop"],
        captum_loop_chunked_s=seconds["captum_loop_chunked"],
        trustml_loop_s=seconds["trustml_loop"],
        time_ratio_vs_captum_loop=seconds["trustml"] / seconds["captum_loop"],
        time_ratio_vs_captum_loop_chunked=seconds["trustml"] / seconds["captum_loop_chunked"],
        max_abs_diff_vs_captum_loop=diffs["trustml"],
        repeats=repeats,
        **volume,
    )


if __name__ == "__main__":
    main()
