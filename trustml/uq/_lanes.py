"""Per-lane optimiser settings: members stacked as lanes, each with its own Adam lr and decay.

A hyper-parameter search trains trials that share an architecture and differ only in their
learning rate and weight decay as lanes of one stacked engine. Adam is element-wise, so one
update over the stacked parameters ``(L, ...)`` is the per-lane update as long as the lane's
``lr`` and ``weight_decay`` broadcast along the lane axis; :class:`LaneAdam` is
``torch.optim.Adam``'s single-tensor formula (``amsgrad=False``) with those two numbers as
tensors of shape ``(L, 1, ..., 1)``. It agrees with training each member alone with
``torch.optim.Adam`` to float rounding (tested); lane ``k``'s arithmetic reads only lane ``k``,
so its numbers do not depend on the other lanes.

``DeepEnsemble``'s own training (one ``lr`` and ``weight_decay`` for every member) keeps
``torch.optim.Adam``: its numbers are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch

from trustml.uq._train_settings import check_fit_options

__all__ = ["LaneAdam", "LaneValue", "Lanes", "member_optimizer", "split_lanes", "stacked_optimizer"]

#: ``(lr per member, weight_decay per member)``, in the order of the members trained.
Lanes = tuple[list[float], list[float]]


def _per_member(name: str, value: Any, n: int, owner: str) -> list[float]:
    if isinstance(value, Real) and not isinstance(value, bool):
        values = [value] * n
    elif isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes):
        values = list(np.asarray(value, dtype=object).ravel())
        if len(values) != n:
            raise ValueError(
                f"{owner}: expected {name} to be a number or one per member ({n}), "
                f"got {len(values)} values"
            )
    else:
        raise TypeError(
            f"{owner}: expected {name} to be a number or a sequence of numbers, "
            f"got {type(value).__name__}"
        )
    for v in values:
        check_fit_options(owner, {name: v})
    return [float(v) for v in values]


def split_lanes(
    owner: str, n_members: int, lr: Any, weight_decay: Any
) -> tuple[Any, Any, Lanes | None]:
    """Scalar settings for the shared checks, and the per-member ones when any is a sequence.

    Parameters
    ----------
    owner : str
        ``"DeepEnsemble.fit"``, for the messages.
    n_members : int
        Members being trained.
    lr, weight_decay : float or sequence of float
        One value for every member, or one per member.

    Returns
    -------
    (lr, weight_decay, lanes)
        With two scalars: them and ``None`` (the plain ``torch.optim.Adam`` path). Otherwise
        the first member's values (for the shared checks) and the per-member lists.
    """
    if isinstance(lr, Real) and isinstance(weight_decay, Real):
        return lr, weight_decay, None
    lrs = _per_member("lr", lr, n_members, owner)
    wds = _per_member("weight_decay", weight_decay, n_members, owner)
    return lrs[0], wds[0], (lrs, wds)


class LaneAdam:
    """Adam over parameters stacked along a leading lane axis, one ``lr`` and decay per lane.

    Parameters
    ----------
    params : list of Tensor
        Leaf tensors of shape ``(L, ...)``; lane ``k`` is ``p[k]``.
    lr, weight_decay : sequence of float, length L
        Lane ``k``'s learning rate and L2 penalty (added to the gradient, as ``torch.optim.Adam``
        does; not decoupled).
    betas, eps
        As ``torch.optim.Adam``'s defaults.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: Sequence[float],
        weight_decay: Sequence[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        self.lr = torch.tensor([float(v) for v in lr], dtype=torch.float64)
        self.weight_decay = [float(v) for v in weight_decay]
        self.betas, self.eps = betas, eps
        self.step_count = 0
        self.state: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(params)
        self._decay = [self._lane_tensor(p, self.weight_decay) for p in params]
        self._any_decay = any(w != 0.0 for w in self.weight_decay)

    @staticmethod
    def _lane_tensor(p: torch.Tensor, values: Sequence[float] | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(values, dtype=torch.float64).to(dtype=p.dtype, device=p.device)
        if t.shape[0] != p.shape[0]:
            raise ValueError(f"Expected {p.shape[0]} lane values, got {t.shape[0]}")
        return t.reshape(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every lane (lanes without gradients are left alone)."""
        self.step_count += 1
        beta1, beta2 = self.betas
        bias1 = 1.0 - beta1**self.step_count
        bias2_sqrt = (1.0 - beta2**self.step_count) ** 0.5
        step_size = self.lr / bias1  # float64, like torch's Python-float step size
        for i, p in enumerate(self.params):
            grad = p.grad
            if grad is None:
                continue
            if self.state[i] is None:
                self.state[i] = (
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                )
            exp_avg, exp_avg_sq = self.state[i]  # type: ignore[misc]
            if self._any_decay:
                grad = grad.addcmul(p, self._decay[i])
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
            neg_step = self._lane_tensor(p, -step_size)
            p.add_(exp_avg.mul(neg_step).div_(denom))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()


#: What an engine's ``start`` takes: one value for every member, or one per member.
LaneValue = float | Sequence[float]


def stacked_optimizer(
    params: list[torch.Tensor], lr: LaneValue, weight_decay: LaneValue
) -> torch.optim.Adam | LaneAdam:
    """The optimiser of a stacked engine (``L`` lanes, the last ones padding).

    Two scalars: ``torch.optim.Adam`` (``DeepEnsemble``'s numbers). Per-member lists: a
    :class:`LaneAdam` whose padding lanes repeat member 0's settings, as the padding lanes
    repeat member 0's weights.
    """
    if not isinstance(lr, Sequence) and not isinstance(weight_decay, Sequence):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    lanes = params[0].shape[0]
    lrs, wds = list(lr), list(weight_decay)  # type: ignore[arg-type]
    pad = lanes - len(lrs)
    return LaneAdam(params, lrs + lrs[:1] * pad, wds + wds[:1] * pad)


def member_optimizer(
    params: Any, lr: LaneValue, weight_decay: LaneValue, k: int
) -> torch.optim.Adam:
    """``torch.optim.Adam`` of member ``k`` trained on its own (the loop engine)."""
    lr_k = lr[k] if isinstance(lr, Sequence) else lr
    wd_k = weight_decay[k] if isinstance(weight_decay, Sequence) else weight_decay
    return torch.optim.Adam(params, lr=lr_k, weight_decay=wd_k)
