"""attribute() over trustml's own uncertainty wrappers, through their one
``explain_modules(*, output, samples)`` contract (no signature guessing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trustml.explain import attribute, completeness_check
from trustml.uq import DeepEnsemble


def _data(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, np.abs(x[:, :1]) + 0.1 * rng.normal(size=(n, 1))


def _net(out: int = 2) -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, out))


def test_a_deep_ensembles_predicted_std_is_explained_member_by_member():
    x, y = _data()
    ens = DeepEnsemble(_net, members=2, seed=0).fit(x, y, epochs=3, progress=False)
    a = attribute(ens, x[:4], output="std", target=0, n_steps=64)
    assert a.members.shape == (2, 4, 3)
    assert completeness_check(a).passed
    np.testing.assert_allclose(a.outputs[:, :, None], ens.predict(x[:4]).member_stds, rtol=1e-5)


def test_a_classifier_does_not_expose_a_std():
    x, _ = _data()
    labels = (x[:, 0] > 0).astype(np.int64)
    ens = DeepEnsemble(lambda: _net(2), members=2, task="classification", seed=0)
    ens.fit(x, labels, epochs=1, progress=False)
    with pytest.raises(ValueError, match="DeepEnsemble does not expose output='std'.*regression"):
        attribute(ens, x[:2], output="std")


def test_a_wrapper_whose_explain_modules_breaks_the_contract_is_not_excused():
    class OldStyle:  # explain_modules without the output keyword
        def explain_modules(self) -> list[nn.Module]:
            return [nn.Linear(3, 1)]

    x = torch.zeros(2, 3).numpy()
    assert attribute(OldStyle(), x, target=0).members.shape == (1, 2, 3)
    with pytest.raises(TypeError, match="output"):
        attribute(OldStyle(), x, output="std", target=0)
