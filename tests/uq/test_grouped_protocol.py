"""The grouped engine's public protocol: a user's own model class opts in with
``trustml_grouped_forward`` and trains with the loop's numbers; the engine is re-entrant."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import stack_module_state

import trustml.uq._vectorized as vectorized_module
from trustml.models import GroupedCall, GroupedModule, Lanes, build_model, has_grouped_forward
from trustml.uq import DeepEnsemble
from trustml.uq._grouped import GroupedForward, grouped_unsupported


class ResidualNet(nn.Module):
    """What a scientist writes: a skip connection and a parameter of its own, which no
    builtin rule covers. Its grouped forward says how, in four lines."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(1, 16)
        self.block = nn.Sequential(nn.Tanh(), nn.Linear(16, 16), nn.Dropout(0.1))
        self.gain = nn.Parameter(torch.full((16,), 0.5))
        self.out = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + self.gain * self.block(h)
        return self.out(torch.relu(h))

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        h = g.dense(g.run("inp", x))  # (L, b, 16)
        r = g.dense(g.run("block", Lanes(h)))
        h = h + g.param("gain")[:, None, :] * r  # gain: (L, 16)
        return g.run("out", Lanes(torch.relu(h)))


class TinyConv(nn.Module):
    """A convolution, then a global max over space (not a layer of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).amax(dim=(2, 3)))

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        h = g.channels(g.run("conv", x))  # (b, L*4, H, W)
        h = torch.relu(h).amax(dim=(2, 3))  # (b, L*4)
        return g.run("head", Lanes(g.dense(Lanes(h, channels=True))))


class WithoutProtocol(ResidualNet):
    trustml_grouped_forward = None  # type: ignore[assignment]


class WrongProtocol(ResidualNet):
    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        h = g.dense(g.run("inp", x))  # forgets the residual block
        return g.run("out", Lanes(torch.relu(h)))


@pytest.fixture(scope="module")
def line():
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=(96, 1)).astype(np.float32)
    return x, np.sin(x) + 0.1 * rng.normal(size=(96, 1))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 1, 6, 6)).astype(np.float32)
    return x, x.max(axis=(1, 2, 3))[:, None] + 0.05 * rng.normal(size=(64, 1))


def _fit(make, data, vectorize):
    x, y = data
    ens = DeepEnsemble(make, members=3, seed=4, vectorize=vectorize)
    return ens.fit(x, y, epochs=3, batch_size=16, progress=False)


def test_the_protocol_is_public_and_the_builtin_models_use_it():
    assert isinstance(ResidualNet(), GroupedModule) and has_grouped_forward(ResidualNet())
    assert not has_grouped_forward(WithoutProtocol())
    for name, shape in (("cnn", (1, 8, 8)), ("mlp", (3,))):
        net = build_model(name, input_shape=shape, output_dim=2)
        assert isinstance(net, GroupedModule) and grouped_unsupported(net) is None
    assert "trustml_grouped_forward" in grouped_unsupported(WithoutProtocol())


@pytest.mark.parametrize(("make", "data"), [(ResidualNet, "line"), (TinyConv, "images")])
def test_a_users_model_takes_the_grouped_engine_with_the_loops_numbers(
    make, data, request, monkeypatch
):
    monkeypatch.setattr(vectorized_module, "_CACHE_BYTES", 5 * 8 * 1024)  # chunked minibatches
    d = request.getfixturevalue(data)
    grouped, loop = _fit(make, d, "auto"), _fit(make, d, False)
    assert (grouped.training_engine_, loop.training_engine_) == ("grouped", "loop")
    p, q = grouped.predict(d[0]), loop.predict(d[0])
    np.testing.assert_allclose(p.member_means, q.member_means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p.member_stds, q.member_stds, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grouped.history_["loss"], loop.history_["loss"], rtol=1e-4)


def test_without_the_method_or_with_a_wrong_one_the_model_trains_under_vmap(line):
    assert _fit(WithoutProtocol, line, "auto").training_engine_ == "vmap"
    wrong = _fit(WrongProtocol, line, "auto")  # checked against forward, so never used
    assert wrong.training_engine_ == "vmap"
    np.testing.assert_allclose(
        wrong.predict(line[0]).member_means,
        _fit(WrongProtocol, line, False).predict(line[0]).member_means,
        rtol=1e-4,
        atol=1e-5,
    )


def _stacked(make, lanes=8):
    members = []
    for k in range(lanes):
        torch.manual_seed(k)
        members.append(make())
    params, _ = stack_module_state(members)
    return members[0], {n: p.detach() for n, p in params.items()}


def _calls(lanes=8):
    keys = torch.arange(1, lanes + 1, dtype=torch.int64)
    g = torch.Generator().manual_seed(0)
    return [  # different inputs, modes and dropout steps: per-call state that must not mix
        (torch.randn(lanes, 33, 1, generator=g), {"train": True, "keys": keys, "step": 3}),
        (torch.randn(lanes, 17, 1, generator=g), {"train": True, "keys": keys + 9, "step": 8}),
        (torch.randn(lanes, 25, 1, generator=g), {"train": False}),
    ]


def test_the_grouped_forward_gives_each_thread_its_own_call():
    template, params = _stacked(ResidualNet)
    fwd = GroupedForward(template, 8)
    calls = _calls()
    with torch.no_grad():
        want = [fwd(params, x, **kw) for x, kw in calls]
    assert not torch.equal(want[0][:, :17], want[1][:, :17])
    start = threading.Barrier(len(calls))
    got: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(calls))}

    def worker(i: int) -> None:
        x, kw = calls[i]
        start.wait()
        with torch.no_grad():
            for _ in range(30):
                got[i].append(fwd(params, x, **kw))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, outs in got.items():
        assert len(outs) == 30
        assert all(torch.equal(out, want[i]) for out in outs)


class Reentrant(nn.Module):
    """Runs its engine once more from inside its own grouped forward, then carries on."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = ResidualNet()
        self.nested: tuple | None = None  # (engine, args, kwargs) of the call made mid-call
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        if self.nested is not None:
            engine, args, kwargs = self.nested
            self.nested = None
            self.seen = engine(*args, **kwargs)
        return g.run("inner", x)  # uses this call's weights, keys and step after the nested one


def test_the_grouped_forward_is_reentrant_within_a_call():
    template, params = _stacked(Reentrant)
    fwd = GroupedForward(template, 8)
    (x0, kw0), (x1, kw1), _ = _calls()
    with torch.no_grad():
        want_outer, want_inner = fwd(params, x0, **kw0), fwd(params, x1, **kw1)
        template.nested = (fwd, (params, x1), kw1)
        outer = fwd(params, x0, **kw0)
    assert template.seen is not None and torch.equal(template.seen, want_inner)
    assert torch.equal(outer, want_outer)
