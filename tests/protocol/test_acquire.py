"""``trustml acquire``: picks from an HDF5 pool, streamed, resumable, and its one-line errors."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import yaml

from trustml.cli import main
from trustml.data import load_builtin
from trustml.data.pool import PoolReader
from trustml.protocol import _methods, _picks_page, load_protocol
from trustml.protocol import acquire as acquire_mod
from trustml.utils.rundir import PICKS, write_files

MPIEXEC = Path(sys.executable).parent / "mpiexec"

CLASSIFY = {
    "trustml": 1,
    "name": "tiny",
    "seed": 3,
    "device": "cpu",
    "data": {"builtin": "digits", "options": {"n": 200}},
    "task": "classification",
    "model": {"builtin": "cnn", "options": {"channels": [4]}},
    "uncertainty": {
        "method": "deep_ensemble",
        "members": 2,
        "train": {"epochs": 1, "batch_size": 32},
    },
    "calibration": {"method": "none"},
    "metrics": ["accuracy"],
    "acceptance": {},
}
POOL_N = 300


def _write_pool(path: Path, x: np.ndarray, key: str = "x", chunk: int = 32) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=x, chunks=(min(chunk, len(x)), *x.shape[1:]))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("acquire")
    (root / "p.yaml").write_text(yaml.safe_dump(CLASSIFY, sort_keys=False))
    ds = load_builtin("digits", seed=9, n=POOL_N)
    x, _ = ds.read(np.arange(POOL_N))
    _write_pool(root / "pool.h5", x)
    code = main(["acquire", str(root / "p.yaml"), "--pool", str(root / "pool.h5"),
                 "--budget", "7", "--out", str(root / "first"), "--quiet"])  # fmt: skip
    assert code == 0
    return root


def _picks(out: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(out / "picks.h5", "r") as f:
        return f["indices"][()], f["scores"][()]


def _acquire(root: Path, out: Path, *extra: str, budget: int = 7) -> int:
    return main(["acquire", str(root / "p.yaml"), "--pool", str(root / "pool.h5"),
                 "--budget", str(budget), "--out", str(out), "--quiet", *extra])  # fmt: skip


def test_picks_are_distinct_in_the_pool_with_all_outputs(setup):
    out = setup / "first"
    idx, scores = _picks(out)
    assert idx.dtype == np.int64 and idx.shape == (7,) and scores.dtype == np.float64
    assert len(set(idx.tolist())) == 7 and idx.min() >= 0 and idx.max() < POOL_N
    assert np.all(np.diff(scores) <= 0)  # bald, top-k: most wanted first
    with h5py.File(out / "picks.h5", "r") as f:
        assert f.attrs["strategy"] == "bald" and f.attrs["budget"] == 7
        assert f.attrs["seed"] == 3 and f.attrs["pool"].endswith("pool.h5")
    with open(out / "picks.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["index", "score", "prediction", "total_uncertainty", "aleatoric",
                       "epistemic"]  # fmt: skip
    body = np.array(rows[1:], dtype=float)
    assert body.shape == (7, 6)
    assert np.array_equal(body[:, 0].astype(int), idx)
    np.testing.assert_allclose(body[:, 1], scores)
    np.testing.assert_allclose(body[:, 3], body[:, 4] + body[:, 5], rtol=1e-9)  # H = E[H] + MI
    np.testing.assert_allclose(body[:, 5], body[:, 1])  # bald score is the MI
    assert set(body[:, 2]) <= set(range(10))
    page = (out / "picks.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and str(idx[0]) in page and "http" not in page


def test_same_seed_same_picks_and_a_rerun_resumes_from_checkpoints(setup, tmp_path):
    first = setup / "first"
    ckpts = sorted((first / "checkpoints").rglob("*.pt"))
    assert len(ckpts) == 2
    before = {p: p.stat().st_mtime_ns for p in ckpts}
    assert _acquire(setup, first) == 0  # the re-run: members loaded, not retrained
    assert {p: p.stat().st_mtime_ns for p in ckpts} == before
    fresh = tmp_path / "fresh"  # trained again from scratch: the same picks
    assert _acquire(setup, fresh) == 0
    a, b = _picks(first), _picks(fresh)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for name in ("picks.html", "picks.csv"):  # byte for byte, thumbnails included
        assert (first / name).read_bytes() == (fresh / name).read_bytes(), name


def test_streaming_in_tiny_blocks_equals_one_pass(setup, tmp_path, monkeypatch):
    out = tmp_path / "small-blocks"
    shutil.copytree(setup / "first" / "checkpoints", out / "checkpoints")
    monkeypatch.setattr(acquire_mod, "POOL_CHUNK", 8)
    assert _acquire(setup, out) == 0
    a, b = _picks(setup / "first"), _picks(out)
    assert np.array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


@pytest.mark.parametrize("strategy", ["random", "power_bald", "batchbald", "margin"])
def test_other_strategies_pick_distinct_samples_reproducibly(setup, tmp_path, strategy):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        shutil.copytree(setup / "first" / "checkpoints", out / "checkpoints")
        assert _acquire(setup, out, "--strategy", strategy, budget=4) == 0
        runs.append(_picks(out)[0])
    assert np.array_equal(*runs) and len(set(runs[0].tolist())) == 4


def test_regression_defaults_to_epistemic_variance(tmp_path):
    raw = {**CLASSIFY, "task": "regression", "metrics": ["rmse"],
           "data": {"builtin": "cosmology2d", "options": {"n": 200, "size": 8}}}  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    x, _ = load_builtin("cosmology2d", seed=5, n=40, size=8).read(np.arange(40))
    _write_pool(tmp_path / "pool.h5", x, chunk=16)
    assert _acquire(tmp_path, tmp_path / "out", budget=5) == 0
    idx, scores = _picks(tmp_path / "out")
    with h5py.File(tmp_path / "out" / "picks.h5", "r") as f:
        assert f.attrs["strategy"] == "epistemic_variance"
    body = np.loadtxt(tmp_path / "out" / "picks.csv", delimiter=",", skiprows=1)
    assert len(set(idx.tolist())) == 5 and np.all(scores >= 0)
    np.testing.assert_allclose(body[:, 3], body[:, 4] + body[:, 5], rtol=1e-9)
    # the epistemic column is what the strategy ranks: both average the 2 targets
    np.testing.assert_allclose(body[:, 5], body[:, 1], rtol=1e-12)
    assert _captions((tmp_path / "out" / "picks.html").read_text()) == list(enumerate(idx, 1))


def _captions(page: str) -> list[tuple[int, int]]:
    """``(rank, pool index)`` of every thumbnail's caption, checked to be one per ``<img``."""
    found = re.findall(r"<img [^>]*><figcaption><b>#(\d+)</b> index (\d+) ", page)
    assert len(found) == page.count("<img")
    return [(int(k), int(i)) for k, i in found]


def _png_widths(page: str) -> list[int]:
    pngs = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    return [int.from_bytes(base64.b64decode(p)[16:20], "big") for p in pngs]


def test_page_shows_every_pick_with_its_rank_and_index(setup):
    idx, scores = _picks(setup / "first")
    page = (setup / "first" / "picks.html").read_text()
    assert _captions(page) == list(enumerate(idx.tolist(), 1)) and page.count("<img") == 7
    assert "all 7 picks" in page and "its one channel" in page  # digits: (1, 8, 8) images
    assert f"score {scores[0]:.4g}" in page and "<script" not in page


def test_page_is_capped_and_says_so(setup, tmp_path, monkeypatch):
    out = tmp_path / "capped"
    shutil.copytree(setup / "first" / "checkpoints", out / "checkpoints")
    monkeypatch.setattr(_picks_page, "PAGE_PICKS", 3)
    assert _acquire(setup, out, budget=5) == 0
    idx, _ = _picks(out)
    page = (out / "picks.html").read_text()
    assert _captions(page) == list(enumerate(idx[:3].tolist(), 1))
    assert "first 3 of 5 picks" in page and page.count("<tr><td>") == 5  # the table: all 5


def test_manifest_records_provenance_and_the_pool_fingerprint(setup, tmp_path):
    pool = shutil.copy(setup / "pool.h5", tmp_path / "pool.h5")
    text = (setup / "p.yaml").read_text()
    protocol, _ = load_protocol(setup / "p.yaml")

    def run(name: str, protocol=protocol) -> dict:
        out = tmp_path / name
        shutil.copytree(setup / "first" / "checkpoints", out / "checkpoints")
        acquire_mod.run_acquire(
            protocol, pool=pool, budget=3, out=out, protocol_text=text, command=["t"]
        )
        return json.loads((out / "picks.manifest.json").read_text())

    first = run("a")
    assert first["versions"]["trustml"] and first["protocol"] == "tiny"
    assert first["protocol_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert first["strategy"] == "bald" and first["budget"] == 3 and first["seed"] == 3
    assert first["mpi_world_size"] == 1 and first["command"] == ["t"]
    # data.fingerprint: auto is a full hash for this small data, recorded as for evaluate
    assert first["data_fingerprint_mode"] == "full"
    assert not first["data_fingerprint"].startswith("sampled-v1:")
    data = protocol.data.model_copy(update={"fingerprint": "sampled"})
    sampled = run("s", protocol.model_copy(update={"data": data}))
    assert sampled["data_fingerprint_mode"] == "sampled"
    assert sampled["data_fingerprint"].startswith("sampled-v1:")
    assert {"fit", "scoring", "selection"} <= set(first["timings_s"])
    assert first["pool"]["path"] == str(Path(pool).resolve())
    assert first["pool"]["shape"] == [POOL_N, 1, 8, 8] and first["pool"]["dtype"] == "<f4"
    with PoolReader(pool) as reader:
        assert first["pool_fingerprint"] == reader.fingerprint()["sha256"]
    x, _ = load_builtin("digits", seed=10, n=POOL_N - 1).read(np.arange(POOL_N - 1))
    _write_pool(Path(pool), x)  # the pool file is replaced
    assert run("b")["pool_fingerprint"] != first["pool_fingerprint"]
    # the command hashes the protocol file's text and records its own command line
    cli = json.loads((setup / "first" / "picks.manifest.json").read_text())
    assert cli["protocol_hashed"] == "the protocol file's text"
    text = (setup / "p.yaml").read_text(encoding="utf-8")
    assert cli["protocol_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert cli["command"][0] == "trustml"


def test_mc_dropout_picks_carry_epistemic_uncertainty(setup, tmp_path):
    raw = {**CLASSIFY, "model": {"builtin": "cnn", "options": {"channels": [4], "dropout": 0.2}},
           "uncertainty": {"method": "mc_dropout", "samples": 8,
                           "train": {"epochs": 1, "batch_size": 32}}}  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(setup / "pool.h5", tmp_path / "pool.h5")
    assert _acquire(tmp_path, tmp_path / "out", budget=4) == 0
    idx, _ = _picks(tmp_path / "out")
    body = np.loadtxt(tmp_path / "out" / "picks.csv", delimiter=",", skiprows=1)
    assert len(set(idx.tolist())) == 4 and np.all(body[:, 5] > 0)
    np.testing.assert_allclose(body[:, 5], body[:, 1])  # bald: the score is the epistemic MI


class _PerPixelModel:
    """Three members predicting two classes per pixel from the pixel's value."""

    def predict(self, x, batch_size=256, **_):
        v = np.asarray(x, dtype=np.float64)[:, 0]  # (N, 8, 8)
        p = np.stack([1 / (1 + np.exp(-(k + 1) * 4 * (v - 0.3))) for k in range(3)])
        return SimpleNamespace(member_probs=np.stack([p, 1 - p], axis=2))  # (3, N, 2, 8, 8)


def test_per_pixel_outputs_draw_an_uncertainty_map_next_to_each_pick(setup, tmp_path, monkeypatch):
    # No builtin model predicts per pixel, so a stand-in model does (no training).
    monkeypatch.setattr(_methods, "fit_method", lambda *a, **k: _PerPixelModel())
    out = tmp_path / "dense"
    assert _acquire(setup, out, budget=4) == 0
    page = (out / "picks.html").read_text()
    assert "epistemic uncertainty per pixel (mutual information" in page
    assert [i for _, i in _captions(page)] == _picks(out)[0].tolist()
    single = _png_widths((setup / "first" / "picks.html").read_text())[0]
    assert all(w > 1.8 * single for w in _png_widths(page))  # input and map side by side
    body = np.loadtxt(out / "picks.csv", delimiter=",", skiprows=1)
    assert np.all(body[:, 5] > 0)


@pytest.mark.parametrize(
    ("shape", "layout", "note"),
    [((1, 5, 6, 6), "NCDHW", "central slice: z = 2 of 5"),
     ((2, 3, 4, 6, 6), "NCTDHW", "channel 0 of 2 (central slice: t = 1 of 3, z = 2 of 4)"),
     ((12, 2), "NTF", "2 features over 12 steps"), ((9,), "NF", "features")],
)  # fmt: skip
def test_page_draws_inputs_of_every_rank(shape, layout, note):
    rows = np.tile([0.5, 1.0, 0.3, 0.2, 0.1], (3, 1))
    samples = np.random.default_rng(0).random((2, *shape))
    page = _picks_page.picks_page(
        np.array([5, 2, 8]), rows, {"task": "regression"}, samples=samples, layout=layout
    )
    assert _captions(page) == [(1, 5), (2, 2)] and note in page and "first 2 of 3" in page


def test_pool_take_reads_rows_in_the_order_asked(setup):
    with PoolReader(setup / "pool.h5") as pool:
        want = pool.read(0, POOL_N)[[17, 3, 250]]
        assert np.array_equal(pool.take([17, 3, 250]), want)
        with pytest.raises(ValueError, match="distinct"):
            pool.take([3, 3])


def _bad_cases(root: Path) -> dict[str, tuple[list[str], str]]:
    (root / "notes.txt").write_text("not hdf5")
    x = np.zeros((20, 1, 6, 6), dtype=np.float32)
    _write_pool(root / "wrong_shape.h5", x)
    _write_pool(root / "other_key.h5", np.zeros((20, 1, 8, 8), dtype=np.float32), key="images")
    return {
        "missing pool": (["--pool", str(root / "nope.h5")], "nope.h5"),
        "not hdf5": (["--pool", str(root / "notes.txt")], "notes.txt"),
        "inputs key missing": (["--inputs", "/images"], "'/images'"),
        "wrong sample shape": (["--pool", str(root / "wrong_shape.h5")], "(1, 6, 6)"),
        "budget zero": (["--budget", "0"], "--budget"),
        "budget above pool": (["--budget", str(POOL_N + 1)], "larger than the pool"),
        "unknown strategy": (["--strategy", "bold"], "'bold'"),
        "strategy of the other task": (["--strategy", "epistemic_variance"], "regression"),
    }


BAD = ["missing pool", "not hdf5", "inputs key missing", "wrong sample shape", "budget zero",
       "budget above pool", "unknown strategy", "strategy of the other task"]  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(setup, tmp_path, capsys, case):
    args, culprit = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    base = {"--pool": str(setup / "pool.h5"), "--budget": "3"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["acquire", str(setup / "p.yaml"), "--out", str(out), "--quiet"]
    argv += [item for kv in base.items() for item in kv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and culprit in err, err
    assert not out.exists()


def test_unknown_strategy_lists_the_valid_ones(setup, tmp_path, capsys):
    argv = ["acquire", str(setup / "p.yaml"), "--pool", str(setup / "pool.h5"), "--budget",
            "2", "--out", str(tmp_path / "o"), "--strategy", "bold"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bald" in err and "batchbald" in err and "power_bald" in err


def test_whole_pool_strategy_too_large_suggests_power_bald(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(acquire_mod, "WHOLE_POOL_BYTES", 1024)
    out = tmp_path / "o"
    argv = ["acquire", str(setup / "p.yaml"), "--pool", str(setup / "pool.h5"), "--budget",
            "2", "--out", str(out), "--strategy", "batchbald"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "batchbald" in err and "power_bald" in err
    assert not out.exists()


def test_picks_and_a_run_in_one_folder_leave_each_other_alone(tmp_path):
    out = tmp_path / "run"
    run_files = {n: (lambda p, n=n: p.write_text(n)) for n in ("manifest.json", "report.html")}
    write_files(out, {**run_files, "results.json": lambda p: p.write_text("{}")})
    write_files(
        out, {"picks.csv": lambda p: p.write_text("x"), "picks.h5": lambda p: p.write_text("h")}
    )
    assert {"manifest.json", "report.html", "results.json", "picks.csv", "picks.h5"} <= set(
        os.listdir(out)
    )
    # New picks replace the old ones (a stale picks file goes), the run's files stay.
    write_files(out, {"picks.csv": lambda p: p.write_text("y")})
    assert (out / "picks.csv").read_text() == "y" and not (out / "picks.h5").exists()
    assert (out / "results.json").read_text() == "{}" and (out / "report.html").exists()
    # A new run replaces the run's files and leaves the picks alone.
    write_files(out, {**run_files, "results.json": lambda p: p.write_text("[]")})
    assert (out / "results.json").read_text() == "[]" and (out / "picks.csv").read_text() == "y"


def test_picks_h5_moves_in_last_so_half_written_picks_never_look_complete(
    setup, tmp_path, monkeypatch
):
    out = tmp_path / "again"
    shutil.copytree(setup / "first", out)  # a re-run over complete picks
    moves, real_replace = [], os.replace

    def recording_replace(src, dst, *args, **kwargs):
        if Path(dst).parent == out and Path(dst).name.startswith("picks."):
            moves.append((Path(dst).name, (out / "picks.h5").exists()))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", recording_replace)
    assert _acquire(setup, out, budget=3) == 0
    monkeypatch.undo()
    names = [name for name, _ in moves]
    assert names[-1] == "picks.h5" and sorted(names) == sorted(PICKS)
    assert not any(complete for _, complete in moves)  # the old picks.h5 went first
    assert len(_picks(out)[0]) == 3


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not found next to the interpreter")
def test_two_ranks_pick_what_one_rank_picks(setup, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           acquire_mod.CHUNK_ENV: "64"}  # fmt: skip  # 5 blocks: both ranks score some
    cmd = [sys.executable, "-m", "trustml.cli", "acquire", str(setup / "p.yaml"), "--pool",
           str(setup / "pool.h5"), "--budget", "7", "--quiet"]  # fmt: skip
    subprocess.run([*cmd, "--out", str(tmp_path / "one")], check=True, env=env, timeout=300)
    two = subprocess.run(
        [str(MPIEXEC), "-n", "2", *cmd, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    a, b = _picks(tmp_path / "one"), _picks(tmp_path / "two")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
