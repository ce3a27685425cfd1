import numpy as np
import pytest
import torch

from trustml.exceptions import TrustmlInputError
from trustml.metrics import accuracy, bootstrap_ci, crps_ensemble, rmse


def _regression(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(scale=0.1, size=n)


@pytest.mark.parametrize("seed", range(5))
def test_interval_contains_point_estimate(seed):
    y, m = _regression(200, seed)
    lo, hi = bootstrap_ci(rmse, m, y, n_boot=300, seed=seed)
    assert lo < rmse(m, y) < hi

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([1, 1, 1], size=150)
    labels = rng.integers(0, 3, size=150)
    lo, hi = bootstrap_ci(accuracy, probs, labels, n_boot=300, seed=seed)
    assert lo <= accuracy(probs, labels) <= hi


def test_interval_shrinks_with_n():
    widths = {}
    for n in (100, 1600):
        y, m = _regression(n, 0)
        lo, hi = bootstrap_ci(rmse, y, m, n_boot=400, seed=1)
        widths[n] = hi - lo
    assert widths[1600] < 0.5 * widths[100]  # expected ratio sqrt(100 / 1600) = 0.25


def test_interval_of_a_mean_matches_normal_theory():
    rng = np.random.default_rng(7)
    x = rng.normal(size=800)
    lo, hi = bootstrap_ci(np.mean, x, n_boot=2000, level=0.9, seed=3)
    half = 1.6449 * x.std() / np.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(x.mean(), abs=0.2 * half)


def test_deterministic_from_seed():
    y, m = _regression(100, 0)
    assert bootstrap_ci(rmse, y, m, n_boot=100, seed=5) == bootstrap_ci(
        rmse, y, m, n_boot=100, seed=5
    )
    seq = np.random.SeedSequence(5)
    assert bootstrap_ci(rmse, y, m, n_boot=100, seed=seq) == bootstrap_ci(
        rmse, y, m, n_boot=100, seed=5
    )
    assert bootstrap_ci(rmse, y, m, n_boot=100, seed=5) != bootstrap_ci(
        rmse, y, m, n_boot=100, seed=6
    )


def test_rows_are_resampled_jointly():
    y, _ = _regression(50, 0)
    assert bootstrap_ci(lambda a, b: float(np.max(np.abs(a - b))), y, y.copy(), n_boot=50) == (
        0.0,
        0.0,
    )


def test_torch_inputs_and_ensemble_axis_pattern():
    rng = np.random.default_rng(0)
    y = rng.normal(size=60)
    samples = rng.normal(size=(8, 60))
    lo, hi = bootstrap_ci(
        lambda yy, s: crps_ensemble(s.swapaxes(0, 1), yy),
        torch.as_tensor(y),
        torch.as_tensor(samples).T,
        n_boot=200,
    )
    assert lo < crps_ensemble(samples, y) < hi


def test_many_rows_use_chunked_indices():
    x = np.arange(50_000, dtype=float) % 7
    lo, hi = bootstrap_ci(np.mean, x, n_boot=120, seed=0)
    assert lo < x.mean() < hi


@pytest.mark.parametrize(
    ("kwargs", "arrays", "error"),
    [
        ({}, (np.zeros(3), np.zeros(4)), TrustmlInputError),
        ({}, (), TrustmlInputError),
        ({}, (np.float64(1.0),), TrustmlInputError),
        ({"level": 1.0}, (np.zeros(3),), ValueError),
        ({"n_boot": 0}, (np.zeros(3),), ValueError),
    ],
)
def test_bad_arguments(kwargs, arrays, error):
    with pytest.raises(error):
        bootstrap_ci(np.mean, *arrays, **kwargs)
