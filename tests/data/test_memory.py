"""Streaming passes over a ~300 MB HDF5 file keep the peak memory far below the file size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

N_SAMPLES = 75_000  # x: [N, 1, 32, 32] float32 = 4 KiB per sample, about 307 MB in all
LIMIT_MB = 80

# Run in a fresh interpreter so that ru_maxrss measures only this work.
_SCRIPT = r"""
import json, resource, sys
import numpy as np
from trustml.data import HDF5Dataset

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

path = sys.argv[1]
ds = HDF5Dataset(path, validate=False)
ds.read(np.arange(4))  # warm up h5py and numpy code paths
base = peak_mb()
HDF5Dataset(path, validate=True)  # full NaN/inf scan at construction
ds.validate()
fingerprint = ds.fingerprint()
seen = 0
for x, y, idx in ds.iter_batches(batch_size=256):
    seen += len(idx)
order = np.random.default_rng(0).permutation(ds.n_samples)[:20_000]
for x, y, idx in ds.iter_batches(order, batch_size=512):
    assert x.shape == (len(idx), 1, 32, 32)
part = ds.subset(order)
part.validate()
sub_fingerprint = part.fingerprint()
print(json.dumps({"base": base, "peak": peak_mb(), "seen": seen, "fingerprint": fingerprint,
                  "sub_fingerprint": sub_fingerprint}))
"""


def _write_large_file(path: Path) -> int:
    rng = np.random.default_rng(0)
    block = 5_000
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", shape=(N_SAMPLES, 1, 32, 32), dtype="f4", chunks=(256, 1, 32, 32))
        y = f.create_dataset("y", shape=(N_SAMPLES, 2), dtype="f4")
        for start in range(0, N_SAMPLES, block):
            stop = min(start + block, N_SAMPLES)
            x[start:stop] = rng.standard_normal((stop - start, 1, 32, 32), dtype=np.float32)
            y[start:stop] = rng.standard_normal((stop - start, 2), dtype=np.float32)
    return path.stat().st_size


def test_streaming_passes_have_bounded_memory(tmp_path):
    path = tmp_path / "large.h5"
    size_mb = _write_large_file(path) / 2**20
    assert size_mb > 290
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(path)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["seen"] == N_SAMPLES
    assert len(result["fingerprint"]) == 64 and result["sub_fingerprint"] != result["fingerprint"]
    growth = result["peak"] - result["base"]
    assert growth < LIMIT_MB, f"peak RSS grew by {growth:.0f} MB over a {size_mb:.0f} MB file"
