"""``trustml data export`` and :func:`export_builtin`: never a silent overwrite, one-line errors
for a destination that cannot be written, and nothing left behind when refused."""

from __future__ import annotations

import numpy as np
import pytest

from trustml.cli import main
from trustml.data import DataError, HDF5Dataset, export_builtin, load_builtin
from trustml.data._hdf5 import write_hdf5

SMALL = ["--seed", "3", "--option", "n=8", "--option", "size=8"]


def _export(out, *extra: str) -> int:
    return main(["data", "export", "cosmology2d", str(out), *SMALL, *extra])


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("trustml: error: ")
    assert "Traceback" not in err
    return err


def test_export_refuses_an_existing_file_and_leaves_its_bytes_alone(tmp_path, capsys):
    out = tmp_path / "existing.h5"
    out.write_bytes(b"precious, not HDF5\x00\x01")
    assert _export(out) == 2
    err = _one_line_error(capsys)
    assert err == f"trustml: error: {out}: already exists; pass --force to overwrite"
    assert out.read_bytes() == b"precious, not HDF5\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.h5"]  # no temp file


def test_export_with_force_overwrites(tmp_path, capsys):
    out = tmp_path / "existing.h5"
    out.write_bytes(b"old")
    assert _export(out, "--force") == 0
    assert f"wrote {out}" in capsys.readouterr().out
    ref = load_builtin("cosmology2d", seed=3, n=8, size=8)
    assert HDF5Dataset(out).fingerprint() == ref.fingerprint()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.h5"]


def test_export_to_a_folder_is_an_error_even_with_force(tmp_path, capsys):
    folder = tmp_path / "data.h5"
    folder.mkdir()
    for extra in ((), ("--force",)):
        assert _export(folder, *extra) == 2
        err = _one_line_error(capsys)
        assert str(folder) in err and "is a folder" in err
        assert list(folder.iterdir()) == []


def test_export_where_the_folder_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = blocker / "sub" / "d.h5"
    assert _export(out) == 2
    err = _one_line_error(capsys)
    assert str(out) in err and f"{blocker} is a file, not a folder" in err
    assert blocker.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_export_creates_missing_parent_folders(tmp_path):
    out = tmp_path / "new" / "deeper" / "d.h5"
    assert _export(out) == 0
    assert HDF5Dataset(out).n_samples == 8


@pytest.mark.parametrize(("key", "flag"), [("seed", "--seed"), ("overwrite", "--force")])
def test_export_options_that_are_flags(tmp_path, capsys, key, flag):
    out = tmp_path / "d.h5"
    assert _export(out, "--option", f"{key}=1") == 2
    err = _one_line_error(capsys)
    assert f"--option {key}" in err and f"use {flag}" in err
    assert not out.exists()


def test_export_builtin_overwrite_false_keeps_the_file(tmp_path):
    out = tmp_path / "keep.h5"
    out.write_bytes(b"keep")
    with pytest.raises(DataError, match=r"keep\.h5: already exists$"):
        export_builtin("cosmology2d", out, seed=0, overwrite=False, n=8, size=8)
    assert out.read_bytes() == b"keep"
    # The default keeps the documented behaviour: replace it.
    export_builtin("cosmology2d", out, seed=0, n=8, size=8)
    assert HDF5Dataset(out).n_samples == 8


def test_write_hdf5_destination_errors_are_data_errors(tmp_path):
    x = np.zeros((4, 1, 2, 2), np.float32)
    y = np.arange(4, dtype=np.float32)
    with pytest.raises(DataError) as info:
        write_hdf5(tmp_path, x, y)
    assert str(info.value) == f"{tmp_path}: is a folder; give the path of the .h5 file to write"
    (tmp_path / "f").write_text("")
    with pytest.raises(DataError, match="is a file, not a folder"):
        write_hdf5(tmp_path / "f" / "d.h5", x, y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
