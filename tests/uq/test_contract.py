"""The estimator contract, checked over every uncertainty method.

In the spirit of scikit-learn's ``parametrize_with_checks``: every check runs over every entry
of :data:`ESTIMATORS`, so a new method (Laplace, say) gets them all by adding one line there.
The bad-parameter checks read each class's declared ``_parameter_constraints`` and
``_fit_constraints`` and try one value that breaks them, so a newly declared parameter is
covered without being listed here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import pytest
import torch
from torch import nn

from trustml.exceptions import NotFittedError
from trustml.uq import (
    BayesianNN,
    DeepEnsemble,
    InvalidParameterError,
    Laplace,
    MCDropout,
    Predictive,
    UncertaintyEstimator,
)
from trustml.uq._constraints import invalid_value
from trustml.uq._train_settings import TRAIN_CONSTRAINTS

N, D_IN, CLASSES = 24, 3, 3


@dataclass(frozen=True)
class Case:
    """One uncertainty method, configured small: ``cls(net, task=..., seed=..., **params)``."""

    id: str
    cls: type[UncertaintyEstimator]
    params: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    task: str = "regression"
    dropout: float = 0.0
    #: Regression: the model outputs the mean only (D = 1), for methods with one noise level.
    homoscedastic: bool = False

    def net(self) -> nn.Module:
        # D = 1: mean and raw scale (or the mean alone)
        out = (1 if self.homoscedastic else 2) if self.task == "regression" else CLASSES
        return nn.Sequential(
            nn.Linear(D_IN, 6), nn.Tanh(), nn.Dropout(self.dropout), nn.Linear(6, out)
        )

    def build(self, seed: int = 0, **overrides: Any) -> UncertaintyEstimator:
        kwargs = {"task": self.task, "seed": seed, **self.params, **overrides}
        return self.cls(self.net(), **kwargs)

    def fitted(self, seed: int = 0) -> UncertaintyEstimator:
        x, y = data(self.task)
        return self.build(seed).fit(x, y, progress=False, **self.fit)


_TRAIN = {"epochs": 2, "batch_size": 8}

#: Every uncertainty method, small enough that the whole module runs in well under a minute.
ESTIMATORS = [
    Case("deep_ensemble", DeepEnsemble, {"members": 3}, _TRAIN),
    Case("deep_ensemble-classification", DeepEnsemble, {"members": 2}, _TRAIN, "classification"),
    Case("mc_dropout", MCDropout, {"samples": 4}, _TRAIN, dropout=0.2),
    Case("mc_dropout-classification", MCDropout, {"samples": 3}, _TRAIN, "classification", 0.2),
    Case("bayes_svi", BayesianNN, {}, _TRAIN),
    Case("bayes_svi-classification", BayesianNN, {}, _TRAIN, "classification"),
    Case("bayes_nuts", BayesianNN, {"inference": "nuts"}, {"num_samples": 4, "warmup": 3, "chains": 1}),
    Case("laplace", Laplace, {"samples": 4}, _TRAIN, homoscedastic=True),
    Case("laplace-all-glm", Laplace, {"subset_of_weights": "all", "hessian": "diag", "samples": 4}, _TRAIN, homoscedastic=True),
    Case("laplace-classification", Laplace, {"samples": 3}, _TRAIN, "classification"),
    Case("laplace-all-nn-classification", Laplace, {"subset_of_weights": "all", "pred": "nn", "prior_precision": "gridsearch", "samples": 3}, _TRAIN, "classification"),
]  # fmt: skip

_IDS = [c.id for c in ESTIMATORS]


def data(task: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D_IN)).astype(np.float32)
    if task == "classification":
        return x, rng.integers(0, CLASSES, size=N)
    return x, x[:, :1] - 0.5 * x[:, 1:2] + 0.1 * rng.normal(size=(N, 1))


def predict_members(est: UncertaintyEstimator, x: np.ndarray, count: int) -> Predictive:
    """Predictions whose first ``count`` members match ``explain_modules(samples=count)``."""
    takes_samples = "samples" in inspect.signature(est.predict).parameters
    return est.predict(x, samples=count) if takes_samples else est.predict(x)


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


_FITTED: dict[str, UncertaintyEstimator] = {}


@pytest.fixture(params=ESTIMATORS, ids=_IDS)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.fixture
def fitted(case: Case) -> UncertaintyEstimator:
    """``case`` fitted once with seed 0 and shared by the checks that only read it."""
    if case.id not in _FITTED:
        _FITTED[case.id] = case.fitted(seed=0)
    return _FITTED[case.id]


# -- construction -------------------------------------------------------------------------
def test_every_constructor_parameter_is_declared_and_stored_as_given(case):
    est = case.build()
    params = est.get_params()
    assert set(params) == set(case.cls._parameter_constraints)
    assert params["seed"] == 0 and params["task"] == case.task
    for name, value in case.params.items():
        assert params[name] is value


def test_the_constructor_only_stores_its_arguments(case):
    est = case.build(task="bogus", seed=-1)  # no error until fit
    assert est.get_params()["task"] == "bogus"
    assert not hasattr(est, "n_outputs_")


def _bad_parameter_cases() -> list[Any]:
    return [
        pytest.param(c, name, id=f"{c.id}-{name}")
        for c in ESTIMATORS
        for name in c.cls._parameter_constraints
    ]


@pytest.mark.parametrize(("case", "name"), _bad_parameter_cases())
def test_a_bad_parameter_fails_fit_naming_it(case, name):
    params = case.build().get_params()
    params[name] = invalid_value(case.cls._parameter_constraints[name])
    x, y = data(case.task)
    owner = case.cls.__name__
    with pytest.raises(InvalidParameterError, match=f"^The '{name}' parameter of {owner} must be"):
        case.cls(**params).fit(x, y, progress=False, **case.fit)


def _bad_fit_option_cases() -> list[Any]:
    return [pytest.param(c, key, id=f"{c.id}-{key}") for c in ESTIMATORS for key in c.fit]


@pytest.mark.parametrize(("case", "key"), _bad_fit_option_cases())
def test_a_bad_training_setting_fails_fit_naming_it(case, key):
    table = {**TRAIN_CONSTRAINTS, **case.cls._fit_constraints}
    x, y = data(case.task)
    fit = {**case.fit, key: invalid_value(table[key])}
    owner = f"{case.cls.__name__}.fit"
    with pytest.raises((ValueError, TypeError), match=f"'{key}' parameter of {owner} must be"):
        case.build().fit(x, y, progress=False, **fit)


def test_using_it_before_fit_raises_not_fitted(case):
    est = case.build()
    x, _ = data(case.task)
    with pytest.raises(NotFittedError, match=f"This {case.cls.__name__} instance is not fitted"):
        est.predict(x)
    with pytest.raises(NotFittedError, match="Call 'fit'"):
        est.explain_modules()


# -- fit and predict ----------------------------------------------------------------------
def test_fit_returns_self_and_predict_a_predictive_of_the_right_shapes(case):
    x, y = data(case.task)
    est = case.build()
    assert est.fit(x, y, progress=False, **case.fit) is est
    _FITTED.setdefault(case.id, est)
    pred = est.predict(x[:5])
    assert isinstance(pred, Predictive) and pred.task == case.task
    s = pred.n_members
    assert s >= 1
    if case.task == "regression":
        assert pred.member_means.shape == pred.member_stds.shape == (s, 5, 1)
        assert pred.mean.shape == pred.std.shape == (5, 1)
        assert np.all(pred.member_stds > 0)
    else:
        assert pred.member_probs.shape == (s, 5, CLASSES)
        np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0, atol=1e-6)


def test_the_same_seed_gives_the_same_predictions(case, fitted):
    x, _ = data(case.task)
    again = case.fitted(seed=0).predict(x).members
    np.testing.assert_array_equal(again, fitted.predict(x).members)
    other = case.fitted(seed=1).predict(x).members
    assert not np.allclose(other, again)


def test_fit_leaves_the_global_torch_generator_alone(case):
    est = case.build()
    x, y = data(case.task)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    est.fit(x, y, progress=False, **case.fit)
    assert torch.equal(torch.get_rng_state(), before)


def test_save_and_load_give_the_same_predictions(case, fitted, tmp_path):
    if not hasattr(case.cls, "save"):
        pytest.skip(f"{case.cls.__name__} has no save/load")
    x, _ = data(case.task)
    path = fitted.save(tmp_path / "model.pt")
    loaded = case.cls.load(path, case.net())
    np.testing.assert_array_equal(loaded.predict(x).members, fitted.predict(x).members)
    # the architecture ("make_model" or "module") comes from the caller of load
    skip = {"make_model", "module"}
    assert {k: v for k, v in loaded.get_params().items() if k not in skip} == {
        k: v for k, v in fitted.get_params().items() if k not in skip
    }


# -- attribution --------------------------------------------------------------------------
def test_explain_modules_has_one_keyword_only_signature(case):
    sig = inspect.signature(case.cls.explain_modules)
    kinds = {n: p.kind for n, p in sig.parameters.items() if n != "self"}
    assert kinds == {
        "output": inspect.Parameter.KEYWORD_ONLY,
        "samples": inspect.Parameter.KEYWORD_ONLY,
    }
    assert sig.parameters["output"].default == "mean" and sig.parameters["samples"].default is None


def test_explain_modules_compute_the_predicted_members(case, fitted):
    x, _ = data(case.task)
    xt = torch.as_tensor(x)
    modules = fitted.explain_modules(samples=2)
    assert len(modules) == 2 and all(isinstance(m, nn.Module) for m in modules)
    pred = predict_members(fitted, x, 2)
    with torch.no_grad():
        outs = np.stack([m(xt).double().numpy() for m in modules])
    if case.task == "classification":
        probs = torch.softmax(torch.as_tensor(outs), dim=-1).numpy()
        np.testing.assert_allclose(probs, pred.member_probs[:2], rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="regression"):
            fitted.explain_modules(output="std")
        return
    np.testing.assert_allclose(outs, pred.member_means[:2], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        stds = np.stack(
            [m(xt).double().numpy() for m in fitted.explain_modules(output="std", samples=2)]
        )
    np.testing.assert_allclose(stds, pred.member_stds[:2], rtol=1e-5, atol=1e-6)


def test_explain_modules_reject_bad_arguments_by_name(case, fitted):
    owner = f"{case.cls.__name__}.explain_modules"
    with pytest.raises(ValueError, match=f"'output' parameter of {owner} must be one of"):
        fitted.explain_modules(output="variance")
    with pytest.raises(ValueError, match=f"'samples' parameter of {owner} must be an int >= 1"):
        fitted.explain_modules(samples=0)
    with pytest.raises(TypeError):
        fitted.explain_modules(2)  # type: ignore[misc]
