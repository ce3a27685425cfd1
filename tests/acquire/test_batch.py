"""Batch-aware selection: BatchBALD against duplicates and known values, stochastic selection."""

import numpy as np
import pytest

from trustml.acquire import bald, batchbald, select, stochastic_select, top_k


def _duplicated_pool(distinct=6, copies=3, members=64, seed=0):
    """Members that confidently split into two camps, differently per point; each point copied.

    Returns probs ``(K, distinct * copies, 2)`` with copies interleaved (0, 1, .., 0, 1, ..) and
    the distinct id of each pool index.
    """
    rng = np.random.default_rng(seed)
    camp = rng.integers(0, 2, size=(members, distinct))
    p1 = np.where(camp == 1, 0.98, 0.02)
    one = np.stack([1 - p1, p1], axis=-1)  # (K, distinct, 2)
    ids = np.tile(np.arange(distinct), copies)
    return one[:, ids], ids


def test_batchbald_never_picks_two_copies_while_top_k_bald_does():
    probs, ids = _duplicated_pool()
    topk = top_k(bald(probs), 4)
    assert len(set(ids[topk])) < 4  # copies of the best point score alike
    picks, mi = batchbald(probs, 4)
    assert len(set(ids[picks])) == 4
    assert picks[0] == topk[0]  # the first BatchBALD pick is the top BALD pick
    assert mi[0] == pytest.approx(bald(probs)[picks[0]])
    assert np.all(np.diff(mi) > 0.1)  # each new distinct point adds information


def test_batchbald_with_sampled_configurations_still_avoids_copies():
    probs, ids = _duplicated_pool(distinct=6)
    picks, mi = batchbald(probs, 6, num_samples=4, seed=3)  # C ** 3 > 4: steps 3.. sample
    assert len(set(ids[picks])) == 6
    again, mi_again = batchbald(probs, 6, num_samples=4, seed=3)
    np.testing.assert_array_equal(picks, again)
    np.testing.assert_array_equal(mi, mi_again)


def test_batchbald_exact_joint_mutual_information_by_enumeration():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=(4, 7))  # (K=4, N=7, C=3)
    picks, mi = batchbald(probs, 3)
    a, b, c = picks
    joint = np.einsum("ki,kj,kl->kijl", probs[:, a], probs[:, b], probs[:, c])  # (K, 3, 3, 3)
    mix = joint.mean(axis=0)
    h_joint = -np.sum(mix * np.log(mix))
    h_cond = -np.sum(probs[:, picks] * np.log(probs[:, picks]), axis=2).mean(axis=0).sum()
    assert mi[2] == pytest.approx(h_joint - h_cond, rel=1e-12)


def test_batchbald_memory_is_bounded_by_chunks(monkeypatch):
    import trustml.acquire.batch as batch

    probs = np.random.default_rng(6).dirichlet(np.ones(4), size=(3, 50))
    whole = batchbald(probs, 4)
    monkeypatch.setattr(batch, "_CHUNK_ELEMENTS", 7)  # one candidate at a time
    np.testing.assert_array_equal(batchbald(probs, 4)[0], whole[0])
    np.testing.assert_allclose(batchbald(probs, 4)[1], whole[1], rtol=1e-12)


def test_top_k_breaks_ties_by_lowest_index():
    assert top_k([1.0, 3.0, 3.0, 2.0, 3.0], 4).tolist() == [1, 2, 4, 3]
    probs = np.full((2, 5, 2), 0.5)  # all tie
    assert batchbald(probs, 3)[0].tolist() == [0, 1, 2]


def test_stochastic_select_is_determined_by_the_seed():
    scores = np.random.default_rng(0).random(1000)
    a = stochastic_select(scores, 50, seed=42)
    assert np.array_equal(a, stochastic_select(scores, 50, seed=42))
    assert np.array_equal(a, stochastic_select(scores, 50, seed=np.random.SeedSequence(42)))
    assert not np.array_equal(a, stochastic_select(scores, 50, seed=43))
    assert len(set(a.tolist())) == 50


def test_stochastic_select_favours_high_scores_and_limits():
    scores = np.r_[np.full(10, 10.0), np.full(990, 0.01)]
    hits = [np.isin(stochastic_select(scores, 10, seed=s), np.arange(10)).mean() for s in range(20)]
    assert np.mean(hits) > 0.5  # the 10 hold 91 % of the weight
    assert set(stochastic_select(scores, 10, beta=50.0, seed=0).tolist()) == set(range(10))
    zero = np.r_[0.0, 0.0, 1.0, 2.0]
    assert set(stochastic_select(zero, 2, seed=1).tolist()) == {2, 3}  # power: 0 never first
    for mode in ("softmax", "softrank"):
        assert len(stochastic_select(scores, 10, mode=mode, seed=0)) == 10


def test_power_bald_strategy_matches_stochastic_select_of_bald():
    probs = np.random.default_rng(7).dirichlet(np.ones(3), size=(5, 200))
    picks = select(probs, 20, strategy="power_bald", seed=9, beta=2.0)
    np.testing.assert_array_equal(picks, stochastic_select(bald(probs), 20, beta=2.0, seed=9))


def test_batchbald_matches_batchbald_redux():
    torch = pytest.importorskip("torch")
    redux = pytest.importorskip("batchbald_redux.batchbald")
    probs = np.random.default_rng(8).dirichlet(0.5 * np.ones(4), size=(6, 40))  # (K, N, C)
    log_probs = torch.from_numpy(np.log(probs).transpose(1, 0, 2).copy())  # (N, K, C)
    theirs = redux.get_batchbald_batch(log_probs, 4, num_samples=100_000, dtype=torch.double)
    ours, mi = batchbald(probs, 4)
    assert ours.tolist() == theirs.indices
    np.testing.assert_allclose(mi, theirs.scores, rtol=1e-9)
    bald_theirs = redux.get_bald_batch(log_probs, 40)
    order = np.argsort(bald_theirs.indices)
    np.testing.assert_allclose(bald(probs), np.asarray(bald_theirs.scores)[order], rtol=1e-9)
