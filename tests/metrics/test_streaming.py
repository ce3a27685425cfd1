"""Streaming metrics equal the in-memory scoring of the whole split, values and intervals."""

import h5py
import numpy as np
import pytest

from trustml.exceptions import TrustmlInputError
from trustml.metrics import metric_names
from trustml.metrics.streaming import StreamingMetrics
from trustml.protocol._metric_scores import score


def _regression(n, d, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, d))
    mean = y + rng.normal(scale=0.5, size=(n, d))
    std = rng.uniform(0.2, 1.5, size=(n, d))
    half = 1.64 * std
    return y, {"mean": mean, "std": std, "lower": mean - half, "upper": mean + half}


def _classification(n, c, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, 0.4), size=n)
    labels = rng.integers(0, c, size=n)
    return labels, {"probs": probs}


def _stream(names, task, y, q, bounds, allocate=None):
    m = StreamingMetrics(names, task, len(y), allocate=allocate)
    for a, b in bounds:
        m.update(a, y[a:b], **{k: v[a:b] for k, v in q.items()})
    return m


def _chunks(n, size):
    return [(a, min(a + size, n)) for a in range(0, n, size)]


@pytest.mark.parametrize(("n", "size"), [(700, 700), (5000, 613)])
def test_regression_equals_in_memory_scoring(n, size):
    # n = 5000 draws the replicates in two blocks (2**22 // 5000 = 838 per block).
    y, q = _regression(n, 2, 0)
    names = metric_names("regression")
    seed = np.random.SeedSequence(11)
    expected = score(names, y, q, seed=seed, n_boot=1000)
    got = _stream(names, "regression", y, q, _chunks(n, size)).results(seed=seed, n_boot=1000)
    assert got == expected  # bit for bit: values and both interval ends


def test_classification_equals_in_memory_scoring_ece_included():
    y, q = _classification(3000, 5, 1)
    names = metric_names("classification")
    assert "ece" in names
    seed = np.random.SeedSequence(3)
    expected = score(names, y, q, seed=seed, n_boot=400)
    # Chunks in a shuffled order: the rows land where they belong whatever the order.
    bounds = _chunks(3000, 257)[::-1]
    got = _stream(names, "classification", y, q, bounds).results(seed=seed, n_boot=400)
    assert got == expected


def test_scores_kept_in_hdf5_give_the_same_numbers(tmp_path):
    y, q = _regression(1200, 1, 2)
    names = ["rmse", "nll", "crps", "coverage", "interval_width"]
    with h5py.File(tmp_path / "scores.h5", "w") as f:

        def allocate(name, shape, dtype):
            return f.create_dataset(name, shape=shape, dtype=dtype)

        got = _stream(names, "regression", y, q, _chunks(1200, 100), allocate).results(
            seed=5, n_boot=200
        )
        assert sorted(f.keys()) == sorted(names)
        assert f["nll"].shape == (1200, 1)
    assert got == score(names, y, q, seed=5, n_boot=200)


def test_values_are_the_metric_functions():
    from trustml.metrics import crps_gaussian, ece, rmse

    y, q = _regression(900, 3, 4)
    m = _stream(["rmse", "crps"], "regression", y, q, _chunks(900, 64))
    assert m.values()["rmse"] == rmse(q["mean"], y)
    assert m.values()["crps"] == pytest.approx(crps_gaussian(q["mean"], q["std"], y), rel=1e-12)
    labels, qc = _classification(800, 3, 4)
    mc = _stream(["ece"], "classification", labels, qc, _chunks(800, 99))
    assert mc.values()["ece"] == ece(qc["probs"], labels)


def test_missing_rows_quantities_and_bad_ranges_are_errors():
    y, q = _regression(100, 1, 0)
    m = _stream(["rmse"], "regression", y, q, [(0, 60)])
    with pytest.raises(TrustmlInputError, match="60 rows were scored, expected the split's 100"):
        m.values()
    with pytest.raises(TrustmlInputError, match="needs 'std'"):
        m2 = StreamingMetrics(["nll"], "regression", 100)
        m2.update(0, y[:10], mean=q["mean"][:10])
    with pytest.raises(TrustmlInputError, match="not a non-empty part"):
        m.update(90, y[:20], **q)
    with pytest.raises(TrustmlInputError, match="does not apply to task"):
        StreamingMetrics(["ece"], "regression", 10)
