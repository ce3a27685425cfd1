"""The simulated labeling campaign (protocol key ``acquisition``): labels to target, the summary,
a paired campaign end to end, resume, MPI, and bad protocols."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from trustml import results_keys as rk
from trustml.cli import main
from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol, run_protocol
from trustml.protocol._campaign import labels_to_target, summarize_curves

MPIEXEC = Path(sys.executable).parent / "mpiexec"

CAMPAIGN = {
    "trustml": 1,
    "name": "campaign",
    "seed": 5,
    "device": "cpu",
    "data": {
        "builtin": "digits",
        "options": {"n": 400},
        "split": {"train": 0.6, "calibration": 0.1, "test": 0.3},
    },
    "task": "classification",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 16}},
    "uncertainty": {"method": "deep_ensemble", "members": 2, "train": {"epochs": 2}},
    "metrics": ["accuracy"],
    "acquisition": {
        "initial": 12,
        "step": 6,
        "rounds": 2,
        "repeats": 2,
        "strategies": ["random", "bald", "batchbald"],
        "epochs": 6,
    },
}


# -- labels to target ------------------------------------------------------------------------
def test_labels_to_target_interpolates_between_rounds():
    assert labels_to_target([10, 20, 30], [0.5, 0.7, 0.9], 0.8, higher_is_better=True) == 25.0
    assert labels_to_target([10, 20, 30], [0.5, 0.7, 0.9], 0.7, higher_is_better=True) == 20.0


def test_labels_to_target_is_the_first_crossing_and_none_when_never():
    # reaches 0.8 at 20, dips, reaches again: the first crossing counts
    assert labels_to_target([10, 20, 30, 40], [0.5, 0.9, 0.6, 0.95], 0.8,
                            higher_is_better=True) == pytest.approx(17.5)  # fmt: skip
    assert labels_to_target([10, 20], [0.5, 0.6], 0.8, higher_is_better=True) is None
    assert labels_to_target([10, 20], [0.9, 0.95], 0.8, higher_is_better=True) == 10.0


def test_labels_to_target_for_a_metric_where_lower_is_better():
    # an error falling from 1.0 to 0.4: 0.6 is reached three quarters of the way to 30
    got = labels_to_target([10, 20, 30], [1.0, 0.8, 0.4], 0.5, higher_is_better=False)
    assert got == pytest.approx(27.5)


# -- the summary -----------------------------------------------------------------------------
def _spec(**kw):
    base = copy.deepcopy(CAMPAIGN)
    base["acquisition"] = {"initial": 10, "step": 10, "rounds": 3, "repeats": 2, **kw}
    return parse_protocol(base)


def test_summary_default_target_is_randoms_final_mean_and_saving_is_the_label_ratio():
    p = _spec(strategies=["random", "bald"])
    curves = {  # labels 10, 20, 30, 40
        "random": np.array([[0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.7, 0.8]]),
        "bald": np.array([[0.5, 0.8, 0.9, 0.9], [0.5, 0.6, 0.9, 0.95]]),
    }
    s = summarize_curves(p.acquisition, p.task, curves, method=p.primary,
                         pool_size=100, test_size=50)  # fmt: skip
    assert s["target"] == pytest.approx(0.8) and s["target_source"] == "random_final"
    assert s["labels"] == [10, 20, 30, 40]
    rnd, bald = s["strategies"]["random"], s["strategies"]["bald"]
    assert rnd["labels_to_target"] == pytest.approx(40.0)
    # bald's mean curve: 0.5, 0.7, 0.9, 0.925 -> 0.8 halfway between 20 and 30
    assert bald["labels_to_target"] == pytest.approx(25.0)
    assert bald["saving_vs_random"] == pytest.approx(40 / 25) and not bald["saving_is_lower_bound"]
    assert bald["labels_to_target_per_repeat"] == pytest.approx([20.0, 30 - 10 * 0.1 / 0.3])
    assert bald["std"][1] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert bald["min"][1] == 0.6 and bald["max"][1] == 0.8 and bald["mean"][3] == 0.925


def test_summary_saving_is_a_lower_bound_when_random_never_reaches_the_target():
    p = _spec(strategies=["random", "bald"], target=0.85)
    curves = {"random": np.array([[0.5, 0.6, 0.7, 0.8]]), "bald": np.array([[0.5, 0.9, 0.9, 0.9]])}
    s = summarize_curves(p.acquisition, p.task, curves, method=p.primary,
                         pool_size=100, test_size=50)  # fmt: skip
    assert s["target_source"] == "protocol"
    assert s["strategies"]["random"]["labels_to_target"] is None
    assert s["strategies"]["random"]["saving_vs_random"] is None
    bald = s["strategies"]["bald"]
    assert bald["labels_to_target"] == pytest.approx(10 + 10 * 0.35 / 0.4)
    assert bald["saving_vs_random"] == pytest.approx(40 / bald["labels_to_target"])
    assert bald["saving_is_lower_bound"] and bald["std"] == [0.0] * 4


# -- a campaign end to end -------------------------------------------------------------------
@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign") / "run"
    outcome = run_protocol(parse_protocol(CAMPAIGN), yaml.safe_dump(CAMPAIGN), out=out)
    with h5py.File(out / "arrays.h5", "r") as f:
        arrays = {k: f[k][()] for k in _paths(f)}
    return outcome.results, arrays, out


def _paths(f):
    found = []
    f.visititems(lambda k, v: found.append(k) if isinstance(v, h5py.Dataset) else None)
    return [k for k in found if k.startswith(rk.ACQUISITION + "/")]


def test_campaign_records_every_strategy_repeat_and_round(campaign):
    results, arrays, _ = campaign
    s = results.summary["acquisition"]
    assert s["labels"] == [12, 18, 24] and s["repeats"] == 2 and s["epochs"] == 6
    assert list(s["strategies"]) == ["random", "bald", "batchbald"]
    assert np.array_equal(arrays[rk.ACQUISITION_N_LABELS], [12, 18, 24])
    for name in s["strategies"]:
        curve = arrays[rk.acquisition_curve(name)]
        assert curve.shape == (2, 3) and np.all((curve >= 0) & (curve <= 1))
        assert s["strategies"][name]["mean"] == pytest.approx(curve.mean(axis=0).tolist())
        assert arrays[rk.acquisition_picked(name)].shape == (2, 24)


def test_campaign_is_paired_and_picks_distinct_training_samples(campaign):
    results, arrays, _ = campaign
    from trustml.distributed import SerialComm
    from trustml.protocol._plan import make_plan

    plan = make_plan(parse_protocol(CAMPAIGN), Path("."), SerialComm())
    train = set(plan.splits["train"].tolist())
    picked = {s: arrays[rk.acquisition_picked(s)] for s in ("random", "bald", "batchbald")}
    curves = {s: arrays[rk.acquisition_curve(s)] for s in picked}
    for r in range(2):
        # the same initial samples and the same round-0 model for every strategy in a repeat
        assert all(np.array_equal(picked[s][r, :12], picked["random"][r, :12]) for s in picked)
        assert all(curves[s][r, 0] == curves["random"][r, 0] for s in curves)
        for rows in picked.values():
            assert len(set(rows[r].tolist())) == 24 and set(rows[r].tolist()) <= train
    # repeats start from different samples; strategies pick different samples after round 0
    assert not np.array_equal(picked["random"][0, :12], picked["random"][1, :12])
    assert not np.array_equal(picked["random"][0, 12:], picked["bald"][0, 12:])


def test_rerun_resumes_every_finished_campaign_from_its_checkpoint(campaign, monkeypatch):
    from trustml.protocol import _campaign

    results, _, out = campaign
    files = sorted((out / "checkpoints" / "acquisition").glob("member-*.pt"))
    assert len(files) == 6  # 3 strategies x 2 repeats

    def refuse(*args, **kwargs):
        raise AssertionError("a finished campaign was run again")

    monkeypatch.setattr(_campaign, "_one_campaign", refuse)
    again = run_protocol(parse_protocol(CAMPAIGN), yaml.safe_dump(CAMPAIGN), out=out)
    assert (
        again.results.summary["acquisition"]["strategies"]
        == (results.summary["acquisition"]["strategies"])
    )


def test_regression_campaign_scores_epistemic_variance(tmp_path):
    p = {
        **CAMPAIGN,
        "data": {"builtin": "cosmology2d", "options": {"n": 120, "size": 16}},
        "task": "regression",
        "metrics": ["rmse", "nll"],
        "acquisition": {"initial": 10, "step": 5, "rounds": 1, "repeats": 1, "epochs": 3,
                        "strategies": ["random", "epistemic_variance"], "metric": "nll"},
    }  # fmt: skip
    results = run_protocol(parse_protocol(p), yaml.safe_dump(p), write=False).results
    s = results.summary["acquisition"]
    assert s["metric"] == "nll" and s["higher_is_better"] is False
    assert s["target"] == pytest.approx(s["strategies"]["random"]["mean"][-1])
    assert s["strategies"]["random"]["labels_to_target"] == pytest.approx(15.0, abs=5.0)
    # round 0 is shared; the two strategies' final models were trained on different samples
    rnd, epi = s["strategies"]["random"]["mean"], s["strategies"]["epistemic_variance"]["mean"]
    assert rnd[0] == epi[0] and rnd[1] != epi[1]


@pytest.mark.determinism
@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not found next to the interpreter")
def test_two_ranks_give_the_campaign_of_one_rank(campaign, tmp_path):
    results, _, _ = campaign
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(CAMPAIGN))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    two = subprocess.run(
        [str(MPIEXEC), "-n", "2", sys.executable, "-m", "trustml.cli", "evaluate", str(path),
         "--out", str(tmp_path / "two"), "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    got = json.loads((tmp_path / "two" / "results.json").read_text())["acquisition"]
    want = results.summary["acquisition"]
    assert got["strategies"] == want["strategies"] and got["labels"] == want["labels"]


# -- bad protocols ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("acquisition", "key", "words"),
    [
        ({"strategies": ["variance"]}, "acquisition.strategies[0]", "does not apply"),
        ({"strategies": ["bald", "bald"]}, "acquisition.strategies", "more than once"),
        ({"metric": "rmse"}, "acquisition.metric", "does not apply"),
        ({"method": "other"}, "acquisition.method", "no uncertainty method"),
        ({"strategies": ["bald"]}, "acquisition.target", "random"),
        ({"rounds": 0}, "acquisition.rounds", ">= 1"),
        ({"inital": 5}, "acquisition.inital", "did you mean 'initial'"),
    ],
)
def test_invalid_acquisition_names_the_key(acquisition, key, words):
    with pytest.raises(ProtocolError) as err:
        parse_protocol({**CAMPAIGN, "acquisition": acquisition})
    assert err.value.key == key and words in str(err.value)


def test_a_campaign_larger_than_the_pool_exits_2_and_writes_nothing(tmp_path, capsys):
    p = {**CAMPAIGN, "acquisition": {"initial": 200, "step": 50, "rounds": 2}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(p))
    code = main(["evaluate", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "acquisition" in err and "240 samples" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_starter_protocols_commented_campaign_is_valid():
    from trustml.protocol import starter_protocol

    lines = starter_protocol().splitlines()
    start = lines.index("# acquisition:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        if not line.startswith("#   #"):
            block.append(line[2:])
    raw = yaml.safe_load(starter_protocol())
    raw["acquisition"] = yaml.safe_load("\n".join(block))["acquisition"]
    spec = parse_protocol(raw).acquisition
    assert spec.strategy_names("regression") == ["random", "variance", "epistemic_variance"]
    assert spec.labels[-1] == 50 + 10 * 25


def test_trustml_verify_reproduces_a_campaign_run(campaign, capsys):
    # results.json holds no wall times: a re-run must match it number for number
    _, _, out = campaign
    assert main(["verify", str(out), "--quiet"]) == 0, capsys.readouterr().err


def test_an_mc_dropout_campaign_scores_its_dropout_samples(tmp_path):
    p = copy.deepcopy(CAMPAIGN)
    p["model"]["options"]["dropout"] = 0.2
    p["uncertainty"] = {"method": "mc_dropout", "samples": 6, "train": {"batch_size": 16}}
    p["acquisition"].update(strategies=["random", "bald"], repeats=1, rounds=1, epochs=10)
    out = tmp_path / "run"
    results = run_protocol(parse_protocol(p), yaml.safe_dump(p), out=out).results
    assert results.summary["acquisition"]["method"] == "mc_dropout"
    with h5py.File(out / "arrays.h5", "r") as f:
        rnd, bald = (f[rk.acquisition_picked(s)][0] for s in ("random", "bald"))
    assert np.array_equal(rnd[:12], bald[:12]) and not np.array_equal(rnd[12:], bald[12:])
