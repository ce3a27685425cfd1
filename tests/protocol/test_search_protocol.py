"""A hyper-parameter search in a protocol: the record and the comparison in the results, no
leakage of calibration or test data into selection, determinism over runs and MPI ranks,
resume after a kill, and bad searches refused before training."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trustml.cli import main
from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol
from trustml.protocol._search import SEARCH_CRASH_ENV

MPIEXEC = Path(sys.executable).parent / "mpiexec"
BASE = {
    "trustml": 1,
    "name": "search",
    "seed": 4,
    "device": "cpu",
    "data": {
        "builtin": "cosmology2d",
        "options": {"n": 240, "size": 8},
        "split": {"train": 0.5, "validation": 0.15, "calibration": 0.15, "test": 0.2},
    },
    "task": "regression",
    "model": {"builtin": "mlp", "options": {"hidden": [16]}},
    "uncertainty": {
        "method": "deep_ensemble",
        "members": 3,
        "train": {"epochs": 3, "batch_size": 32, "lr": 3.0e-3},
        "search": {
            "trials": 8,
            "generation": 4,
            "space": {
                "lr": {"log_uniform": [1.0e-3, 3.0e-2]},
                "weight_decay": {"log_uniform": [1.0e-6, 1.0e-3]},
                "hidden": {"choice": [[16], [32]]},
            },
        },
    },
    "calibration": {"method": "conformal", "alpha": 0.1},
    "metrics": ["rmse", "nll", "crps", "coverage"],
}


def run(raw, **kw):
    return run_protocol(parse_protocol(copy.deepcopy(raw)), "", write=False, progress=False, **kw)


@pytest.fixture(scope="module")
def searched():
    return run(BASE).results


def test_the_record_lists_every_trial_and_the_selection(searched):
    search = searched.summary["methods"]["deep_ensemble"]["search"]
    trials = search["trials"]
    assert [t["number"] for t in trials] == list(range(8))
    assert all("time_s" not in t for t in trials)  # wall times go to the manifest
    assert {t["generation"] for t in trials} == {0, 1}
    for t in trials:
        assert set(t["params"]) == {"lr", "weight_decay", "hidden"}
        assert 1e-3 <= t["params"]["lr"] <= 3e-2 and t["params"]["hidden"] in ([16], [32])
    sel = search["selection"]
    assert len(sel["trials"]) == 3 and sum(sel["counts"].values()) == 3
    scores = {t["number"]: t["score"] for t in trials if t["score"] is not None}
    assert sel["best_single"] == min(scores, key=lambda n: (scores[n], n))
    assert sel["trials"][0] == sel["best_single"]  # greedy starts from the best candidate
    assert sel["trace"][0] == pytest.approx(scores[sel["best_single"]])
    assert len(sel["trace"]) == 3  # the mixture objective after each of the 3 greedy steps


def test_the_comparison_has_the_searched_the_best_single_and_the_default_ensemble(searched):
    s = searched.summary
    comparison = s["methods"]["deep_ensemble"]["search"]["comparison"]
    assert comparison["searched"]["metrics"] == s["methods"]["deep_ensemble"]["metrics"]
    assert comparison["best_single"]["trial"] == s["methods"]["deep_ensemble"]["search"]["selection"]["best_single"]
    assert comparison["default"]["members"] == 3
    for row in comparison.values():
        for m in ("rmse", "nll", "crps", "coverage"):
            lo, hi = row["metrics"][m]["ci"]
            assert lo <= row["metrics"][m]["value"] <= hi
    # Three different predictors: their test RMSEs differ.
    rmses = {k: v["metrics"]["rmse"]["value"] for k, v in comparison.items()}
    assert len(set(rmses.values())) == 3


def test_the_validation_split_is_its_own(searched):
    splits = searched.summary["data"]["splits"]
    assert splits == {"train": 120, "validation": 36, "calibration": 36, "test": 48}
    dup = searched.summary["data"]["duplicates"]
    assert dup["validation_calibration"] == dup["validation_test"] == 0


def test_a_search_is_deterministic(searched):
    again = run(BASE).results
    assert again.summary["methods"] == searched.summary["methods"]


def _cli(raw, out, env=None, ranks=None):
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "trustml.cli", "evaluate", str(path), "--out", str(out), "--quiet"]
    if ranks:
        cmd = [str(MPIEXEC), "-n", str(ranks), *cmd]
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=600)


@pytest.mark.determinism
@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not found next to the interpreter")
def test_two_ranks_and_a_killed_then_resumed_search_give_the_results_of_one_rank(tmp_path):
    one = _cli(BASE, tmp_path / "one", ranks=1)
    assert one.returncode == 0, one.stderr
    two = _cli(BASE, tmp_path / "two", ranks=2)
    assert two.returncode == 0, two.stderr
    want = (tmp_path / "one" / "results.json").read_text()
    assert (tmp_path / "two" / "results.json").read_text() == want
    times = json.loads((tmp_path / "one" / "manifest.json").read_text())["search_trial_s"]
    assert len(times["deep_ensemble"]) == 8
    # Killed once the first generation (4 trials) is told; the re-run resumes from the
    # search's journal and trial checkpoints and ends with the same results.
    killed = _cli(BASE, tmp_path / "resumed", env={SEARCH_CRASH_ENV: "4"})
    assert killed.returncode == 75 and not (tmp_path / "resumed" / "results.json").exists()
    resumed = _cli(BASE, tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "resumed" / "results.json").read_text() == want


# -- bad searches ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"search": {"trials": 2, "space": {"lr": {"uniform": [0.001, 0.01]}}}}, "uncertainty.search.trials", "at least members"),
        ({"search": {"space": {}}}, "uncertainty.search.space", "at least 1 item"),
        ({"search": {"space": {"lr": {"logu": [1, 2]}}}}, "uncertainty.search.space.lr", "unknown distribution"),
        ({"search": {"space": {"lr": {"uniform": [0.1, 0.01]}}}}, "uncertainty.search.space.lr.uniform", "low < high"),
        ({"search": {"space": {"lr": {"uniform": [0.001, 0.01]}}, "select": {"objective": "brier"}}}, "uncertainty.search.select.objective", "does not apply"),
        ({"search": {"space": {"lr": {"uniform": [0.001, 0.01]}}, "sampler": "tpe"}}, "uncertainty.search.sampler", "unknown key"),
    ],
)  # fmt: skip
def test_a_bad_search_names_its_key(change, key, words):
    raw = copy.deepcopy(BASE)
    raw["uncertainty"].update(change)
    with pytest.raises(ProtocolError) as err:
        parse_protocol(raw)
    assert err.value.key == key and words in str(err.value), str(err.value)


def test_a_search_without_a_validation_split_names_what_to_add():
    raw = copy.deepcopy(BASE)
    raw["data"]["split"] = {"train": 0.6, "calibration": 0.2, "test": 0.2}
    with pytest.raises(ProtocolError) as err:
        parse_protocol(raw)
    assert err.value.key == "data.split.validation" and "validation: 0.1" in str(err.value)


def test_a_model_option_the_model_does_not_take_exits_2_before_training(tmp_path, capsys):
    raw = copy.deepcopy(BASE)
    raw["uncertainty"]["search"]["space"]["hiden"] = {"choice": [[8]]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    code = main(["evaluate", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "uncertainty.search.space.hiden" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_starter_protocols_commented_search_is_valid():
    from trustml.protocol import starter_protocol

    lines = starter_protocol().splitlines()
    start = lines.index("#   - method: deep_ensemble")
    block = []
    for line in lines[start:]:
        if not line.startswith("#  "):
            break
        block.append(line[2:])
    raw = yaml.safe_load(starter_protocol())
    raw["uncertainty"] = yaml.safe_load("\n".join(block))
    raw["data"]["split"] = {"train": 0.6, "validation": 0.1, "calibration": 0.15, "test": 0.15}
    spec = parse_protocol(raw).methods[0].search
    assert spec is not None and spec.trials == 24 and spec.select.strategy == "greedy"
