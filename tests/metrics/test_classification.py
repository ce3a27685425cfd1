import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from trustml.exceptions import TrustmlInputError
from trustml.metrics import (
    accuracy,
    adaptive_ece,
    brier,
    ece,
    mce,
    nll_categorical,
    reliability_curve,
)

KINDS = [np.asarray, torch.as_tensor]


def _probs(n, c, seed=0, concentration=1.0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, concentration), size=n)
    labels = np.array([rng.choice(c, p=p) for p in probs])  # calibrated by construction
    return probs, labels


def _sharpen(probs, power):
    sharp = probs**power
    return sharp / sharp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("c", [2, 5])
def test_accuracy_and_nll_against_sklearn(kind, c):
    probs, labels = _probs(300, c)
    assert accuracy(kind(probs), kind(labels)) == pytest.approx(
        accuracy_score(labels, probs.argmax(1))
    )
    assert nll_categorical(kind(probs), kind(labels)) == pytest.approx(
        log_loss(labels, probs, labels=list(range(c))), rel=1e-6
    )


def test_nll_clips_zero_probabilities():
    assert nll_categorical([[1.0, 0.0]], [1]) == pytest.approx(-np.log(1e-12))


@pytest.mark.parametrize("kind", KINDS)
def test_brier_binary_is_twice_sklearn(kind):
    # sklearn scores only the positive class, mean((p1 - y)^2); the multi-class sum over both
    # classes counts the same squared error twice.
    probs, labels = _probs(400, 2, seed=1)
    assert brier(kind(probs), kind(labels)) == pytest.approx(
        2 * brier_score_loss(labels, probs[:, 1]), rel=1e-6
    )


def test_brier_multiclass_against_sklearn_unscaled():
    probs, labels = _probs(400, 4, seed=2)
    expected = brier_score_loss(labels, probs, labels=[0, 1, 2, 3], scale_by_half=False)
    assert brier(probs, labels) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_reduction_none_is_per_sample(kind):
    probs, labels = _probs(50, 3, seed=3)
    rows = np.arange(50)
    np.testing.assert_allclose(
        nll_categorical(kind(probs), kind(labels), reduction="none"), -np.log(probs[rows, labels])
    )
    onehot = np.eye(3)[labels]
    np.testing.assert_allclose(
        brier(kind(probs), kind(labels), reduction="none"), ((probs - onehot) ** 2).sum(1)
    )
    hits = accuracy(kind(probs), kind(labels), reduction="none")
    assert hits.shape == (50,) and set(np.unique(hits)) <= {0.0, 1.0}
    assert hits.mean() == accuracy(probs, labels)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("power", "n_bins"), [(1.0, 15), (3.0, 15), (0.5, 10)])
def test_ece_and_mce_against_torchmetrics(kind, power, n_bins):
    probs, labels = _probs(2000, 4, seed=4)
    probs = _sharpen(probs, power)
    p_t, y_t = torch.as_tensor(probs), torch.as_tensor(labels)
    for ours, norm in ((ece, "l1"), (mce, "max")):
        expected = multiclass_calibration_error(p_t, y_t, num_classes=4, n_bins=n_bins, norm=norm)
        assert ours(kind(probs), kind(labels), n_bins=n_bins) == pytest.approx(
            float(expected), abs=1e-6
        )


def _adaptive_ece_by_loop(probs, labels, n_bins):
    conf = probs.max(1)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for b in range(n_bins):
        idx = order[b * len(conf) // n_bins : (b + 1) * len(conf) // n_bins]
        acc = np.mean(probs[idx].argmax(1) == labels[idx])
        total += len(idx) * abs(acc - conf[idx].mean())
    return total / len(conf)


@pytest.mark.parametrize("n", [1500, 1501])
def test_adaptive_ece_has_equal_mass_bins(n):
    probs, labels = _probs(n, 3, seed=5, concentration=0.5)
    probs = _sharpen(probs, 2.0)
    if n % 15 == 0:  # equal bins: the loop above is exact
        assert adaptive_ece(probs, labels) == pytest.approx(
            _adaptive_ece_by_loop(probs, labels, 15), abs=1e-12
        )
    # Sharpened probabilities are over-confident under either binning.
    assert adaptive_ece(probs, labels) > 0.05 and ece(probs, labels) > 0.05


def test_calibration_errors_of_calibrated_data_are_small():
    probs, labels = _probs(20_000, 4, seed=3)
    # Sampling noise alone gives about sum_b (n_b/N) * sqrt(acc_b (1 - acc_b) / n_b) ~ 0.01.
    assert ece(probs, labels) < 0.025
    assert adaptive_ece(probs, labels) < 0.025


def test_ece_and_mce_by_hand():
    # 4 samples at 0.95, all right (gap 0.05); 4 samples at 0.65, 2 right (gap 0.15).
    probs = np.array([[0.95, 0.05]] * 4 + [[0.35, 0.65]] * 4)
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 0])
    assert ece(torch.as_tensor(probs), torch.as_tensor(labels)) == pytest.approx(
        0.5 * 0.05 + 0.5 * 0.15
    )
    assert mce(probs, labels) == pytest.approx(0.15)
    assert adaptive_ece(probs, labels, n_bins=2) == pytest.approx(0.1)


def test_reliability_curve_bins_are_right_closed():
    probs = np.array(
        [[0.2] * 5, [0.6, 0.1, 0.1, 0.1, 0.1], [1.0, 0, 0, 0, 0], [0.61, 0.39, 0, 0, 0]]
    )
    labels = np.array([0, 0, 1, 0])
    curve = reliability_curve(probs, labels, n_bins=5)
    assert curve.counts.tolist() == [1, 0, 1, 1, 1]
    assert np.isnan(curve.confidence[1]) and np.isnan(curve.accuracy[1])
    assert curve.accuracy[[0, 2, 3, 4]].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert curve.confidence[3] == pytest.approx(0.61)
    np.testing.assert_allclose(curve.edges, np.linspace(0, 1, 6))


def test_integral_float_labels_are_accepted():
    probs, labels = _probs(50, 3)
    assert accuracy(probs, labels.astype(np.float32)) == accuracy(probs, labels)


@pytest.mark.parametrize(
    ("probs", "labels", "fragment"),
    [
        ([[0.5, 0.5], [0.5, 0.5]], [0, 2], "'labels': expected labels in [0, 2)"),
        ([[0.5, 0.5], [0.5, 0.5]], [0, 0.5], "'labels': expected integer class labels"),
        ([[0.5, 0.5], [0.5, 0.5]], [0], "'labels': expected shape (2,)"),
        ([[0.5, 0.6], [0.5, 0.5]], [0, 1], "'probs': expected rows summing to 1"),
        ([[1.5, -0.5], [0.5, 0.5]], [0, 1], "'probs': expected probabilities in [0, 1]"),
        ([0.5, 0.5], [0, 1], "'probs': expected shape (N, C)"),
        ([[np.nan, 1.0], [0.5, 0.5]], [0, 1], "'probs': holds 1 non-finite"),
    ],
)
def test_bad_inputs_are_named(probs, labels, fragment):
    with pytest.raises(TrustmlInputError) as info:
        brier(probs, labels)
    assert fragment in str(info.value)


@pytest.mark.parametrize("fn", [ece, mce, adaptive_ece])
def test_bad_n_bins(fn):
    with pytest.raises(ValueError, match="n_bins"):
        fn([[0.5, 0.5]], [0], n_bins=0)
