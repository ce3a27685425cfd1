"""Shift ladders in a protocol: the schema, every method scored at every level, acceptance at a
level, where criteria stop holding, determinism over runs and MPI ranks, and bad ladders."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from trustml import metrics as M
from trustml.cli import main
from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol

MPIEXEC = Path(sys.executable).parent / "mpiexec"
TRAIN = {"epochs": 3, "batch_size": 32, "lr": 3e-3}
BASE = {
    "trustml": 1,
    "name": "ladders",
    "seed": 5,
    "device": "cpu",
    "data": {
        "builtin": "climate",
        "options": {"n": 240, "size": 16},
        "split": {"train": 0.5, "calibration": 0.25, "test": 0.25},
        "shifts": [
            # Level 0 of a noise corruption is the test split itself.
            {"name": "noise", "corruption": "noise", "levels": [0, 0.5, 2.0]},
            {"name": "warming", "option": "shift", "levels": [0, 4], "options": {"n": 50}, "unit": "K"},
            {"name": "warm3", "options": {"n": 40, "shift": 3.0}},
        ],
    },
    "task": "classification",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 16, "dropout": 0.1}},
    "uncertainty": [
        {"method": "deep_ensemble", "label": "ens", "members": 2, "train": TRAIN},
        {"method": "mc_dropout", "label": "mcd", "samples": 6, "train": TRAIN},
    ],
    "calibration": {"method": "temperature"},
    "metrics": ["accuracy", "nll", "ece"],
    "acceptance": {
        "accuracy": {"min": 0.5},
        "nll@mcd": {"max": 5.0},
        "ece@shift:noise:2": {"max": 0.9},
        "accuracy@mcd@shift:warming:4": {"min": 0.99},
    },
}


def run(raw, **kw):
    return run_protocol(parse_protocol(copy.deepcopy(raw)), "", write=False, progress=False, **kw)


@pytest.fixture(scope="module")
def laddered():
    return run(BASE).results


# -- schema ----------------------------------------------------------------------------------
def test_the_list_form_and_the_mapping_form_are_the_same_protocol():
    as_map = copy.deepcopy(BASE)
    as_map["data"]["shifts"] = {
        s["name"]: {k: v for k, v in s.items() if k != "name"} for s in BASE["data"]["shifts"]
    }
    assert parse_protocol(as_map) == parse_protocol(copy.deepcopy(BASE))
    ladder = parse_protocol(as_map).data.shifts["noise"]
    assert ladder.is_ladder and ladder.level_labels == ["0", "0.5", "2"]
    assert not parse_protocol(as_map).data.shifts["warm3"].is_ladder


def _with_shift(shift, acceptance=None):
    raw = copy.deepcopy(BASE)
    raw["data"]["shifts"] = [shift]
    raw["acceptance"] = acceptance or {}
    return raw


@pytest.mark.parametrize(
    ("shift", "key", "words"),
    [
        ({"name": "n", "corruption": "noize", "levels": [1]}, "data.shifts.n.corruption", "'noise'"),
        ({"name": "n", "corruption": "noise"}, "data.shifts.n.levels", "needs its levels"),
        ({"name": "n", "levels": [1]}, "data.shifts.n.levels", "'option' or a 'corruption'"),
        ({"name": "n", "corruption": "noise", "levels": [0.5, 0.1]}, "data.shifts.n.levels[1]", "increase"),
        ({"name": "n", "corruption": "noise", "levels": [True]}, "data.shifts.n.levels[0]", "number"),
        ({"name": "n", "corruption": "noise", "levels": [1], "options": {"n": 5}}, "data.shifts.n.options", "main test split"),
        ({"name": "n", "option": "shift", "corruption": "noise", "levels": [1]}, "data.shifts.n.corruption", "not both"),
        ({"name": "n", "option": "shift", "levels": [1], "options": {"shift": 2}}, "data.shifts.n.options.shift", "sweeps"),
        ({"name": "n", "option": "shift", "levels": [1], "channels": [0]}, "data.shifts.n.channels", "corruption"),
        ({"corruption": "noise", "levels": [1]}, "data.shifts[0]", "'name'"),
        ({"name": "n", "corruption": "noise", "levels": [1], "unit": "K"}, "data.shifts.n.unit", "own"),
        ({"name": "n", "corruption": "noise", "levels": [1], "intensity": 2}, "data.shifts.n.intensity", "unknown key"),
    ],
)  # fmt: skip
def test_a_bad_ladder_names_its_key(shift, key, words):
    with pytest.raises(ProtocolError) as err:
        parse_protocol(_with_shift(shift))
    assert err.value.key == key and words in str(err.value)


@pytest.mark.parametrize(
    ("criterion", "words"),
    [
        ("ece@shift:noise:0.3", "levels: 0.1, 0.2"),
        ("ece@shift:noise", "levels: 0.1, 0.2"),
        ("ece@shift:other:0.1", "no shift is named 'other'"),
        ("ece@mcd@ens@shift:noise:0.1", "more than one method label"),
        ("ece@shift:noise:0.1@shift:noise:0.2", "more than one shift"),
        ("ece@shift:", "shift:NAME"),
    ],
)
def test_an_acceptance_key_of_a_shift_is_checked_against_the_ladder(criterion, words):
    shift = {"name": "noise", "corruption": "noise", "levels": [0.1, 0.2]}
    with pytest.raises(ProtocolError) as err:
        parse_protocol(_with_shift(shift, {criterion: {"max": 1.0}}))
    assert err.value.key == f"acceptance.{criterion}" and words in str(err.value)
    # A level may be written as any float spelling of it.
    assert parse_protocol(_with_shift(shift, {"ece@shift:noise:0.10": {"max": 1.0}}))


def test_a_single_shift_takes_no_level_and_only_the_primary_method():
    raw = copy.deepcopy(BASE)
    raw["acceptance"] = {"ece@shift:warm3:1": {"max": 1.0}}
    with pytest.raises(ProtocolError, match="not a ladder"):
        parse_protocol(raw)
    raw["acceptance"] = {"ece@mcd@shift:warm3": {"max": 1.0}}
    with pytest.raises(ProtocolError, match="only the primary method"):
        parse_protocol(raw)


@pytest.mark.parametrize(
    ("shift", "key", "words"),
    [
        ({"name": "n", "corruption": "mask", "levels": [0.5, 1.5]}, "data.shifts.n.levels[1]", "outside [0, 1]"),
        ({"name": "n", "corruption": "resolution", "levels": [2.5]}, "data.shifts.n.levels[0]", "whole number"),
        ({"name": "n", "corruption": "blur", "levels": [1], "channels": [7]}, "data.shifts.n.channels", "channels"),
        ({"name": "n", "option": "warmth", "levels": [1]}, "data.shifts.n.levels[0]", "warmth"),
        ({"name": "n", "option": "shift", "levels": [20]}, "data.shifts.n.levels[0]", "shift"),
    ],
)  # fmt: skip
def test_a_ladder_its_data_refuses_exits_2_before_training(shift, key, words, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_with_shift(shift)))
    code = main(["evaluate", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and key in err and words in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


# -- the run ---------------------------------------------------------------------------------
def test_every_method_is_scored_at_every_level(laddered):
    s, a = laddered.summary, laddered.arrays
    noise = s["shifts"]["noise"]
    assert noise["ladder"]["kind"] == "corruption" and noise["ladder"]["labels"] == ["0", "0.5", "2"]
    assert [lv["label"] for lv in noise["levels"]] == ["0", "0.5", "2"]
    for j, lv in enumerate(noise["levels"]):
        assert list(lv["methods"]) == ["ens", "mcd"] and lv["n"] == 60
        y = a[f"shifts/noise/levels/{j}/labels"]
        for label, part in lv["methods"].items():
            probs = a[f"shifts/noise/levels/{j}/methods/{label}/probs"]
            assert part["metrics"]["accuracy"]["value"] == pytest.approx(M.accuracy(probs, y))
            assert part["mean_entropy"] == pytest.approx(np.mean(-np.sum(probs * np.log(np.clip(probs, 1e-12, 1)), axis=1)), rel=1e-4)
    warming = s["shifts"]["warming"]
    assert warming["ladder"]["unit"] == "K" and noise["ladder"]["unit"] == "channel standard deviations"
    assert warming["ladder"]["kind"] == "option" and [lv["n"] for lv in warming["levels"]] == [50, 50]


def test_level_zero_of_a_noise_ladder_is_the_test_split_exactly(laddered):
    s, a = laddered.summary, laddered.arrays
    level0 = s["shifts"]["noise"]["levels"][0]["methods"]
    for label, part in s["methods"].items():
        assert level0[label]["metrics"] == part["metrics"]
    np.testing.assert_array_equal(a["shifts/noise/levels/0/methods/ens/probs"], a["test/probs"])
    np.testing.assert_array_equal(a["shifts/noise/levels/0/labels"], a["test/labels"])


def test_stronger_noise_moves_the_predictions_and_more_so_at_the_top_level(laddered):
    a = laddered.arrays
    p0, p1, p2 = (a[f"shifts/noise/levels/{j}/methods/ens/probs"] for j in range(3))
    d1, d2 = np.abs(p1 - p0).mean(), np.abs(p2 - p0).mean()
    assert 0 < d1 < d2


def test_single_shifts_keep_their_layout(laddered):
    s, a = laddered.summary, laddered.arrays
    warm3 = s["shifts"]["warm3"]
    assert "ladder" not in warm3 and warm3["n"] == 40 and "metrics" in warm3
    assert a["shifts/warm3/probs"].shape == (40, 2)


def test_acceptance_at_a_level_reads_that_level_and_method(laddered):
    s = laddered.summary
    rows = {r["criterion"]: r for r in s["acceptance"]}
    noise = rows["ece@shift:noise:2"]
    assert (noise["method"], noise["shift"], noise["level"]) == ("ens", "noise", "2")
    assert noise["value"] == s["shifts"]["noise"]["levels"][2]["methods"]["ens"]["metrics"]["ece"]["value"]
    warm = rows["accuracy@mcd@shift:warming:4"]
    want = s["shifts"]["warming"]["levels"][1]["methods"]["mcd"]["metrics"]["accuracy"]["value"]
    assert warm["method"] == "mcd" and warm["value"] == want and warm["passed"] == (want >= 0.99)
    assert "shift" not in rows["accuracy"]  # rows of the test split are unchanged


def test_where_criteria_stop_holding_follows_the_level_metrics(laddered):
    for ladder in ("noise", "warming"):
        entry = laddered.summary["shifts"][ladder]
        rows = {(r["criterion"], r["method"]): r for r in entry["holds"]}
        # A plain criterion is checked for every method; a labelled one for its method only;
        # criteria of a shift are not repeated.
        assert set(rows) == {("accuracy", "ens"), ("accuracy", "mcd"), ("nll@mcd", "mcd")}
        for (_criterion, label), row in rows.items():
            values = [lv["methods"][label]["metrics"][row["metric"]]["value"] for lv in entry["levels"]]
            want = [v >= row["threshold"] if row["bound"] == "min" else v <= row["threshold"] for v in values]
            assert row["passed"] == want
            first_fail = want.index(False) if False in want else len(want)
            want_through = entry["levels"][first_fail - 1]["label"] if first_fail else None
            assert row["holds_through"] == want_through


@pytest.mark.determinism
def test_the_same_protocol_gives_the_same_ladder(laddered):
    again = run(BASE).results
    assert again.summary["shifts"] == laddered.summary["shifts"]
    for key, value in laddered.arrays.items():
        if key.startswith("shifts/"):
            np.testing.assert_array_equal(again.arrays[key], value)


@pytest.mark.determinism
@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not found next to the interpreter")
def test_two_ranks_give_the_ladder_of_one_rank(tmp_path):
    # Equal threads per rank: numbers are identical across rank counts at equal threads.
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(BASE))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    shifts = []
    for ranks in (1, 2):
        out = tmp_path / f"ranks{ranks}"
        done = subprocess.run(
            [str(MPIEXEC), "-n", str(ranks), sys.executable, "-m", "trustml.cli", "evaluate",
             str(path), "--out", str(out), "--quiet"],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stderr
        shifts.append(json.loads((out / "results.json").read_text())["shifts"])
    assert shifts[0] == shifts[1]
    assert len(shifts[0]["noise"]["levels"]) == 3


def test_the_starter_protocols_commented_shifts_are_valid():
    from trustml.protocol import starter_protocol

    lines = starter_protocol().splitlines()
    start = lines.index("  # shifts:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        if not line.startswith("  #   #"):
            block.append(line[4:])
    raw = yaml.safe_load(starter_protocol())
    raw["data"]["shifts"] = yaml.safe_load("\n".join(block))["shifts"]
    raw["acceptance"]["coverage@shift:noise:0.4"] = {"min": 0.5}
    shifts = parse_protocol(raw).data.shifts
    assert [name for name, s in shifts.items() if s.is_ladder] == ["steeper", "noise"]
    assert shifts["steeper"].level_labels == ["3-3.5", "3.5-4"]


# -- attribution of shifted examples ---------------------------------------------------------
def test_attribution_explains_the_examples_of_a_ladder_level():
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = raw["uncertainty"][:1]
    raw["acceptance"] = {}
    raw["attribution"] = {
        "methods": ["integrated_gradients"], "n_examples": 3, "n_steps": 8,
        "checks": ["localization"], "explain": ["prediction", "epistemic"], "examples_from": "shift:warming:4",
    }  # fmt: skip
    results = run(raw).results
    s, a = results.summary, results.arrays
    assert s["attribution"]["examples_from"] == "shift:warming:4"
    level = a["shifts/warming/levels/1/methods/ens/probs"]
    np.testing.assert_array_equal(a["attribution/target_index"], level[:3].argmax(axis=1))
    # The explained inputs are the +4 K fields, not test fields.
    from trustml.data import load_builtin
    from trustml.utils.seeding import child

    warm = load_builtin("climate", seed=child(5, "shift/warming"), n=50, size=16, shift=4)
    np.testing.assert_array_equal(a["attribution/inputs"], warm.read(np.arange(3))[0])
    assert a["attribution/masks"].shape[0] == 3


@pytest.mark.parametrize(
    ("source", "words"),
    [("shift:warming:3", "levels: 0, 4"), ("shift:other", "no shift is named"),
     ("shift:warm3:1", "drop the level"), ("train", "should match pattern")],
)  # fmt: skip
def test_attribution_examples_from_a_missing_shift_names_the_key(source, words):
    raw = copy.deepcopy(BASE)
    raw["attribution"] = {"examples_from": source}
    with pytest.raises(ProtocolError) as err:
        parse_protocol(raw)
    assert err.value.key == "attribution.examples_from" and words in str(err.value)
