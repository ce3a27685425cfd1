"""A protocol whose test split is streamed (predicted to disk, scored in chunks) writes the
results of the in-memory path, and leaves no staging behind."""

import gc
import json

import h5py
import numpy as np
import pytest

from trustml.protocol import parse_protocol, run_protocol
from trustml.protocol._stream_eval import STAGING_NAME, STREAM_ENV
from trustml.report import RunResults
from trustml.report._stored import StoredArray

pytestmark = pytest.mark.slow


def _protocol(tmp_path, task, method):
    rng = np.random.default_rng(0)
    n = 700
    x = rng.normal(size=(n, 6)).astype(np.float32)
    if task == "regression":
        y = (x[:, :2] + 0.5 * rng.normal(size=(n, 2))).astype(np.float32)
    else:
        y = (x[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(np.int64) + (x[:, 1] > 1)
    with h5py.File(tmp_path / "d.h5", "w") as h:
        h["x"], h["y"] = x[:, None, :], y  # [N, C, L]
    raw = {
        "trustml": 1,
        "name": f"stream-{task}",
        "seed": 5,
        "device": "cpu",
        "data": {
            "hdf5": {"path": "d.h5"},
            "split": {"train": 0.4, "calibration": 0.2, "test": 0.4},
        },
        "task": task,
        "model": {"builtin": "mlp", "options": {"hidden": [8]}},
        "uncertainty": {"members": 3, "train": {"epochs": 1, "batch_size": 64}},
        "calibration": {"method": method, "alpha": 0.2},
    }
    if task == "classification":  # explains the class read from the stored probabilities
        raw["attribution"] = {"n_examples": 3, "n_steps": 8}
    return parse_protocol(raw)


def _arrays(outdir):
    with h5py.File(outdir / "arrays.h5", "r") as f:
        out = {}
        f.visititems(
            lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None
        )
    return out


@pytest.mark.parametrize(
    ("task", "method"), [("regression", "conformal"), ("classification", "temperature")]
)
def test_streamed_test_split_gives_the_in_memory_results(tmp_path, monkeypatch, task, method):
    protocol = _protocol(tmp_path, task, method)
    monkeypatch.delenv(STREAM_ENV, raising=False)
    run_protocol(protocol, "", base_dir=tmp_path, out=tmp_path / "mem", progress=False)
    monkeypatch.setenv(STREAM_ENV, "0")  # every test split streamed
    outcome = run_protocol(protocol, "", base_dir=tmp_path, out=tmp_path / "str", progress=False)
    # The results hold the test split's arrays as stored arrays, not in memory ...
    stored = {k for k, v in outcome.results.arrays.items() if isinstance(v, StoredArray)}
    assert "test/probs" in stored or "test/mean" in stored
    assert any(k.endswith(("targets", "labels")) for k in stored)
    # ... and the written files are those of the in-memory path.
    mem = json.loads((tmp_path / "mem" / "results.json").read_text())
    got = json.loads((tmp_path / "str" / "results.json").read_text())
    assert got == mem
    a_mem, a_str = _arrays(tmp_path / "mem"), _arrays(tmp_path / "str")
    assert sorted(a_str) == sorted(a_mem)
    for key, value in a_mem.items():
        np.testing.assert_array_equal(a_str[key], value, err_msg=key)
    assert (tmp_path / "str" / "report.html").is_file()
    # The staging folder lives as long as the results that read it, then goes.
    assert (tmp_path / "str" / STAGING_NAME).is_dir()
    del outcome, stored
    gc.collect()
    assert not (tmp_path / "str" / STAGING_NAME).exists()
    assert RunResults.load(tmp_path / "str").summary == got
