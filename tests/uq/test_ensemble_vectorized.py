"""Vectorized ensemble training: every engine gives the loop's numbers; members stay separate."""

import logging

import numpy as np
import pytest
import torch
from torch import nn

import trustml.uq._vectorized as vectorized_module
import trustml.uq.ensemble as ensemble_module
from trustml.models import build_model
from trustml.uq import DeepEnsemble
from trustml.uq._member_dropout import keep_mask


def _cnn():
    return build_model("cnn", input_shape=(1, 8, 8), output_dim=4, channels=(4, 8), dropout=0.2)


def _mlp():
    return nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


class _Custom(nn.Module):
    """Not built from recognised layers, but vmap-compatible: trained under vmap."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(1, 16) * 0.5)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.drop(torch.tanh(x @ self.w)))


class _Item(nn.Module):
    """Calls .item() in forward, which vmap cannot run: trained member by member."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 2)

    def forward(self, x):
        if x.abs().max().item() > 1e9:
            return x
        return self.lin(x)


@pytest.fixture(scope="module")
def fields():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 1, 8, 8)).astype(np.float32)
    y = np.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], axis=1) + 0.05 * rng.normal(size=(96, 2))
    return x, y


@pytest.fixture(scope="module")
def line():
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=(160, 1)).astype(np.float32)
    return x, np.sin(x) + 0.1 * rng.normal(size=(160, 1))


def _fit(make, x, y, vectorize, members=3, **kw):
    ens = DeepEnsemble(make, members=members, seed=5, vectorize=vectorize)
    return ens.fit(x, y, epochs=3, batch_size=16, progress=False, **kw)


@pytest.mark.parametrize(
    ("make", "data", "engine"),
    [(_cnn, "fields", "grouped"), (_mlp, "line", "grouped"), (_Custom, "line", "vmap")],
)
def test_vectorized_training_matches_the_loop(make, data, engine, request, monkeypatch):
    # Minibatches of 16 run in chunks of 5 samples (largest cnn activation: 1 KiB per sample).
    monkeypatch.setattr(vectorized_module, "_CACHE_BYTES", 5 * 8 * 1024)
    x, y = request.getfixturevalue(data)
    vec, loop = _fit(make, x, y, True), _fit(make, x, y, False)
    assert (vec.training_engine_, loop.training_engine_) == (engine, "loop")
    p, q = vec.predict(x), loop.predict(x)
    np.testing.assert_allclose(p.member_means, q.member_means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p.member_stds, q.member_stds, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vec.history_["loss"], loop.history_["loss"], rtol=1e-4)


def test_every_engine_starts_from_the_same_initial_weights(fields, monkeypatch):
    # Skip training: _fit_members then returns the weights as they went into the engine.
    def no_training(engine, head, source, **kw):
        return {"loss": [[] for _ in range(engine.members)]}

    monkeypatch.setattr(ensemble_module, "train_members", no_training)
    x, y = fields
    states = {
        v: DeepEnsemble(_cnn, members=3, seed=2, vectorize=v)._fit_members(range(3), x, y)
        for v in (True, False)
    }
    for a, b in zip(states[True]["state_dicts"], states[False]["state_dicts"], strict=True):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), name


def test_one_adam_over_stacked_parameters_is_exactly_per_member_adam():
    g = torch.Generator().manual_seed(0)
    stacked = torch.randn(4, 5, 3, generator=g).requires_grad_()
    singles = [stacked[k].detach().clone().requires_grad_() for k in range(4)]
    opt = torch.optim.Adam([stacked], lr=1e-2, weight_decay=1e-3)
    opts = [torch.optim.Adam([p], lr=1e-2, weight_decay=1e-3) for p in singles]
    for _ in range(5):
        grads = torch.randn(4, 5, 3, generator=g)
        stacked.grad = grads.clone()
        opt.step()
        for k, (p, o) in enumerate(zip(singles, opts, strict=True)):
            p.grad = grads[k].clone()
            o.step()
    for k in range(4):
        assert torch.equal(stacked.detach()[k], singles[k].detach())


@pytest.mark.determinism
@pytest.mark.parametrize("vectorize", [True, False])
def test_member_k_does_not_depend_on_the_other_members(fields, vectorize):
    x, y = fields
    ens = DeepEnsemble(_cnn, members=5, seed=11, vectorize=vectorize)
    kw = {"epochs": 2, "batch_size": 16, "progress": False}
    alone = ens._fit_members([3], x, y, **kw)
    among = ens._fit_members([4, 3, 0], x, y, **kw)
    nine = DeepEnsemble(_cnn, members=9, seed=11, vectorize=vectorize)
    bigger = nine._fit_members([3, 8], x, y, **kw)
    # 9 members: two blocks of lanes; member 3 sits at another lane of the second block.
    reordered = nine._fit_members([8, 7, 6, 5, 4, 2, 1, 0, 3], x, y, **kw)
    for other, j in ((among, 1), (bigger, 0), (reordered, 8)):
        assert other["history"]["loss"][j] == alone["history"]["loss"][0]
        for name, t in alone["state_dicts"][0].items():
            assert torch.equal(other["state_dicts"][j][name], t), name


@pytest.mark.determinism
def test_members_trained_apart_assemble_into_the_full_ensemble(line):
    x, y = line
    kw = {"epochs": 2, "batch_size": 32, "progress": False}
    full = DeepEnsemble(_mlp, members=4, seed=3).fit(x, y, **kw)
    parts = [
        DeepEnsemble(_mlp, members=4, seed=3)._fit_members(ids, x, y, **kw)
        for ids in ([2, 0], [3], [1])
    ]
    assembled = DeepEnsemble(_mlp, members=4, seed=3)._assemble(parts)
    np.testing.assert_array_equal(assembled.predict(x).member_means, full.predict(x).member_means)
    assert assembled.history_ == full.history_
    with pytest.raises(ValueError, match="missing \\[1\\]"):
        DeepEnsemble(_mlp, members=4, seed=3)._assemble(parts[:2])


def test_dropout_masks_are_per_member_and_per_step():
    keys = torch.tensor([1, 2, 1])
    m = keep_mask(keys, step=0, layer=0, shape=(64, 32), p=0.25)
    assert m.shape == (3, 64, 32)
    assert torch.equal(m[0], m[2]) and not torch.equal(m[0], m[1])
    assert abs(m.float().mean().item() - 0.75) < 0.02
    assert not torch.equal(m[0], keep_mask(keys[0], 1, 0, (64, 32), 0.25))
    assert not torch.equal(m[0], keep_mask(keys[0], 0, 1, (64, 32), 0.25))
    # a chunk of the minibatch gets the rows the whole batch would have
    assert torch.equal(m[1, 16:24], keep_mask(keys[1], 0, 0, (8, 32), 0.25, offset=16))


def test_fallback_to_the_loop_logs_why(line, caplog):
    x, y = line
    with caplog.at_level(logging.INFO, logger="trustml"):
        ens = _fit(_Item, x, y, "auto")
    assert ens.training_engine_ == "loop"
    assert any("one by one" in r.message and ".item()" in r.message for r in caplog.records)
    with pytest.raises(ValueError, match="vectorize=True.*item"):
        _fit(_Item, x, y, True)


def test_global_torch_rng_is_left_alone(line):
    x, y = line
    torch.manual_seed(123)
    before = torch.get_rng_state()
    _fit(_mlp, x, y, "auto")
    _fit(_mlp, x, y, False)
    assert torch.equal(torch.get_rng_state(), before)


# -- per-lane optimiser settings (hyper-parameter search trials as lanes) -------------------
_LANE_LR = [1e-3, 4e-3, 2e-2]
_LANE_WD = [0.0, 1e-3, 3e-2]


def test_lane_adam_is_per_member_adam_with_its_own_lr_and_decay():
    from trustml.uq._lanes import LaneAdam

    g = torch.Generator().manual_seed(0)
    stacked = torch.randn(3, 5, 4, generator=g).requires_grad_()
    singles = [stacked[k].detach().clone().requires_grad_() for k in range(3)]
    opt = LaneAdam([stacked], _LANE_LR, _LANE_WD)
    opts = [
        torch.optim.Adam([p], lr=lr, weight_decay=wd)
        for p, lr, wd in zip(singles, _LANE_LR, _LANE_WD, strict=True)
    ]
    for _ in range(20):
        grads = torch.randn(3, 5, 4, generator=g)
        stacked.grad = grads.clone()
        opt.step()
        for k, (p, o) in enumerate(zip(singles, opts, strict=True)):
            p.grad = grads[k].clone()
            o.step()
    for k in range(3):
        torch.testing.assert_close(stacked.detach()[k], singles[k].detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.determinism
@pytest.mark.parametrize(("make", "data"), [(_cnn, "fields"), (_mlp, "line"), (_Custom, "line")])
@pytest.mark.parametrize("vectorize", ["auto", False])
def test_members_with_their_own_lr_and_decay_train_as_they_would_alone(
    make, data, vectorize, request
):
    x, y = request.getfixturevalue(data)
    ens = DeepEnsemble(make, members=5, seed=7, vectorize=vectorize)
    kw = {"epochs": 3, "batch_size": 16, "progress": False}
    lanes = ens._fit_members([4, 0, 2], x, y, lr=_LANE_LR, weight_decay=_LANE_WD, **kw)
    for j, k in enumerate([4, 0, 2]):
        alone = ens._fit_members([k], x, y, lr=_LANE_LR[j], weight_decay=_LANE_WD[j], **kw)
        np.testing.assert_allclose(
            lanes["history"]["loss"][j], alone["history"]["loss"][0], rtol=1e-5
        )
        for name, t in alone["state_dicts"][0].items():
            torch.testing.assert_close(lanes["state_dicts"][j][name], t, rtol=1e-5, atol=1e-6)


@pytest.mark.determinism
def test_a_lane_that_diverges_stops_and_leaves_the_others_alone(fields):
    x, y = fields
    ens = DeepEnsemble(_cnn, members=3, seed=7)
    kw = {"epochs": 2, "batch_size": 16, "progress": False}
    with pytest.raises(FloatingPointError, match=r"member\(s\) \[1\]"):
        ens._fit_members([0, 1], x, y, lr=[1e-3, 1e30], weight_decay=0.0, **kw)
    part = ens._fit_members([0, 1], x, y, lr=[1e-3, 1e30], weight_decay=0.0, nonfinite="stop", **kw)
    alone = ens._fit_members([0], x, y, lr=[1e-3], weight_decay=[0.0], **kw)
    assert part["history"]["loss"][1] == [] and len(part["history"]["loss"][0]) == 2
    for name, t in alone["state_dicts"][0].items():
        assert torch.equal(part["state_dicts"][0][name], t), name


def test_per_member_settings_are_checked(line):
    x, y = line
    ens = DeepEnsemble(_mlp, members=3, seed=0)
    with pytest.raises(ValueError, match="one per member \\(2\\), got 3"):
        ens._fit_members([0, 1], x, y, lr=[1e-3, 1e-3, 1e-3], epochs=1)
    with pytest.raises(ValueError, match="'lr' parameter"):
        ens._fit_members([0, 1], x, y, lr=[1e-3, -1.0], epochs=1)
    with pytest.raises(ValueError, match="nonfinite"):
        ens._fit_members([0], x, y, nonfinite="ignore", epochs=1)
