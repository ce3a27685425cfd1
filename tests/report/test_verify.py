"""``trustml verify``: exit 0 on an unchanged run, 1 with a table of differences on a tampered
one, ``--rtol`` for tiny numerical differences, exit 2 when the data changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from _report_data import make_results

from trustml.cli import main
from trustml.protocol import runner
from trustml.protocol.verify import Difference, compare_results
from trustml.report import RunResults

TINY = {
    "trustml": 1,
    "name": "tiny",
    "seed": 3,
    "device": "cpu",
    "data": {"hdf5": {"path": "data.h5", "inputs": "/x", "targets": "/y"}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 8, "dropout": 0.1}},
    "uncertainty": [
        {"method": "deep_ensemble", "members": 2, "train": {"epochs": 1, "batch_size": 32}},
        {"method": "mc_dropout", "samples": 5, "train": {"epochs": 1, "batch_size": 32}},
    ],
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "coverage"],
    "attribution": {
        "methods": ["integrated_gradients", "saliency"],
        "n_examples": 2,
        "n_steps": 8,
        "target": 0,
        "checks": ["completeness", "deletion"],
    },
    "acceptance": {"coverage": {"min": 0.0}, "rmse@mc_dropout": {"max": 100.0}},
    "claims": "A tiny run for the tests.",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (builtin cosmology2d, n=120, 8x8, exported to HDF5 so it can change)."""
    root = tmp_path_factory.mktemp("tiny")
    assert main(["data", "export", "cosmology2d", str(root / "data.h5"),
                 "--option", "n=120", "--option", "size=8"]) == 0  # fmt: skip
    (root / "p.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    assert main(["evaluate", str(root / "p.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A private copy of the finished run (its protocol_dir still points at the data)."""
    return Path(shutil.copytree(finished / "run", tmp_path / "run"))


def test_runner_output_matches_the_results_schema(finished):
    jsonschema = pytest.importorskip("jsonschema")
    from trustml.report import results_schema

    summary = json.loads((finished / "run" / "results.json").read_text())
    validator = jsonschema.Draft202012Validator(results_schema())
    assert [e.message for e in validator.iter_errors(summary)] == []
    assert set(summary["methods"]) == {"deep_ensemble", "mc_dropout"}


def test_runner_output_renders_every_section_it_has(finished):
    from _page import Page

    page = Page((finished / "run" / "report.html").read_text(encoding="utf-8"))
    assert page.section_ids == [
        "verdict", "data", "model", "performance", "calibration", "uncertainty", "attribution",
        "reproducibility", "checklist",
    ]  # fmt: skip
    rows = page.tables_in("performance")[0]
    assert [r[0].text.split(" ")[0] for r in rows[1:]] == [
        "deep_ensemble",
        "mc_dropout",
        "climatology",
    ]
    assert page.alts("attribution") == [
        "integrated_gradients: check curves", "integrated_gradients: examples: input and attribution",
        "saliency: check curves", "saliency: examples: input and attribution",
    ]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_unchanged_run_reproduces_exactly(run, capsys):
    before = _snapshot(run)
    assert main(["verify", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("reproduced: all ") and "match the re-run exactly" in out
    assert _snapshot(run) == before  # verify writes nothing


def test_tampered_results_json_gives_a_table_of_differences(run, capsys):
    results = json.loads((run / "results.json").read_text())
    original = results["metrics"]["rmse"]["value"]
    results["metrics"]["rmse"]["value"] = original * 1.01
    results["verdict"] = "fail"
    (run / "results.json").write_text(json.dumps(results))
    assert main(["verify", str(run), "--quiet"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("NOT reproduced: 2 of ")  # rmse and the verdict
    assert lines[0].endswith("values differ from the re-run (compared exactly)")
    assert lines[1].split() == ["key", "path", "saved", "re-run", "rel.", "diff"]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    rmse = rows["results.metrics.rmse.value"]
    assert float(rmse[1]) == original * 1.01 and float(rmse[2]) == original
    assert float(rmse[3]) == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert rows["results.verdict"][1:] == ['"fail"', '"pass"', "-"]


def test_rtol_accepts_a_tiny_perturbation_only(run, capsys):
    results = json.loads((run / "results.json").read_text())
    results["metrics"]["nll"]["value"] *= 1 + 1e-9
    (run / "results.json").write_text(json.dumps(results))
    assert main(["verify", str(run), "--quiet", "--rtol", "1e-6"]) == 0
    assert "within rtol=1e-06" in capsys.readouterr().out
    assert main(["verify", str(run), "--quiet", "--rtol", "1e-12"]) == 1
    assert "results.metrics.nll.value" in capsys.readouterr().out


def test_tampered_arrays_are_found(run, capsys):
    with h5py.File(run / "arrays.h5", "r+") as f:
        mean = f["test/mean"]
        mean[5, 1] = mean[5, 1] + 0.5
    assert main(["verify", str(run), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "arrays:test/mean[5, 1]" in out and "1 of " in out


def test_changed_data_is_refused_naming_the_data(finished, run, capsys, tmp_path):
    data = tmp_path / "data.h5"
    shutil.copy(finished / "data.h5", data)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["protocol_dir"] = str(tmp_path)  # resolve data.h5 to the copy we change
    (run / "manifest.json").write_text(json.dumps(manifest))
    with h5py.File(data, "r+") as f:
        f["y"][0, 0] = f["y"][0, 0] + 1.0
    assert main(["verify", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(data) in err and "data changed" in err


def test_changed_data_is_refused_before_re_running(run, capsys, monkeypatch):
    """With the runner's dataset_fingerprint, nothing is trained when the data changed."""

    def fingerprint(protocol, base_dir):
        assert Path(base_dir) == Path(
            json.loads((run / "manifest.json").read_text())["protocol_dir"]
        )
        return "0" * 64

    def no_run(*args, **kwargs):
        raise AssertionError("verify re-ran a protocol whose data changed")

    monkeypatch.setattr(runner, "dataset_fingerprint", fingerprint, raising=False)
    monkeypatch.setattr(runner, "run_protocol", no_run)
    assert main(["verify", str(run), "--quiet"]) == 2
    assert "data.h5: the data changed" in capsys.readouterr().err


def test_changed_data_is_refused_by_a_runner_without_dataset_fingerprint(
    finished, run, capsys, tmp_path, monkeypatch
):
    """Older runners lack the cheap entry point: the re-run's own fingerprint is checked."""
    monkeypatch.delattr(runner, "dataset_fingerprint", raising=False)
    data = tmp_path / "data.h5"
    shutil.copy(finished / "data.h5", data)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["protocol_dir"] = str(tmp_path)
    (run / "manifest.json").write_text(json.dumps(manifest))
    with h5py.File(data, "r+") as f:
        f["x"][3, 0, 0, 0] = f["x"][3, 0, 0, 0] + 1.0
    assert main(["verify", str(run), "--quiet"]) == 2
    assert f"{data}: the data changed" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "abc"])
def test_bad_rtol_is_a_usage_error(run, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(run), "--rtol", bad])
    assert exc.value.code == 2
    assert "--rtol" in capsys.readouterr().err


def test_missing_results_directory(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


# --- compare_results without re-running ------------------------------------------------------


def _pair():
    a = make_results(n_examples=1, methods=("deep_ensemble",), attribution_methods=())
    return a, RunResults(summary=json.loads(json.dumps(a.summary)), arrays=dict(a.arrays))


def test_identical_results_match():
    a, b = _pair()
    report = compare_results(a, b)
    assert report.reproduced and report.differences == []
    assert report.compared > sum(v.size for v in a.arrays.values())


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("seed",), True, "results.seed"),  # a bool is not the number 1
        (("data", "splits", "test"), None, "results.data.splits.test"),
        (("data", "target_names"), ["omega_m"], "results.data.target_names"),
        (("task",), "classification", "results.task"),
        (("metrics", "rmse", "ci", 1), 0.9, "results.metrics.rmse.ci[1]"),  # rel 0.85 > 0.5
    ],
)
def test_each_kind_of_difference_is_reported(path, value, expected):
    a, b = _pair()
    node = b.summary
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    report = compare_results(a, b, rtol=0.5)
    assert [d.path for d in report.differences] == [expected]


def test_keys_present_on_one_side_only():
    a, b = _pair()
    del b.summary["claims"]
    b.summary["new"] = 1
    b.arrays.pop("test/pit")
    paths = {d.path: d.note for d in compare_results(a, b).differences}
    assert paths == {
        "results.claims": "only in the saved run",
        "results.new": "only in the re-run",
        "arrays:test/pit": "only in the saved run",
    }


def test_rtol_boundary_and_nan_arrays():
    a, b = _pair()
    a.summary["x"], b.summary["x"] = 1.0, 1.0 + 1e-6
    a.arrays["z"] = np.array([np.nan, 0.0, 2.0])
    b.arrays["z"] = np.array([np.nan, 0.0, 2.0 * (1 + 1e-7)])
    assert compare_results(a, b, rtol=1e-6).reproduced  # |diff| / max = 9.99999e-7 <= 1e-6
    worse = compare_results(a, b, rtol=1e-8).differences
    assert [d.path for d in worse] == ["results.x", "arrays:z[2]"]
    assert isinstance(worse[1], Difference) and worse[1].note == "1 of 3 elements differ"


def test_array_shape_change_is_reported():
    a, b = _pair()
    b.arrays["test/mean"] = b.arrays["test/mean"][:-1]
    (d,) = compare_results(a, b).differences
    assert d.path == "arrays:test/mean" and d.note == "shape [300, 2] vs [299, 2]"


def test_table_lists_path_saved_rerun_and_relative_difference():
    a, b = _pair()
    b.summary["metrics"]["rmse"]["value"] = 0.25
    table = compare_results(a, b).table()
    header, rule, row = table.splitlines()
    assert header.split() == ["key", "path", "saved", "re-run", "rel.", "diff"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split() == [
        "results.metrics.rmse.value",
        "0.1234",
        "0.25",
        f"{(0.25 - 0.1234) / 0.25:.3g}",
    ]


@pytest.mark.parametrize("block_bytes", [16, 64 << 20])
def test_stored_arrays_are_compared_block_by_block(tmp_path, monkeypatch, block_bytes):
    """A StoredArray (a streamed run's array, read in parts) against the re-run's array: the
    same differences, index and worst value whether the rows come in 2-row blocks or at once."""
    from trustml.protocol import verify
    from trustml.report import StoredArray

    monkeypatch.setattr(verify, "_BLOCK_BYTES", block_bytes)  # 16 bytes: 2 rows of 2 float32
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["test/mean"] = x
    a, b = _pair()
    a.arrays["big"] = StoredArray(tmp_path / "a.h5", "test/mean")
    y = x.copy()
    y[13, 1] *= 1.5  # the worst: relative 1/3
    y[3, 0] *= 1.1
    b.arrays["big"] = y
    diffs = [d for d in compare_results(a, b).differences if d.path.startswith("arrays:big")]
    assert [d.path for d in diffs] == ["arrays:big[13, 1]"]
    assert diffs[0].note == "2 of 40 elements differ"
    assert diffs[0].saved == 27.0 and diffs[0].rerun == pytest.approx(40.5)
    b.arrays["big"] = x
    assert not [d for d in compare_results(a, b).differences if d.path.startswith("arrays:big")]
