import numpy as np
import pytest
from scipy import special

from trustml.calibration import IsotonicRecalibration, SplitConformal, conformal_quantile
from trustml.exceptions import NotFittedError
from trustml.uq import Predictive


def test_conformal_quantile_rank():
    scores = np.arange(1, 20, dtype=float)[:, None]  # n = 19
    # ceil((19 + 1) * 0.9) = 18 -> the 18th smallest score.
    assert conformal_quantile(scores, 0.1)[0] == 18.0
    # 1 - (1 - 0.1) is not 0.1 in floating point; the rank must not round up to 19.
    assert conformal_quantile(scores, 1 - (1 - 0.1))[0] == 18.0
    assert np.isinf(conformal_quantile(scores[:5], 0.1)[0])


def _heteroscedastic(n, seed):
    """Targets with input-dependent noise; the model's std is 3x too small."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, 1))
    true_sd = rng.uniform(0.5, 2.0, size=(n, 1))
    y = mu + true_sd * rng.normal(size=(n, 1))
    members = mu[None] + 0.05 * rng.normal(size=(3, n, 1))  # three members that barely disagree
    return Predictive.regression(members, np.broadcast_to(true_sd / 3.0, members.shape)), y


def _rows(pred, idx):
    return Predictive.regression(pred.member_means[:, idx], pred.member_stds[:, idx])


@pytest.mark.parametrize("alpha", [0.1, 0.2])
@pytest.mark.parametrize("n_cal", [58, 98])
def test_split_conformal_coverage_over_random_splits(alpha, n_cal):
    """Exchangeable data, many random calibration/test splits of one pool: the mean coverage is
    ceil((n + 1)(1 - alpha)) / (n + 1), in [1 - alpha, 1 - alpha + 1 / (n + 1))."""
    pool, y = _heteroscedastic(1000, seed=0)
    raw_lo, raw_hi = pool.interval(1 - alpha)
    assert np.mean((y >= raw_lo) & (y <= raw_hi)) < 1 - alpha - 0.2  # raw intervals undercover
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(300):
        perm = rng.permutation(1000)
        cal, test = perm[:n_cal], perm[n_cal:]
        calibrated = SplitConformal(alpha=alpha).fit(_rows(pool, cal), y[cal])
        lo, hi = calibrated.transform(_rows(pool, test)).interval(1 - alpha)
        covered.append(np.mean((y[test] >= lo) & (y[test] <= hi)))
    assert 1 - alpha <= np.mean(covered) <= 1 - alpha + 1 / (n_cal + 1) + 0.02


def test_intervals_stay_adaptive_and_every_level_is_conformal():
    pred, y = _heteroscedastic(400, seed=2)
    conf = SplitConformal(alpha=0.1).fit(pred, y)
    out = conf.transform(pred)
    assert out.calibration.method == "conformal"
    scores = np.abs(y - pred.mean) / pred.std
    for level in (0.5, 0.9, 0.99):
        lo, hi = out.interval(level)
        multiplier = np.broadcast_to(conformal_quantile(scores, 1 - level), lo.shape)
        np.testing.assert_allclose((hi - lo) / (2 * pred.std), multiplier)
        np.testing.assert_allclose((lo + hi) / 2, pred.mean)
    np.testing.assert_allclose(out.interval(0.9)[1], pred.mean + conf.q_ * pred.std)
    # Moments are untouched; the model's own mixture quantiles are still there.
    np.testing.assert_array_equal(out.std, pred.std)
    np.testing.assert_array_equal(out.mixture_quantile(0.95), pred.quantile(0.95))
    tiny = SplitConformal(alpha=0.1).fit(_rows(pred, np.arange(5)), y[:5]).transform(pred)
    assert np.all(np.isinf(tiny.interval(0.9)[1]))


def _classifier(n, seed, sharpen=3.0):
    """True class probabilities, labels drawn from them, and an over-confident model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 5)) * 1.5
    labels = (rng.uniform(size=(n, 1)) > np.cumsum(special.softmax(logits, -1), -1)).sum(-1)
    members = sharpen * logits[None] + 0.3 * rng.normal(size=(2, n, 5))
    return Predictive.classification(member_logits=members), labels


def _cls_rows(pred, idx):
    return Predictive.classification(member_logits=pred.member_logits[:, idx])


@pytest.mark.parametrize("score", ["aps", "lac"])
def test_classification_sets_reach_coverage(score):
    alpha, n_cal = 0.1, 98
    pool, labels = _classifier(1000, seed=3)
    assert np.mean(pool.probs.argmax(1) == labels) < 1 - alpha  # top-1 alone undercovers
    rng = np.random.default_rng(4)
    covered, sizes = [], []
    for _ in range(300):
        perm = rng.permutation(1000)
        cal, test = perm[:n_cal], perm[n_cal:]
        calibrated = SplitConformal(alpha=alpha, score=score).fit(_cls_rows(pool, cal), labels[cal])
        sets = calibrated.transform(_cls_rows(pool, test)).predict_set()
        covered.append(np.mean(sets[np.arange(test.size), labels[test]]))
        sizes.append(sets.sum(1))
    assert np.mean(covered) >= 1 - alpha
    if score == "lac":  # aps includes the class that crosses the threshold: conservative
        assert np.mean(covered) <= 1 - alpha + 1 / (n_cal + 1) + 0.02
    else:
        assert np.all(np.concatenate(sizes) >= 1)  # never empty
    assert 1.0 < np.mean(np.concatenate(sizes)) < 5.0  # informative, not every class


def test_prediction_sets_grow_with_level_and_with_uncertainty():
    pred, labels = _classifier(600, seed=5)
    out = SplitConformal(alpha=0.1).fit(pred, labels).transform(pred)
    s80, s90, s99 = out.predict_set(0.8), out.predict_set(), out.predict_set(0.99)
    assert s90.dtype == bool and s90.shape == (600, 5)
    assert np.all(s80 <= s90) and np.all(s90 <= s99)
    uncertain = pred.entropy > np.median(pred.entropy)
    assert s90[uncertain].sum(1).mean() > s90[~uncertain].sum(1).mean()
    np.testing.assert_array_equal(out.probs, pred.probs)


def test_errors():
    p = Predictive.regression(np.zeros((1, 3, 1)), np.ones((1, 3, 1)))
    with pytest.raises(NotFittedError, match="not fitted yet. Call 'fit'"):
        SplitConformal().transform(p)
    with pytest.raises(ValueError, match="alpha"):
        SplitConformal(alpha=0.0).fit(p, np.zeros((3, 1)))
    clf = Predictive.classification(np.full((1, 3, 2), 0.5))
    with pytest.raises(ValueError, match="The 'score' parameter of SplitConformal must be one of"):
        SplitConformal(score="raps").fit(clf, np.zeros(3, dtype=int))
    with pytest.raises(NotFittedError, match="SplitConformal"):
        clf.predict_set()
    with pytest.raises(ValueError, match=r"shape \(3, 1\)"):
        SplitConformal().fit(p, np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\)"):
        SplitConformal().fit(clf, np.array([0, 1, 2]))
    fitted = SplitConformal().fit(p, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="fitted on 1 targets, got a predictive with 2"):
        fitted.transform(Predictive.regression(np.zeros((1, 3, 2)), np.ones((1, 3, 2))))
    with pytest.raises(ValueError, match="already calibrated \\('conformal'\\)"):
        IsotonicRecalibration().fit(fitted.transform(p), np.zeros((3, 1)))
    with pytest.raises(TypeError, match="expects a trustml Predictive"):
        SplitConformal().fit(np.zeros((3, 1)), np.zeros((3, 1)))
    assert repr(SplitConformal(alpha=0.2)) == "SplitConformal(alpha=0.2, score='aps')"


def test_conformal_pit_agrees_with_the_conformal_intervals_at_every_level():
    pool, y = _heteroscedastic(600, seed=3)
    cal, test = np.arange(300), np.arange(300, 600)
    fitted = SplitConformal(alpha=0.1).fit(_rows(pool, cal), y[cal]).transform(_rows(pool, test))
    pit = fitted.cdf(y[test])
    assert np.all((pit > 0) & (pit < 1))
    for level in (0.3, 0.5, 0.8, 0.9, 0.95):
        lo, hi = fitted.interval(level)
        covered = (y[test] >= lo) & (y[test] <= hi)
        np.testing.assert_array_equal(np.abs(2 * pit - 1) < level, covered)
    # Calibrated: the PIT is close to uniform (the raw mixture's PIT is far from it).
    assert abs(np.mean(pit < 0.25) - 0.25) < 0.08
    raw = _rows(pool, test).cdf(y[test])
    assert abs(np.mean(raw < 0.25) - 0.25) > 0.1
