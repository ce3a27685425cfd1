"""Rank statistics against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from trustml.explain._stats import pairwise_spearman, spearman_rows


def test_spearman_rows_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(6, 3, 4)).astype(float)
    b = rng.normal(size=(6, 3, 4))
    got = spearman_rows(a, b)
    want = [spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(6)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_constant_maps_count_as_uncorrelated():
    assert spearman_rows(np.ones((1, 5)), np.arange(5.0)[None])[0] == 0.0


def test_pairwise_spearman_is_the_mean_over_pairs():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(3, 2, 10))
    want = np.mean([spearmanr(m[i, 0], m[j, 0])[0] for i, j in [(0, 1), (0, 2), (1, 2)]])
    assert pairwise_spearman(m)[0] == pytest.approx(want)
    assert np.isnan(pairwise_spearman(m[:1])).all()


def test_support_spearman_ignores_features_zero_in_both_maps():
    from trustml.explain._stats import spearman_rows, spearman_rows_support

    rng = np.random.default_rng(0)
    a = np.zeros((3, 200))
    b = np.zeros((3, 200))
    a[:, :10] = rng.random((3, 10))
    b[:, :10] = rng.random((3, 10))  # unrelated rankings on a shared sparse support
    assert np.all(spearman_rows(a, b) > 0.5)  # the shared zeros look like agreement
    full = np.array([spearman_rows(a[i : i + 1, :10], b[i : i + 1, :10])[0] for i in range(3)])
    np.testing.assert_allclose(spearman_rows_support(a, b), full)
    assert np.all(np.abs(spearman_rows_support(a, b)) < 0.8)
    # Dense rows are unchanged.
    c, d = rng.random((2, 50)), rng.random((2, 50))
    np.testing.assert_allclose(spearman_rows_support(c, d), spearman_rows(c, d))
