import numpy as np
import pytest
import torch
from scipy import special

from trustml.calibration import SplitConformal, TemperatureScaling
from trustml.exceptions import NotFittedError
from trustml.metrics import accuracy, ece, nll_categorical
from trustml.uq import Predictive


def _data(n, seed, factor, members=1, c=4):
    """Labels drawn from softmax(z); K members whose logits are ``factor * z`` plus noise
    (factor > 1: over-confident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 1.5
    labels = (rng.uniform(size=(n, 1)) > np.cumsum(special.softmax(z, -1), -1)).sum(-1)
    logits = factor * z[None] + 0.2 * rng.normal(size=(members, n, c))
    return logits, labels


@pytest.mark.parametrize(("factor", "members", "seed"), [(3.0, 1, 0), (4.0, 4, 1), (6.0, 2, 2)])
def test_overconfident_classifier_ece_drops_3x_and_nll_does_not_rise(factor, members, seed):
    logits, labels = _data(6000, seed, factor, members)
    cal, test = slice(0, 2000), slice(2000, None)
    ts = TemperatureScaling().fit(
        Predictive.classification(member_logits=logits[:, cal]), labels[cal]
    )
    raw = Predictive.classification(member_logits=logits[:, test])
    out = ts.transform(raw)
    y = labels[test]
    assert ece(out.probs, y) * 3 <= ece(raw.probs, y)
    assert nll_categorical(out.probs, y) < nll_categorical(raw.probs, y)
    assert ts.temperature_ > 1.5 and ts.nll_after_ < ts.nll_before_
    # One temperature per member does not change any member's ranking.
    for k in range(members):
        assert accuracy(out.member_probs[k], y) == accuracy(raw.member_probs[k], y)


@pytest.mark.parametrize("factor", [0.4, 1.0])
def test_underconfident_or_calibrated_classifier_never_gets_worse(factor):
    logits, labels = _data(6000, 3, factor)
    cal, test = slice(0, 2000), slice(2000, None)
    ts = TemperatureScaling().fit(
        Predictive.classification(member_logits=logits[:, cal]), labels[cal]
    )
    raw = Predictive.classification(member_logits=logits[:, test])
    out = ts.transform(raw)
    assert ts.nll_after_ <= ts.nll_before_
    assert (
        nll_categorical(out.probs, labels[test]) <= nll_categorical(raw.probs, labels[test]) + 1e-3
    )
    if factor < 1:
        assert ts.temperature_ < 0.6


def test_temperature_is_the_nll_minimiser():
    """Reference: the same NLL written in torch, minimised over log T by torch's L-BFGS."""
    logits, labels = _data(1500, 4, 2.5, members=3)
    ts = TemperatureScaling().fit(Predictive.classification(member_logits=logits), labels)
    z, y = torch.as_tensor(logits), torch.as_tensor(labels)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], max_iter=50, tolerance_grad=1e-10,
                            line_search_fn="strong_wolfe")  # fmt: skip

    def nll():
        opt.zero_grad()
        logp = torch.log_softmax(z / log_t.exp(), -1)[:, torch.arange(len(y)), y]
        loss = -(torch.logsumexp(logp, 0) - np.log(3)).mean()
        loss.backward()
        return loss

    opt.step(nll)
    assert ts.temperature_ == pytest.approx(float(log_t.detach().exp()), rel=1e-4)
    assert ts.nll_after_ == pytest.approx(float(nll().detach()), abs=1e-9)


def test_probabilities_alone_give_the_same_result_as_logits():
    logits, labels = _data(1000, 5, 3.0, members=2)
    with_logits = Predictive.classification(member_logits=logits)
    probs_only = Predictive.classification(with_logits.member_probs)
    a = TemperatureScaling().fit(with_logits, labels)
    b = TemperatureScaling().fit(probs_only, labels)
    assert a.temperature_ == pytest.approx(b.temperature_, rel=1e-6)
    np.testing.assert_allclose(
        a.transform(with_logits).member_probs, b.transform(probs_only).member_probs, atol=1e-9
    )


def test_result_is_a_new_predictive_that_stacks_with_conformal():
    logits, labels = _data(800, 6, 3.0)
    raw = Predictive.classification(member_logits=logits)
    ts = TemperatureScaling().fit(raw, labels)
    out = ts.transform(raw)
    assert out is not raw and raw.calibration is None
    assert out.calibration.method == "temperature"
    assert out.calibration.params == {"temperature": ts.temperature_}
    np.testing.assert_allclose(out.member_logits, logits / ts.temperature_)
    np.testing.assert_allclose(out.member_probs.sum(-1), 1.0)
    sets = SplitConformal(alpha=0.1).fit(out, labels).transform(out).predict_set()
    assert sets.shape == (800, 4)


def test_errors():
    clf = Predictive.classification(np.full((1, 3, 2), 0.5))
    with pytest.raises(NotFittedError, match="TemperatureScaling instance is not fitted"):
        TemperatureScaling().transform(clf)
    with pytest.raises(ValueError, match="calibrates classification predictives, got a regression"):
        TemperatureScaling().fit(
            Predictive.regression(np.zeros((1, 3, 1)), np.ones((1, 3, 1))), [0, 1, 0]
        )
    with pytest.raises(ValueError, match="bounds"):
        TemperatureScaling(bounds=(2.0, 10.0)).fit(clf, [0, 1, 0])
    fitted = TemperatureScaling().fit(clf, torch.as_tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="fitted on 2 classes, got a predictive with 3"):
        fitted.transform(Predictive.classification(np.full((1, 3, 3), 1 / 3)))
