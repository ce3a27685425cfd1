"""Builtin models run under torch.func.vmap over stacked members, as the ensembles do."""

import copy

import pytest
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from trustml.models import build_model

CASES = [
    ("cnn", (2, 8, 8)),
    ("cnn", (1, 4, 6, 6)),
    ("cnn", (1, 2, 4, 4, 4)),
    ("mlp", (3, 4)),
    ("lstm", (5, 3)),
]


def _members(name, shape, n=3):
    members = []
    for k in range(n):
        torch.manual_seed(k)
        members.append(build_model(name, input_shape=shape, output_dim=2, dropout=0.1).eval())
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    return members, params, buffers, base


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_vmap_over_members_matches_each_member(name, shape):
    members, params, buffers, base = _members(name, shape)
    x = torch.randn(4, *shape)

    def call(p, b, xx):
        return functional_call(base, (p, b), (xx,))

    shared = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
    own = vmap(call, in_dims=(0, 0, 0))(params, buffers, torch.stack([x, 2 * x, -x]))
    for k, member in enumerate(members):
        torch.testing.assert_close(shared[k], member(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(own[k], member([x, 2 * x, -x][k]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_vmap_of_grad_matches_per_member_backward(name, shape):
    members, params, buffers, base = _members(name, shape)
    x, y = torch.randn(4, *shape), torch.randn(4, 2)

    def loss(p, b):
        return ((functional_call(base, (p, b), (x,)) - y) ** 2).mean()

    grads = vmap(grad(loss))(params, buffers)
    for k, member in enumerate(members):
        member.zero_grad()
        ((member(x) - y) ** 2).mean().backward()
        for pname, p in member.named_parameters():
            torch.testing.assert_close(grads[pname][k], p.grad, rtol=1e-4, atol=1e-6)


def test_vmap_with_dropout_in_train_mode_draws_per_member():
    members, params, buffers, base = _members("mlp", (6,))
    base.train()
    x = torch.randn(8, 6)

    def call(p, b):
        return functional_call(base, (p, b), (x,))

    out = vmap(call, randomness="different")(params, buffers)
    assert out.shape == (3, 8, 2)
