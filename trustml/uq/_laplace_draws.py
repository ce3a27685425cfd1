"""Posterior draws of a fitted laplace-torch approximation as functions of the input.

Draw ``s`` is one function: ``pred="nn"`` runs the network with sampled weights
``theta_s``; ``pred="glm"`` runs the network linearised at the MAP, ``f(x; theta_MAP) +
J(x) (theta_s - theta_MAP)`` (a forward-mode Jacobian-vector product, the function whose
distribution over ``s`` is laplace-torch's GLM predictive ``N(f_MAP, J P^-1 J^T)``). With
last-layer Laplace the network is linear in the sampled weights, so both are the same
function, computed from the features of one forward pass.

Weights are drawn in mirrored pairs, ``theta_MAP + delta_k`` (draw ``2k``) and
``theta_MAP - delta_k`` (draw ``2k + 1``), with ``delta_k`` from laplace-torch's
``sample``: the draws' mean weight is the MAP exactly, and so is the GLM predictive's mean.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn
from torch.func import functional_call, jvp
from torch.nn import functional as F

__all__ = ["DrawModule", "Draws", "draw_deltas"]


def draw_deltas(la: Any, draws: int, seed: int) -> torch.Tensor:
    """``ceil(draws / 2)`` weight offsets ``theta - theta_MAP`` ``(K, P)`` from laplace-torch's
    ``sample`` with a generator seeded by ``seed`` (the global one is left alone)."""
    device = la.mean.device
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        theta = la.sample(math.ceil(draws / 2), generator=gen)
        return (theta - la.mean.reshape(1, -1)).detach()


def _split(vector: torch.Tensor, params: list[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A flat vector (``parameters_to_vector`` order) as tensors shaped like ``params``."""
    out, start = {}, 0
    for name, p in params:
        out[name] = vector[start : start + p.numel()].view_as(p)
        start += p.numel()
    return out


def _jvp(
    net: nn.Module,
    x: torch.Tensor,
    primal: dict[str, torch.Tensor],
    tangent: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(x; primal)`` and its derivative along ``tangent`` (the weights' direction)."""
    out = jvp(lambda p: functional_call(net, p, (x,)), (primal,), (tangent,))
    return cast(torch.Tensor, out[0]), cast(torch.Tensor, out[1])


class Draws:
    """Raw outputs of the draws of one fitted approximation.

    Parameters
    ----------
    net : nn.Module
        The MAP network (its parameters are never changed).
    names : list of str
        The parameters laplace-torch samples, in its order (a last layer's, or all).
    deltas : tensor of shape (K, P)
        From :func:`draw_deltas`.
    pred : {"glm", "nn"}
    last_layer : str or None
        Name of the last ``nn.Linear`` (last-layer Laplace).
    """

    def __init__(
        self,
        net: nn.Module,
        names: list[str],
        deltas: torch.Tensor,
        pred: str,
        last_layer: str | None,
    ) -> None:
        self.net, self.pred, self.last_layer = net.eval(), pred, last_layer
        named = dict(net.named_parameters())
        self.params = [(n, named[n].detach()) for n in names]
        self.deltas = deltas

    def delta(self, k: int) -> dict[str, torch.Tensor]:
        return _split(self.deltas[k], self.params)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.net.get_submodule(self.last_layer)  # type: ignore[arg-type]
        seen: list[torch.Tensor] = []
        hook = layer.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
        try:
            self.net(x)
        finally:
            hook.remove()
        return seen[-1]

    def outputs(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """Raw outputs of draws ``0..count-1`` at ``x``, shape ``(count, N, O)``."""
        pairs = math.ceil(count / 2)
        outs: list[torch.Tensor] = []
        if self.last_layer is not None:
            phi = self._features(x)
            base = dict(self.params)
            for k in range(pairs):
                d = self.delta(k)
                for sign in (1.0, -1.0):
                    w = base[f"{self.last_layer}.weight"] + sign * d[f"{self.last_layer}.weight"]
                    b_name = f"{self.last_layer}.bias"
                    b = base[b_name] + sign * d[b_name] if b_name in base else None
                    outs.append(F.linear(phi, w, b))
        elif self.pred == "glm":
            primal = dict(self.params)
            for k in range(pairs):
                f0, jd = _jvp(self.net, x, primal, self.delta(k))
                outs += [f0 + jd, f0 - jd]
        else:
            for k in range(pairs):
                d = self.delta(k)
                for sign in (1.0, -1.0):
                    weights = {n: p + sign * d[n] for n, p in self.params}
                    outs.append(functional_call(self.net, weights, (x,)))
        return torch.stack(outs[:count])


class DrawModule(nn.Module):
    """Draw ``s`` of :class:`Draws` as a differentiable module (for attribution).

    Regression outputs ``(N, 2 * D)``: the draw's means, then ``log(sigma_noise)`` for every
    sample and target (the homoscedastic noise; :class:`~trustml.uq._heads.StdHead` with
    ``heteroscedastic=False`` maps it to the std). Classification: the draw's logits.
    """

    def __init__(self, draws: Draws, s: int, log_sigma: float | None) -> None:
        super().__init__()
        self.net = draws.net
        self._draws, self.s, self.log_sigma = draws, s, log_sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self._draws
        k, sign = divmod(self.s, 2)
        delta = d.delta(k)
        if sign:
            delta = {n: -t for n, t in delta.items()}
        params = dict(d.params)
        if d.last_layer is None and d.pred == "glm":
            f0, jd = _jvp(self.net, x, params, delta)
            out = f0 + jd
        else:
            out = functional_call(self.net, {n: params[n] + delta[n] for n in delta}, (x,))
        if self.log_sigma is None:
            return out
        return torch.cat([out, torch.full_like(out, self.log_sigma)], dim=1)
