"""RunResults: write -> load round trip, byte-stable JSON, atomic writes, clear load errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import trustml.report.html
from trustml.exceptions import DataError, TrustmlInputError
from trustml.report import RESULT_FILES, RunResults, write_report


@pytest.fixture(autouse=True)
def _stub_renderer(monkeypatch):
    """These tests are about files, not HTML (tested in test_html.py): skip drawing figures."""
    monkeypatch.setattr(
        trustml.report.html, "render_html", lambda results, **kw: "<html></html>"
    )


def test_round_trip_preserves_every_group(results, tmp_path):
    results.arrays["extra/flags"] = np.array([True, False])
    results.arrays["extra/names"] = np.array(["omega_m", "sigma_8"])
    results.arrays["extra/scalar"] = np.float16(2.5)
    results.arrays["extra/empty"] = np.zeros((0, 3), dtype=np.int32)
    out = results.write(tmp_path / "run")
    assert out == (tmp_path / "run").resolve()
    # The results files, and the marker that makes the folder recognisably trustml's.
    assert sorted(p.name for p in out.iterdir()) == sorted([*RESULT_FILES, ".trustml-run"])

    loaded = RunResults.load(out)
    assert loaded.summary == results.summary
    assert loaded.manifest == results.manifest
    assert loaded.protocol_text == results.protocol_text
    assert sorted(loaded.arrays) == sorted(results.arrays)
    for key, expected in results.arrays.items():
        got = loaded.arrays[key]
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        np.testing.assert_array_equal(got, expected, err_msg=key)


def test_protocol_text_is_copied_byte_for_byte(results, tmp_path):
    results.protocol_text = "trustml: 1\r\nname: caf\u00e9  # note\n\n"
    out = results.write(tmp_path / "run")
    assert (out / "protocol.yaml").read_bytes() == results.protocol_text.encode("utf-8")


def test_results_json_and_arrays_are_byte_identical_when_written_twice(results, tmp_path):
    a = results.write(tmp_path / "a")
    b = write_report(results, tmp_path / "b")
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    assert (a / "arrays.h5").read_bytes() == (b / "arrays.h5").read_bytes()


def test_results_json_is_sorted_and_independent_of_key_order(results, tmp_path):
    reordered = RunResults(
        summary=dict(reversed(list(results.summary.items()))),
        arrays=results.arrays,
        manifest=results.manifest,
        protocol_text=results.protocol_text,
    )
    a, b = results.write(tmp_path / "a"), reordered.write(tmp_path / "b")
    text = (a / "results.json").read_text()
    assert text == (b / "results.json").read_text()
    keys = list(json.loads(text))
    assert keys == sorted(keys)


def test_numpy_values_are_stored_as_plain_json(results, tmp_path):
    results.summary["extra"] = {
        "f32": np.float32(0.1),
        "i64": np.int64(3),
        "flag": np.bool_(True),
        "tuple": (1, 2),
        "vector": np.arange(3),
        "bad": float("nan"),
    }
    out = results.write(tmp_path / "run")
    extra = json.loads((out / "results.json").read_text())["extra"]
    assert extra == {
        "f32": float(np.float32(0.1)),
        "i64": 3,
        "flag": True,
        "tuple": [1, 2],
        "vector": [0, 1, 2],
        "bad": None,  # strict JSON has no NaN
    }


def test_floats_round_trip_exactly(results, tmp_path):
    values = [0.1, 1 / 3, 1e-300, 123456789.123456789, -0.0, math.pi]
    results.summary["floats"] = values
    loaded = RunResults.load(results.write(tmp_path / "run"))
    assert loaded.summary["floats"] == values


def test_unserialisable_summary_names_the_key(results, tmp_path):
    results.summary["data"]["when"] = object()
    with pytest.raises(TypeError, match=r"summary\.data\.when"):
        results.write(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_failed_render_leaves_no_directory(results, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(trustml.report.html, "render_html", broken)
    with pytest.raises(RuntimeError, match="renderer exploded"):
        results.write(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []  # neither the report nor its temporary directory


def test_failed_render_keeps_the_previous_report_intact(results, tmp_path, monkeypatch):
    out = results.write(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(trustml.report.html, "render_html", broken)
    results.summary["verdict"] = "fail"
    with pytest.raises(RuntimeError):
        results.write(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_load_rejects_a_missing_directory(tmp_path):
    with pytest.raises(DataError, match="no such results directory"):
        RunResults.load(tmp_path / "nope")


def test_load_rejects_a_directory_that_is_not_a_result(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(TrustmlInputError, match=r"not a trustml results directory.*manifest\.json"):
        RunResults.load(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("results.json", b"{not json", r"results\.json: not valid JSON"),
        ("manifest.json", b"[1, 2]", r"manifest\.json: expected a JSON object"),
        ("arrays.h5", b"garbage", r"arrays\.h5: not a readable HDF5 file"),
    ],
)
def test_load_names_the_corrupt_file(results, tmp_path, name, content, match):
    out = results.write(tmp_path / "run")
    (out / name).write_bytes(content)
    with pytest.raises(DataError, match=match):
        RunResults.load(out)


def test_load_rejects_an_hdf5_file_trustml_did_not_write(results, tmp_path):
    import h5py

    out = results.write(tmp_path / "run")
    with h5py.File(out / "arrays.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not written by trustml"):
        RunResults.load(out)


@pytest.mark.parametrize("key", ["/test/mean", "test//mean", "test/mean/", "", "a b"])
def test_bad_array_keys_are_rejected(key):
    with pytest.raises(ValueError, match="must be a path"):
        RunResults(summary={}, arrays={key: np.zeros(2)})


def test_array_under_another_array_is_rejected():
    with pytest.raises(ValueError, match="lies under the array 'test'"):
        RunResults(summary={}, arrays={"test": np.zeros(2), "test/mean": np.zeros(2)})


def test_object_arrays_are_rejected():
    with pytest.raises(TypeError, match=r"arrays\['x'\].*dtype object"):
        RunResults(summary={}, arrays={"x": np.array([{}, None], dtype=object)})


@pytest.mark.parametrize(("field", "value"), [("summary", []), ("manifest", "x"), ("arrays", 3)])
def test_groups_must_be_dicts(field, value):
    kwargs = {"summary": {}, field: value}
    with pytest.raises(TypeError, match=f"RunResults.{field} must be a dict"):
        RunResults(**kwargs)


def test_report_directory_is_as_readable_as_its_files(results, tmp_path):
    out = results.write(tmp_path / "run")
    file_mode = (out / "results.json").stat().st_mode & 0o777
    dir_mode = out.stat().st_mode & 0o777
    assert dir_mode & 0o444 == file_mode & 0o444  # not the 0700 of a bare temporary directory
    assert (dir_mode & 0o111) << 2 == dir_mode & 0o444  # searchable wherever readable
