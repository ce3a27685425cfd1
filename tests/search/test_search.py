"""End-to-end searches: real Optuna, real torch. Determinism, resume, record, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustml.search import EnsembleSearch, SearchSpaceError, mixture_score, search_ensemble
from trustml.uq import DeepEnsemble

from .conftest import OPTIONS, SPACE, make_build, strip_times


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def reference(cosmo, tmp_path_factory):
    """An uninterrupted search, its record and test predictions."""
    train, val, test = cosmo
    folder = tmp_path_factory.mktemp("ref")
    est, record = search_ensemble(make_build(train), SPACE, train, val, folder=folder, **OPTIONS)
    return est, record, est.predict(test)


def test_record_lists_trials_groups_and_selection(reference):
    est, record, pred = reference
    trials = record["trials"]
    assert [t["number"] for t in trials] == list(range(OPTIONS["trials"]))
    for t in trials:
        assert set(t["params"]) == set(SPACE)
        assert 1e-3 <= t["params"]["lr"] <= 3e-2 and t["params"]["hidden"] in (8, 16)
        assert t["training"]["lr"] == t["params"]["lr"] and t["training"]["epochs"] == 2
        assert t["model_options"] == {"hidden": t["params"]["hidden"]}
        assert t["state"] == "complete" and np.isfinite(t["score"]) and t["time_s"] >= 0
    # lane groups: same model options (and batch size, epochs) within a generation
    covered = sorted(i for g in record["groups"] for i in g["trials"])
    assert covered == list(range(OPTIONS["trials"]))
    for g in record["groups"]:
        assert {trials[i]["params"]["hidden"] for i in g["trials"]} == {
            g["model_options"]["hidden"]
        }
        assert {trials[i]["generation"] for i in g["trials"]} == {g["generation"]}
    sel = record["selection"]
    assert len(sel["trials"]) == OPTIONS["members"] == pred.n_members
    assert sum(sel["counts"].values()) == OPTIONS["members"]
    assert sel["trials"][0] == sel["best_single"]
    assert sel["best_single_score"] == min(t["score"] for t in trials)
    assert sel["trace"][0] == pytest.approx(sel["best_single_score"])
    json.dumps(record)  # JSON-ready
    # law of total variance, from the members
    np.testing.assert_allclose(pred.var, pred.aleatoric_var + pred.epistemic_var)


def test_selected_members_are_the_trials_own_networks(reference, cosmo):
    """Member k predicts what trial selection[k] predicted on its own (validation split)."""
    est, record, _ = reference
    _, val, _ = cosmo
    pred = est.predict(val)
    first = record["selection"]["trials"][0]
    single = type(pred).regression(pred.member_means[:1], pred.member_stds[:1])
    y = val.read(np.arange(val.n_samples))[1]
    assert mixture_score(single, y, "nll") == pytest.approx(
        record["trials"][first]["score"], rel=1e-9
    )
    assert mixture_score(pred, y, "nll") == pytest.approx(
        record["selection"]["trace"][-1], rel=1e-9
    )


def test_same_seed_same_record_and_numbers(reference, cosmo, tmp_path):
    est, record, pred = reference
    train, val, test = cosmo
    again, record2 = search_ensemble(
        make_build(train), SPACE, train, val, folder=tmp_path, **OPTIONS
    )
    assert strip_times(record2) == strip_times(record)
    np.testing.assert_array_equal(again.predict(test).member_means, pred.member_means)
    other, record3 = search_ensemble(
        make_build(train), SPACE, train, val, **{**OPTIONS, "seed": OPTIONS["seed"] + 1}
    )
    assert [t["params"] for t in record3["trials"]] != [t["params"] for t in record["trials"]]


@pytest.mark.parametrize("kill_after", [2, 4])
def test_a_killed_search_resumes_to_the_same_result(reference, cosmo, tmp_path, kill_after):
    """Killed after ``kill_after`` trials were told (mid-generation: the others of that
    generation are trained but not told), then started again on the same folder."""
    _, record, pred = reference
    train, val, test = cosmo
    told = []

    def hook(entry):
        told.append(entry["number"])
        if len(told) == kill_after:
            raise _Killed

    with pytest.raises(_Killed):
        EnsembleSearch(make_build(train), SPACE, folder=tmp_path, on_trial=hook, **OPTIONS).fit(
            train, val
        )
    resumed = EnsembleSearch(make_build(train), SPACE, folder=tmp_path, **OPTIONS).fit(train, val)
    assert strip_times(resumed.record_) == strip_times(record)
    np.testing.assert_array_equal(resumed.predict(test).member_means, pred.member_means)
    # the killed run trained whole generations; the resumed run trains only the rest
    finished = -(-kill_after // OPTIONS["generation"]) * OPTIONS["generation"]
    assert resumed.trained_ == list(range(finished, OPTIONS["trials"]))


def test_a_finished_search_started_again_trains_nothing(cosmo, tmp_path):
    train, val, _ = cosmo
    first = EnsembleSearch(make_build(train), SPACE, folder=tmp_path, **OPTIONS).fit(train, val)
    assert first.trained_ == list(range(OPTIONS["trials"]))
    again = EnsembleSearch(make_build(train), SPACE, folder=tmp_path, **OPTIONS).fit(train, val)
    assert again.trained_ == []
    assert strip_times(again.record_) == strip_times(first.record_)


def test_save_load_and_explain(reference, cosmo, tmp_path):
    est, record, pred = reference
    train, _, test = cosmo
    path = est.save(tmp_path / "search.pt")
    back = EnsembleSearch.load(path, make_build(train))
    np.testing.assert_array_equal(back.predict(test).member_means, pred.member_means)
    assert back.record_ == json.loads(json.dumps(record))
    modules = back.explain_modules(output="mean")
    x = test.read(np.arange(4))[0]
    import torch

    with torch.no_grad():
        got = np.stack([m(torch.as_tensor(x)).numpy() for m in modules])
    np.testing.assert_allclose(got, pred.member_means[:, :4], rtol=1e-5, atol=1e-6)


def test_top_k_and_a_plain_space_of_training_keys(cosmo):
    train, val, _ = cosmo
    space = {"lr": {"log_uniform": [1e-3, 1e-2]}, "batch_size": {"choice": [16, 32]}}
    est, record = search_ensemble(
        make_build(train),
        space,
        train,
        val,
        **{**OPTIONS, "strategy": "top_k", "objective": "crps"},
    )
    scores = sorted((t["score"], t["number"]) for t in record["trials"])
    assert record["selection"]["trials"] == [n for _, n in scores[: OPTIONS["members"]]]
    for g in record["groups"]:
        assert len({record["trials"][i]["training"]["batch_size"] for i in g["trials"]}) == 1


def test_bad_input_is_refused_before_training(cosmo):
    train, val, _ = cosmo
    with pytest.raises(SearchSpaceError) as info:
        EnsembleSearch(make_build(train), {"hiden": {"choice": [8]}}, **OPTIONS).fit(train, val)
    assert info.value.key == "space.hiden"
    with pytest.raises(ValueError, match="'trials' parameter"):
        EnsembleSearch(
            make_build(train), SPACE, **{**OPTIONS, "trials": 2, "strategy": "top_k"}
        ).fit(train, val)


def test_diverged_trials_are_recorded_and_never_selected(cosmo):
    train, val, _ = cosmo
    space = {"lr": {"choice": [1e-3, 1e30]}}
    est, record = search_ensemble(make_build(train), space, train, val, **{**OPTIONS, "trials": 6})
    states = {t["params"]["lr"]: t["state"] for t in record["trials"]}
    assert states.get(1e30) == "diverged" and states.get(1e-3) == "complete"
    assert all(record["trials"][i]["params"]["lr"] == 1e-3 for i in record["selection"]["trials"])
    assert all(isinstance(est.ensembles_[0][1], DeepEnsemble) for _ in est.ensembles_)
