import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from trustml.exceptions import TrustmlInputError
from trustml.metrics import (
    accuracy,
    brier_score,
    expected_calibration_error,
    nll_categorical,
    reliability_curve,
)

KINDS = [np.asarray, torch.as_tensor]


def _probs(n, c, seed=0, concentration=1.0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, concentration), size=n)
    labels = np.array([rng.choice(c, p=p) for p in probs])  # calibrated by construction
    return labels, probs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("c", [2, 5])
def test_accuracy_and_nll_against_sklearn(kind, c):
    labels, probs = _probs(300, c)
    assert accuracy(kind(labels), kind(probs)) == pytest.approx(
        accuracy_score(labels, probs.argmax(1))
    )
    assert nll_categorical(kind(labels), kind(probs)) == pytest.approx(
        log_loss(labels, probs, labels=list(range(c))), rel=1e-6
    )


def test_nll_clips_zero_probabilities():
    assert nll_categorical([1], [[1.0, 0.0]]) == pytest.approx(-np.log(1e-12))


@pytest.mark.parametrize("kind", KINDS)
def test_brier_binary_is_twice_sklearn(kind):
    # sklearn scores only the positive class, mean((p1 - y)^2); the multi-class sum over both
    # classes counts the same squared error twice.
    labels, probs = _probs(400, 2, seed=1)
    assert brier_score(kind(labels), kind(probs)) == pytest.approx(
        2 * brier_score_loss(labels, probs[:, 1])
    )


def test_brier_multiclass_against_sklearn_unscaled():
    labels, probs = _probs(400, 4, seed=2)
    expected = brier_score_loss(labels, probs, labels=[0, 1, 2, 3], scale_by_half=False)
    assert brier_score(labels, probs) == pytest.approx(expected)


def test_ece_of_calibrated_data_is_near_zero():
    labels, probs = _probs(20_000, 4, seed=3)
    # Sampling noise alone gives about sum_b (n_b/N) * sqrt(acc_b (1 - acc_b) / n_b) ~ 0.01.
    assert expected_calibration_error(labels, probs) < 0.025


def test_ece_of_overconfident_model_by_hand():
    # Every prediction says 0.9 for its top class; 6 of 10 are right: |0.6 - 0.9| = 0.3.
    probs = np.tile([0.9, 0.05, 0.05], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.3)


def test_ece_two_bins_by_hand():
    # 4 samples at 0.95, all right (gap 0.05); 4 samples at 0.65, 2 right (gap 0.15).
    probs = np.array([[0.95, 0.05]] * 4 + [[0.35, 0.65]] * 4)
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 0])
    assert expected_calibration_error(
        torch.as_tensor(labels), torch.as_tensor(probs)
    ) == pytest.approx(0.5 * 0.05 + 0.5 * 0.15)


def test_ece_of_sharpened_probabilities_is_large():
    labels, probs = _probs(5000, 4, seed=4)
    sharp = probs**4 / np.sum(probs**4, axis=1, keepdims=True)
    assert expected_calibration_error(labels, sharp) > 0.1


def test_reliability_curve_bins_are_right_closed():
    probs = np.array(
        [[0.2] * 5, [0.6, 0.1, 0.1, 0.1, 0.1], [1.0, 0, 0, 0, 0], [0.61, 0.39, 0, 0, 0]]
    )
    labels = np.array([0, 0, 1, 0])
    curve = reliability_curve(labels, probs, n_bins=5)
    assert curve.counts.tolist() == [1, 0, 1, 1, 1]
    assert np.isnan(curve.confidence[1]) and np.isnan(curve.accuracy[1])
    assert curve.accuracy[[0, 2, 3, 4]].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert curve.confidence[3] == pytest.approx(0.61)
    np.testing.assert_allclose(curve.edges, np.linspace(0, 1, 6))


def test_ece_is_weighted_gap_of_reliability_curve():
    labels, probs = _probs(1000, 3, seed=6, concentration=0.5)
    curve = reliability_curve(labels, probs, n_bins=10)
    assert curve.counts.sum() == 1000
    full = curve.counts > 0
    expected = (
        np.sum(curve.counts[full] * np.abs(curve.accuracy[full] - curve.confidence[full])) / 1000
    )
    assert expected_calibration_error(labels, probs, n_bins=10) == pytest.approx(expected)


def test_integral_float_labels_are_accepted():
    labels, probs = _probs(50, 3)
    assert accuracy(labels.astype(np.float32), probs) == accuracy(labels, probs)


@pytest.mark.parametrize(
    ("labels", "probs", "fragment"),
    [
        ([0, 2], [[0.5, 0.5], [0.5, 0.5]], "'labels': expected labels in [0, 2)"),
        ([0, 0.5], [[0.5, 0.5], [0.5, 0.5]], "'labels': expected integer class labels"),
        ([0], [[0.5, 0.5], [0.5, 0.5]], "'labels': expected shape (2,)"),
        ([0, 1], [[0.5, 0.6], [0.5, 0.5]], "'probs': expected rows summing to 1"),
        ([0, 1], [[1.5, -0.5], [0.5, 0.5]], "'probs': expected probabilities in [0, 1]"),
        ([0, 1], [0.5, 0.5], "'probs': expected shape (N, C)"),
        ([0, 1], [[np.nan, 1.0], [0.5, 0.5]], "'probs': holds 1 non-finite"),
    ],
)
def test_bad_inputs_are_named(labels, probs, fragment):
    with pytest.raises(TrustmlInputError) as info:
        brier_score(labels, probs)
    assert fragment in str(info.value)


def test_bad_n_bins():
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0], [[0.5, 0.5]], n_bins=0)
