"""Selection: Caruana's greedy forward selection with replacement, and top-K."""

from __future__ import annotations

import numpy as np
import pytest

from trustml.exceptions import TrustmlInputError
from trustml.search import candidate_scores, select_members
from trustml.uq import Predictive


def _nll_of_mixture(means, stds, y):
    """Moment-matched Gaussian NLL of an equal-weight mixture, written out by hand."""
    m = means.mean(axis=0)
    var = (stds**2).mean(axis=0) + ((means - m) ** 2).mean(axis=0)
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + (y - m) ** 2 / (2 * var)))


def _brute_force_greedy(means, stds, y, k):
    """Greedy by exhaustive evaluation of every extension, ties to the lower index."""
    chosen, trace = [], []
    for _ in range(k):
        scores = [
            _nll_of_mixture(means[chosen + [c]], stds[chosen + [c]], y) for c in range(len(means))
        ]
        best = min(range(len(means)), key=lambda c: (scores[c], c))
        chosen.append(best)
        trace.append(scores[best])
    return chosen, trace


def _candidates(seed, c=6, n=40):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, 2))
    means = y[None] + rng.normal(scale=rng.uniform(0.2, 1.5, size=(c, 1, 1)), size=(c, n, 2))
    stds = rng.uniform(0.3, 2.0, size=(c, n, 2))
    return means, stds, y


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_greedy_matches_a_brute_force_reference(seed):
    means, stds, y = _candidates(seed)
    sel = select_members(Predictive.regression(means, stds), y, members=5, objective="nll")
    want, trace = _brute_force_greedy(means, stds, y, 5)
    assert list(sel.indices) == want
    np.testing.assert_allclose(sel.trace, trace, rtol=1e-10)
    assert sel.counts == {c: want.count(c) for c in sorted(set(want))}


def test_greedy_takes_a_candidate_again_when_nothing_else_helps():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(300, 1))
    means = np.stack([np.zeros((300, 1)), np.full((300, 1), 2.0), np.full((300, 1), -3.0)])
    stds = np.stack([np.ones((300, 1)), np.full((300, 1), 0.5), np.full((300, 1), 0.5)])
    sel = select_members(Predictive.regression(means, stds), y, members=3)
    assert sel.indices == (0, 0, 0)
    assert sel.counts == {0: 3}
    assert sel.trace[0] == sel.trace[1] == sel.trace[2]  # the same mixture each time


def test_greedy_combines_candidates_that_cover_different_modes():
    y = np.array([[1.0]] * 11 + [[-1.0]] * 9)
    means = np.stack([np.full((20, 1), 1.0), np.full((20, 1), -1.0), np.full((20, 1), 5.0)])
    stds = np.full((3, 20, 1), 0.3)
    sel = select_members(Predictive.regression(means, stds), y, members=2)
    assert sel.indices == (0, 1)  # +1 fits more targets alone; -1 then helps most
    assert sel.trace[1] < sel.trace[0]


def test_top_k_takes_the_best_single_candidates_in_order():
    means, stds, y = _candidates(5)
    pred = Predictive.regression(means, stds)
    single = candidate_scores(pred, y, "crps")
    sel = select_members(pred, y, members=3, strategy="top_k", objective="crps")
    assert list(sel.indices) == list(np.argsort(single, kind="stable")[:3])
    assert len(set(sel.indices)) == 3
    assert sel.trace[0] == pytest.approx(single[sel.indices[0]])


def test_classification_uses_the_mean_probabilities():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=50)
    probs = rng.dirichlet(np.ones(3), size=(4, 50))
    sel = select_members(Predictive.classification(probs), labels, members=3, objective="brier")
    for j in range(1, 4):
        mix = probs[list(sel.indices[:j])].mean(axis=0)
        brier = np.mean(np.sum((mix - np.eye(3)[labels]) ** 2, axis=1))
        assert sel.trace[j - 1] == pytest.approx(brier)
    # exhaustive check of each greedy step over all candidates
    for j in range(1, 3):
        prefix = list(sel.indices[:j])
        scores = [
            np.mean(np.sum((probs[prefix + [c]].mean(0) - np.eye(3)[labels]) ** 2, axis=1))
            for c in range(4)
        ]
        assert sel.indices[j] == int(np.argmin(scores))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"strategy": "best"}, "strategy 'best'"),
        ({"objective": "brier"}, "does not apply to regression"),
        ({"members": 0}, "members"),
        ({"members": 7, "strategy": "top_k"}, "top_k needs members <= candidates"),
    ],
)
def test_bad_selection_arguments(kwargs, words):
    means, stds, y = _candidates(0)
    with pytest.raises(TrustmlInputError, match=words):
        select_members(Predictive.regression(means, stds), y, **{"members": 2, **kwargs})
