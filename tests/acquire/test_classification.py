"""Classification scores against hand-computed values, identities and bad input."""

import numpy as np
import pytest

from trustml.acquire import (
    bald,
    expected_entropy,
    least_confidence,
    margin,
    predictive_entropy,
    reduce,
)


def _dirichlet(shape, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(shape[-1]), size=shape[:-1])


def test_bald_of_identical_members_is_zero():
    one = _dirichlet((1, 20, 4))
    probs = np.repeat(one, 6, axis=0)
    np.testing.assert_allclose(bald(probs), 0.0, atol=1e-14)


@pytest.mark.parametrize("c", [2, 3, 5])
def test_bald_of_confident_disagreeing_members_is_log_c(c):
    probs = np.eye(c)[:, None, :]  # member k puts probability 1 on class k: (C, 1, C)
    assert np.isclose(bald(probs)[0], np.log(c))
    assert np.isclose(bald(probs)[0], predictive_entropy(probs)[0])  # mean entropy is 0


def test_entropy_of_uniform_is_log_c():
    assert np.isclose(predictive_entropy(np.full((3, 2, 7), 1 / 7)), np.log(7)).all()
    assert np.all(predictive_entropy(np.eye(3)[None, [0, 2]]) == 0.0)


def test_entropy_splits_into_aleatoric_and_epistemic():
    probs = _dirichlet((5, 50, 4), seed=1)
    total = predictive_entropy(probs)
    np.testing.assert_allclose(total, expected_entropy(probs) + bald(probs), atol=1e-12)
    assert np.all(bald(probs) >= 0) and np.all(total <= np.log(4) + 1e-12)


def test_margin_and_least_confidence_on_known_vectors():
    probs = np.array([[[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]]])
    np.testing.assert_allclose(margin(probs), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(least_confidence(probs), [0.3, 0.6, 0.0])
    # both use the mean over members: two members [0.9, 0.1] and [0.3, 0.7] average to [0.6, 0.4]
    two = np.array([[[0.9, 0.1]], [[0.3, 0.7]]])
    np.testing.assert_allclose(margin(two), [0.8])
    np.testing.assert_allclose(least_confidence(two), [0.4])


def test_per_pixel_probs_give_per_pixel_scores():
    probs = _dirichlet((4, 3, 5, 6, 2), seed=2).transpose(0, 1, 4, 2, 3)  # (K, N, C, H, W)
    scores = bald(probs)
    assert scores.shape == (3, 5, 6)
    # pixel (i, j) of sample n scores like a pool sample of its own
    np.testing.assert_allclose(scores[1, 2, 3], bald(probs[:, 1:2, :, 2, 3])[0])
    assert reduce(scores, "max").shape == (3,)


def test_scores_of_chunks_equal_one_pass():
    probs = _dirichlet((5, 1000, 10), seed=3)
    for fn in (predictive_entropy, bald, margin, least_confidence, expected_entropy):
        whole = fn(probs)
        chunked = np.concatenate([fn(probs[:, i : i + 128]) for i in range(0, 1000, 128)])
        np.testing.assert_array_equal(chunked, whole)


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.ones((2, 3)), r"probs of shape \(K, N, C\)"),
        (np.full((2, 3, 4), 0.3), "sum to 1 over the class axis"),
        (np.full((2, 3, 1), 1.0), "C >= 2"),
        (np.array([[[np.nan, 1.0]]] * 2), "finite"),
        (np.array([[[-0.5, 1.5]]] * 2), r"in \[0, 1\]"),
    ],
)
def test_bad_probs_are_named(probs, match):
    with pytest.raises(ValueError, match=match):
        predictive_entropy(probs)


def test_bald_needs_two_members():
    with pytest.raises(ValueError, match="K >= 2"):
        bald(np.full((1, 3, 2), 0.5))
    assert predictive_entropy(np.full((1, 3, 2), 0.5)).shape == (3,)  # entropy does not
