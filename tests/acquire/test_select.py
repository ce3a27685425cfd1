"""select(): strategies by name, budgets, seeds, spatial reduction."""

import numpy as np
import pytest

from trustml.acquire import STRATEGIES, bald, predictive_variance, reduce, select, top_k


def _probs(k=5, n=60, c=3, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(c), size=(k, n))


def test_every_strategy_returns_distinct_indices_within_the_pool():
    probs = _probs()
    rng = np.random.default_rng(1)
    gaussian = (rng.normal(size=(4, 60, 2)), rng.gamma(2.0, size=(4, 60, 2)))
    inputs = {"probs": probs, "gaussian": gaussian, "scores": bald(probs), "any": probs}
    for name in STRATEGIES:
        picks = select(inputs[STRATEGIES.get(name).input], 12, strategy=name, seed=0)
        assert picks.shape == (12,) and picks.dtype == np.int64, name
        assert len(set(picks.tolist())) == 12 and picks.min() >= 0 and picks.max() < 60, name


def test_score_strategies_are_top_k_of_their_score():
    probs = _probs()
    np.testing.assert_array_equal(select(probs, 7, strategy="bald"), top_k(bald(probs), 7))
    mean, var = np.random.default_rng(2).normal(size=(2, 3, 60, 1))
    var = var**2
    np.testing.assert_array_equal(
        select((mean, var), 5, strategy="variance"), top_k(predictive_variance(mean, var), 5)
    )


def test_random_is_determined_by_the_seed():
    probs = _probs()
    a = select(probs, 10, strategy="random", seed=7)
    assert np.array_equal(a, select(probs, 10, strategy="random", seed=7))
    assert not np.array_equal(a, select(probs, 10, strategy="random", seed=8))
    np.testing.assert_array_equal(a, select(np.zeros(60), 10, strategy="random", seed=7))


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown acquisition strategy 'bold'; valid: .*bald.*"):
        select(_probs(), 3, strategy="bold")


def test_budget_larger_than_the_pool_is_refused():
    with pytest.raises(ValueError, match=r"budget in \[0, 60\] \(the pool has 60 samples\)"):
        select(_probs(), 61, strategy="entropy")
    with pytest.raises(ValueError, match="budget in"):
        select(_probs(), 61, strategy="batchbald")
    with pytest.raises(ValueError, match="budget to be an int"):
        select(_probs(), 2.5, strategy="entropy")
    assert select(_probs(), 0, strategy="bald").shape == (0,)


def test_input_that_does_not_fit_the_strategy_is_named():
    with pytest.raises(ValueError, match=r"\(mean, var\) pair"):
        select(_probs(), 3, strategy="variance")
    with pytest.raises(ValueError, match="K >= 2"):
        select(_probs(k=1), 3, strategy="bald")
    with pytest.raises(ValueError, match="batchbald"):
        select(_probs().reshape(5, 6, 10, 3).transpose(0, 1, 3, 2), 2, strategy="batchbald")


def test_spatial_reduction_on_a_known_array():
    scores = np.array([[[0.0, 1.0], [2.0, 5.0]], [[3.0, 3.0], [3.0, 3.0]]])  # (N=2, 2, 2)
    np.testing.assert_allclose(reduce(scores, "mean"), [2.0, 3.0])
    np.testing.assert_allclose(reduce(scores, "max"), [5.0, 3.0])
    np.testing.assert_allclose(reduce(scores, "quantile", q=0.5), [1.5, 3.0])
    np.testing.assert_allclose(reduce(scores, "quantile", q=0.9), [4.1, 3.0])
    np.testing.assert_array_equal(reduce([1.0, 2.0]), [1.0, 2.0])
    with pytest.raises(ValueError, match="'how' parameter of reduce"):
        reduce(scores, "median")


def test_per_pixel_selection_uses_the_reduction():
    k, n, c, h, w = 4, 10, 2, 3, 3
    probs = np.full((k, n, c, h, w), 0.5)
    probs[0, 3, :, 0, 0] = [1.0, 0.0]  # sample 3: one pixel of strong disagreement
    probs[1, 3, :, 0, 0] = [0.0, 1.0]
    probs[0, 5] = np.array([0.9, 0.1])[:, None, None]  # sample 5: milder, but everywhere
    probs[1, 5] = np.array([0.1, 0.9])[:, None, None]
    assert select(probs, 1, strategy="bald", reduce="max").tolist() == [3]
    assert select(probs, 1, strategy="bald", reduce="mean").tolist() == [5]
