"""``data.fingerprint``: the mode a run fingerprints its data with is recorded in the manifest,
shown in the report, and reused by ``trustml verify``."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import h5py
import pytest
import yaml

from trustml.data import HDF5Dataset, export_builtin
from trustml.data._fingerprint import FINGERPRINT_MODES
from trustml.exceptions import DataError
from trustml.protocol import parse_protocol, run_protocol
from trustml.protocol._data_spec import DataSpec
from trustml.protocol.verify import verify_run
from trustml.report.sections import reproducibility

BASE: dict[str, Any] = {
    "trustml": 1,
    "name": "fingerprints",
    "seed": 3,
    "device": "cpu",
    "data": {"hdf5": {"path": "d.h5"}},
    "task": "regression",
    "model": {"builtin": "mlp", "options": {"hidden": [8]}},
    "uncertainty": {"members": 2, "train": {"epochs": 1, "batch_size": 32}},
    "calibration": {"method": "conformal", "alpha": 0.2},
}


def _run(tmp_path: Path, mode: str | None) -> tuple[Path, dict[str, Any]]:
    export_builtin("cosmology2d", tmp_path / "d.h5", seed=3, n=120, size=8)
    raw = json.loads(json.dumps(BASE))
    if mode is not None:
        raw["data"]["fingerprint"] = mode
    text = yaml.safe_dump(raw)
    out = tmp_path / "out"
    run_protocol(parse_protocol(raw), text, base_dir=tmp_path, out=out, progress=False)
    return out, json.loads((out / "manifest.json").read_text())


def test_the_modes_are_declared_once() -> None:
    modes = typing.get_args(DataSpec.model_fields["fingerprint"].annotation)
    assert set(modes) == set(FINGERPRINT_MODES)
    assert DataSpec(builtin="cosmology2d").fingerprint == "auto"


def test_default_small_data_is_fingerprinted_in_full(tmp_path: Path) -> None:
    _, manifest = _run(tmp_path, None)
    assert manifest["data_fingerprint_mode"] == "full"
    assert "data_fingerprint_sample" not in manifest
    assert manifest["data_fingerprint"] == HDF5Dataset(tmp_path / "d.h5").fingerprint()


def test_sampled_run_is_recorded_shown_and_verified(tmp_path: Path) -> None:
    out, manifest = _run(tmp_path, "sampled")
    assert manifest["data_fingerprint_mode"] == "sampled"
    assert manifest["data_fingerprint"].startswith("sampled-v1:")
    assert manifest["data_fingerprint_sample"]["chunks"] >= 1
    summary = json.loads((out / "results.json").read_text())
    assert summary["data"]["fingerprint"] == manifest["data_fingerprint"]
    shown = reproducibility._fingerprint_mode(manifest)
    assert shown is not None and shown.startswith("sampled:") and "not every byte" in shown

    assert verify_run(out).reproduced  # fingerprinted again with the recorded mode

    with h5py.File(tmp_path / "d.h5", "a") as f:  # a header change: refused before re-running
        f["x"].attrs["units"] = "K"
    with pytest.raises(DataError, match="data changed"):
        verify_run(out)


def test_verify_uses_the_recorded_mode_not_auto_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustml.data import _fingerprint

    monkeypatch.setattr(_fingerprint, "SAMPLED_ABOVE_BYTES", 1)  # "big" data: auto samples
    out, manifest = _run(tmp_path, None)
    assert manifest["data_fingerprint_mode"] == "sampled"
    monkeypatch.setattr(_fingerprint, "SAMPLED_ABOVE_BYTES", 10 * 1000**3)  # auto would be full
    assert verify_run(out).reproduced


def test_report_text_for_each_mode() -> None:
    assert reproducibility._fingerprint_mode({}) is None  # older runs recorded no mode
    assert reproducibility._fingerprint_mode({"data_fingerprint_mode": "full"}).startswith("full")
    text = reproducibility._fingerprint_mode(
        {
            "data_fingerprint_mode": "sampled",
            "data_fingerprint_sample": {"seed": 0, "chunks": 64, "of": 9000, "rows_per_chunk": 16},
        }
    )
    assert text is not None and "64 of 9,000 chunks of up to 16 rows (seed 0)" in text
