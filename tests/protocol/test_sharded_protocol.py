"""A protocol over many HDF5 shard files (``data.hdf5.files``) runs like the same data in one
file, and a missing shard exits 2 naming it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import h5py
import pytest
import yaml

from trustml.cli import main
from trustml.data import export_builtin
from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol

BASE: dict[str, Any] = {
    "trustml": 1,
    "name": "shards",
    "seed": 3,
    "device": "cpu",
    "data": {"hdf5": {"path": "one.h5"}},
    "task": "regression",
    "model": {"builtin": "mlp", "options": {"hidden": [16]}},
    "uncertainty": {"members": 2, "train": {"epochs": 1, "batch_size": 32}},
    "calibration": {"method": "conformal", "alpha": 0.2},
}


def _export(folder: Path, n_shards: int = 8) -> list[Path]:
    """cosmology2d in one file ``one.h5`` and the same samples in ``n_shards`` files."""
    one = export_builtin("cosmology2d", folder / "one.h5", seed=3, n=160, size=8)
    shards = []
    with h5py.File(one, "r") as src:
        n = src["y"].shape[0]
        step = n // n_shards
        for k in range(n_shards):
            path = folder / "shards" / f"part-{k:03d}.h5"
            path.parent.mkdir(exist_ok=True)
            with h5py.File(path, "w") as dst:
                for key in ("x", "y"):
                    ds = dst.create_dataset(key, data=src[key][k * step : (k + 1) * step])
                    ds.attrs.update(dict(src[key].attrs))
            shards.append(path)
    return shards


def _run(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    p = parse_protocol(copy.deepcopy(raw))
    return run_protocol(p, "", base_dir=base_dir, write=False, progress=False).results.summary


def _metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the data's source (the one thing that names the files)."""
    out = copy.deepcopy(summary)
    assert out["data"].pop("source").startswith("hdf5:")
    return out


def test_shards_give_the_same_results_as_one_file(tmp_path: Path) -> None:
    shards = _export(tmp_path)
    one = _run(BASE, tmp_path)
    glob_raw = copy.deepcopy(BASE)
    glob_raw["data"]["hdf5"] = {"files": "shards/*.h5"}
    listed = copy.deepcopy(BASE)
    # Listed in reverse, relative to the protocol folder: still read in sorted order.
    listed["data"]["hdf5"] = {"files": [str(p.relative_to(tmp_path)) for p in reversed(shards)]}
    by_glob, by_list = _run(glob_raw, tmp_path), _run(listed, tmp_path)
    assert _metrics(by_glob) == _metrics(one)
    assert _metrics(by_list) == _metrics(one)
    # Same values, same order: same fingerprint, same split, same scores.
    assert by_glob["data"]["n_samples"] == 160 and one["metrics"]["rmse"]["value"] > 0


@pytest.mark.parametrize(
    "hdf5, words",
    [
        ({"path": "one.h5", "files": "shards/*.h5"}, "exactly one of 'path'"),
        ({"inputs": "/x"}, "exactly one of 'path'"),
        ({"files": []}, "data.hdf5.files"),
    ],
)
def test_path_or_files(hdf5: dict[str, Any], words: str) -> None:
    raw = copy.deepcopy(BASE)
    raw["data"]["hdf5"] = hdf5
    with pytest.raises(ProtocolError, match=words):
        parse_protocol(raw)


def test_a_missing_shard_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = _export(tmp_path, n_shards=4)
    raw = copy.deepcopy(BASE)
    raw["data"]["hdf5"] = {"files": [str(p.relative_to(tmp_path)) for p in shards]}
    shards[2].unlink()
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    code = main(["evaluate", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and str(shards[2]) in err and "file not found" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_verify_names_a_many_file_source_it_refuses(tmp_path):
    from trustml.protocol.verify import _describe_data

    raw = {
        "trustml": 1, "name": "x", "task": "regression", "model": {"builtin": "mlp"},
        "data": {"hdf5": {"files": "shards/*.h5"}},
    }  # fmt: skip
    text = _describe_data(parse_protocol(raw), tmp_path)
    assert "shards/*.h5" in text and str(tmp_path) in text
