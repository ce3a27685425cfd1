"""``data.loader`` (random or chunk-aligned block order), ``data.stage`` (node-local copies of
the training files) and the many-file index cached next to the output."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

from trustml.cli import main
from trustml.data import HDF5Dataset, export_builtin
from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol
from trustml.protocol._loader import AUTO_BLOCKS_ABOVE_BYTES, STAGE_MARKER, loader_order

BASE: dict[str, Any] = {
    "trustml": 1,
    "name": "loader",
    "seed": 3,
    "device": "cpu",
    "data": {"hdf5": {"files": "shards/*.h5"}},
    "task": "regression",
    "model": {"builtin": "mlp", "options": {"hidden": [16]}},
    "uncertainty": {"members": 2, "train": {"epochs": 2, "batch_size": 16}},
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "coverage"],
}


def _export(folder: Path, n_shards: int = 6) -> list[Path]:
    """cosmology2d (120 samples) in ``n_shards`` chunked shard files under ``folder/shards``."""
    one = export_builtin("cosmology2d", folder / "one.h5", seed=3, n=120, size=8)
    shards = []
    with h5py.File(one, "r") as src:
        step = src["y"].shape[0] // n_shards
        for k in range(n_shards):
            path = folder / "shards" / f"part-{k:03d}.h5"
            path.parent.mkdir(exist_ok=True)
            with h5py.File(path, "w") as dst:
                for key in ("x", "y"):
                    part = src[key][k * step : (k + 1) * step]
                    ds = dst.create_dataset(key, data=part, chunks=(5, *part.shape[1:]))
                    ds.attrs.update(dict(src[key].attrs))
            shards.append(path)
    return shards


def _with(**data: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw["data"].update(data)
    return raw


def _run(raw: dict[str, Any], folder: Path, out: str) -> Path:
    outcome = run_protocol(
        parse_protocol(copy.deepcopy(raw)), yaml.safe_dump(raw), base_dir=folder,
        out=folder / out, progress=False,
    )  # fmt: skip
    assert outcome.outdir is not None
    return outcome.outdir


# -- the keys ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"loader": {"order": "shuffled"}}, "data.loader.order", "one of 'auto', 'random'"),
        ({"loader": {"order": "blocks", "buffer": 0}}, "data.loader.buffer", ">= 1"),
        ({"loader": {"order": "random", "buffer": 64}}, "data.loader.buffer", "order: blocks"),
        ({"loader": {"prefetch": 5}}, "data.loader.prefetch", "<= 4"),
        ({"loader": {"buffers": 64}}, "data.loader.buffers", "did you mean 'buffer'"),
        ({"stage": ""}, "data.stage", "at least 1 character"),
    ],
)
def test_loader_and_stage_keys_are_checked(data: dict, key: str, words: str) -> None:
    with pytest.raises(ProtocolError, match=words) as err:
        parse_protocol(_with(**data))
    assert err.value.key == key


def test_stage_needs_hdf5_data() -> None:
    raw = _with(stage="/tmp/x")
    raw["data"] = {"builtin": "cosmology2d", "stage": "/tmp/x"}
    with pytest.raises(ProtocolError, match="builtin data is made in memory") as err:
        parse_protocol(raw)
    assert err.value.key == "data.stage"


def test_auto_reads_blocks_above_the_threshold_from_shapes_only(tmp_path: Path) -> None:
    # A 2.4 GB dataset whose chunks were never written: the file is tiny, the shapes are not.
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=(600, 1, 1024, 1024), dtype="f4", chunks=(1, 1, 1024, 1024))
        f.create_dataset("y", data=np.arange(600.0))
    big = HDF5Dataset(path, validate=False)
    assert path.stat().st_size < 10**6 and big.stored_bytes() > AUTO_BLOCKS_ABOVE_BYTES
    protocol = parse_protocol(_with())
    assert loader_order(protocol, big) == "blocks"
    assert loader_order(protocol, big.subset(np.arange(100))) == "random"  # 0.4 GB
    pinned = parse_protocol(_with(loader={"order": "random"}))
    assert loader_order(pinned, big) == "random"


# -- block order in a run ---------------------------------------------------------------------
def test_block_order_runs_and_reproduces(tmp_path: Path) -> None:
    _export(tmp_path)
    raw = _with(loader={"order": "blocks", "buffer": 24, "prefetch": 2})
    a = _run(raw, tmp_path, "a")
    b = _run(raw, tmp_path, "b")
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    plain = _run(_with(), tmp_path, "plain")  # auto: small data reads in random order
    ra, rp = (json.loads((d / "results.json").read_text()) for d in (a, plain))
    assert ra["metrics"]["rmse"]["value"] != rp["metrics"]["rmse"]["value"]
    assert np.isfinite(ra["metrics"]["nll"]["value"])


# -- staging ----------------------------------------------------------------------------------
def test_staging_copies_reads_and_cleans_up_with_identical_results(tmp_path: Path) -> None:
    shards = _export(tmp_path)
    stage = tmp_path / "scratch" / "job1"
    plain = _run(_with(), tmp_path, "plain")
    staged = _run(_with(stage=str(stage)), tmp_path, "staged")
    assert (plain / "results.json").read_bytes() == (staged / "results.json").read_bytes()
    manifest = json.loads((staged / "manifest.json").read_text())
    info = manifest["staging"]
    # cosmology2d's 84 training samples (of 120) lie in all six files
    assert info["files"] == 6 and info["ranks"] == 1
    assert info["bytes"] == sum(p.stat().st_size for p in shards)
    assert info["seconds"] >= 0 and info["folder"] == str(stage)
    assert (
        manifest["data_fingerprint"]
        == json.loads((plain / "manifest.json").read_text())["data_fingerprint"]
    )
    assert not stage.exists()  # created by the run, removed with its copies
    assert "staging" not in json.loads((plain / "manifest.json").read_text())


def test_staging_one_file_into_an_empty_folder_leaves_it_empty(tmp_path: Path) -> None:
    export_builtin("cosmology2d", tmp_path / "one.h5", seed=3, n=120, size=8)
    stage = tmp_path / "scratch"
    stage.mkdir()
    raw = _with(hdf5={"path": "one.h5"})
    plain = _run(raw, tmp_path, "plain")
    staged = _run(_with(hdf5={"path": "one.h5"}, stage="scratch"), tmp_path, "staged")
    assert (plain / "results.json").read_bytes() == (staged / "results.json").read_bytes()
    assert json.loads((staged / "manifest.json").read_text())["staging"]["files"] == 1
    assert stage.is_dir() and not list(stage.iterdir())  # the marker only lived with the run


def test_a_foreign_stage_folder_is_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _export(tmp_path, n_shards=2)
    stage = tmp_path / "thesis"
    stage.mkdir()
    (stage / "chapter1.tex").write_text("keep me")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_with(stage=str(stage))))
    code = main(["evaluate", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "data.stage" in err and "not a trustml staging folder" in err and "chapter1.tex" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in stage.iterdir()) == ["chapter1.tex"]


def test_a_stage_folder_left_by_a_killed_run_is_swept(tmp_path: Path) -> None:
    _export(tmp_path, n_shards=2)
    stage = tmp_path / "scratch"
    dead = stage / "run-deadbeef-rank0"
    dead.mkdir(parents=True)
    (stage / STAGE_MARKER).write_text("")
    (dead / ".lock").write_text("")  # nobody holds it: its run died
    (dead / "000000-part-000.h5").write_bytes(b"x" * 100)
    _run(_with(stage=str(stage)), tmp_path, "out")
    assert sorted(p.name for p in stage.iterdir()) == [STAGE_MARKER]  # not created by us


# -- the index cache --------------------------------------------------------------------------
def test_the_shard_index_is_cached_next_to_the_output(tmp_path: Path) -> None:
    shards = _export(tmp_path, n_shards=3)
    out = _run(_with(), tmp_path, "out")
    cache = out / "checkpoints" / "data_index.json"
    index = json.loads(cache.read_text())
    assert [e["path"] for e in index["files"]] == [str(p) for p in shards]
    assert index["validated"] is True
    # A protocol that fails in planning writes nothing, not even the cache.
    bad = _with()
    bad["uncertainty"]["train"]["batch_size"] = 16
    bad["model"] = {"factory": "no_such_module:make"}
    with pytest.raises(ProtocolError):
        _run(bad, tmp_path, "bad")
    assert not (tmp_path / "bad").exists()


def test_with_data_parallel_blocks_each_rank_stages_its_share_of_the_files(tmp_path: Path) -> None:
    from trustml.distributed import SerialComm
    from trustml.protocol._plan import make_plan
    from trustml.protocol._staging import _files_to_stage

    _export(tmp_path)
    raw = _with(loader={"order": "blocks"}, stage="scratch")
    raw["parallel"] = {"data": 2}
    protocol = parse_protocol(raw)

    class Rank0Of2(SerialComm):  # planning as rank 0 of 2 (it runs no collective)
        size = 2

    plan = make_plan(protocol, tmp_path, Rank0Of2())
    train = plan.splits["train"]
    per_rank = [_files_to_stage(protocol, plan, rank) for rank in range(2)]
    everything = sorted(set(np.searchsorted([20, 40, 60, 80, 100, 120], train, "right")))
    assert sorted(set(per_rank[0]) | set(per_rank[1])) == everything
    assert len(per_rank[0]) < len(everything) and len(per_rank[1]) < len(everything)
    assert max(per_rank[0]) <= min(per_rank[1])  # contiguous halves (one file may be shared)
    random = parse_protocol({**raw, "data": {**raw["data"], "loader": {"order": "random"}}})
    assert _files_to_stage(random, plan, 1) == everything  # random batches touch every file
