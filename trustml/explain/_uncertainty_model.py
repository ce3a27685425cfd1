"""The uncertainty of a model as one differentiable module of its inputs.

The members (or posterior samples) of a model are gathered with :class:`Members`, the machinery
prediction attribution uses: a wrapper's ``explain_modules()`` (``output="mean"`` and, for
regression, ``output="std"``), or plain modules. :class:`UncertaintyFunction` evaluates all K
of them on a batch (stacked into one vectorized pass where they allow it) and maps their
outputs to one uncertainty quantity per example, so Captum can attribute it like any output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trustml.explain._members import Members, StackedMembers, _Explained, member_index
from trustml.explain._uncertainty_names import UNCERTAINTY_QUANTITIES
from trustml.explain._uncertainty_quantities import (
    classification_quantities,
    regression_quantities,
)

__all__ = ["UncertaintyFunction", "UncertaintySource", "check_quantity", "uncertainty_source"]

TASKS = ("regression", "classification")


def check_quantity(quantity: Any) -> str:
    """``quantity`` if it names an uncertainty quantity, else a ``ValueError`` listing them."""
    if not isinstance(quantity, str) or quantity not in UNCERTAINTY_QUANTITIES:
        raise ValueError(
            "The 'quantity' parameter of attribute_uncertainty must be one of "
            f"{{'total', 'aleatoric', 'epistemic'}}. Got {quantity!r} instead."
        )
    return quantity


class _MeanAndVariance(nn.Module):
    """One regression member: its mean module and its std module, as ``(B, 2 * D)``: the D
    means, then the D predicted variances (both in data units)."""

    def __init__(self, mean: nn.Module, std: nn.Module) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mean(x), self.std(x).square()], dim=1)


@dataclass(frozen=True)
class UncertaintySource:
    """The members of a model, as the uncertainty function reads them.

    Attributes
    ----------
    members : Members
        Each module maps ``(B, *input_shape)`` to logits ``(B, C)`` (classification), to means
        and variances ``(B, 2 * D)`` (regression with ``noise``) or to means ``(B, D)``.
    task : {"regression", "classification"}
    noise : bool
        Regression: whether the members predict their noise variance (aleatoric part).
    """

    members: Members
    task: str
    noise: bool

    def quantities(self) -> tuple[str, ...]:
        """The quantities this model has."""
        if self.task == "regression" and not self.noise:
            return ("epistemic",)
        return UNCERTAINTY_QUANTITIES


def uncertainty_source(model: Any, task: str | None, samples: int | None) -> UncertaintySource:
    """The members of ``model`` (a wrapper with ``explain_modules()``, a module or a list).

    Parameters
    ----------
    model : uncertainty wrapper, nn.Module or list of nn.Module
    task : {"regression", "classification"} or None
        None: the wrapper's ``task``; plain modules need it.
    samples : int or None
        Passed to the wrapper's ``explain_modules(samples=...)``.
    """
    own_task = getattr(model, "task", None) if hasattr(model, "explain_modules") else None
    if task is None:
        task = own_task
        if task is None:
            raise ValueError(
                "attribute_uncertainty needs task='regression' or task='classification' for a "
                "model without a task (plain modules); trustml's wrappers know their own"
            )
    if task not in TASKS:
        raise ValueError(
            "The 'task' parameter of attribute_uncertainty must be one of "
            f"{{'regression', 'classification'}}. Got {task!r} instead."
        )
    if own_task is not None and own_task != task:
        raise ValueError(f"task={task!r} contradicts the model's own task {own_task!r}")
    if not hasattr(model, "explain_modules"):
        if samples is not None:
            raise ValueError("samples applies to uncertainty wrappers, not to plain modules")
        return UncertaintySource(Members(model), task, noise=False)
    extra = {} if samples is None else {"samples": samples}
    means = list(model.explain_modules(output="mean", **extra))
    if task == "classification":
        return UncertaintySource(Members(_Explained(means)), task, noise=False)
    try:
        stds = list(model.explain_modules(output="std", **extra))
    except (TypeError, ValueError):  # a wrapper without a noise model
        return UncertaintySource(Members(_Explained(means)), task, noise=False)
    if len(stds) != len(means):
        raise ValueError(
            f"{type(model).__name__}.explain_modules gave {len(means)} mean modules and "
            f"{len(stds)} std modules; they must be the same members"
        )
    pairs: list[nn.Module] = [_MeanAndVariance(m, s) for m, s in zip(means, stds, strict=True)]
    return UncertaintySource(Members(_Explained(pairs)), task, noise=True)


class UncertaintyFunction(nn.Module):
    """``x (B, *input_shape) -> (B, 1)``: one uncertainty quantity of all members at ``x``.

    The members' own train/eval modes are left alone (the caller runs inside
    ``Members.evaluating()``); the members are registered as submodules so that their device,
    parameters and recurrent layers are visible to attribution.

    Parameters
    ----------
    source : UncertaintySource
    quantity : {"total", "aleatoric", "epistemic"}
    target : int or None
        Regression: the output whose variance is explained; None sums over the D outputs.
    stacked : StackedMembers or None
        The members as one vectorized module, or None to run them one by one.
    """

    def __init__(
        self,
        source: UncertaintySource,
        quantity: str,
        target: int | None,
        stacked: StackedMembers | None,
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleList(source.members.modules)
        self._stacked = (stacked,)  # a tuple: not registered, no second copy of the weights
        self.task, self.noise = source.task, source.noise
        self.quantity, self.target = quantity, target

    @property
    def n_members(self) -> int:
        """K, the members or posterior samples."""
        return len(self.nets)

    def member_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's output ``(K, B, O)``."""
        k, b = len(self.nets), len(x)
        stacked = self._stacked[0]
        if stacked is not None:
            tiled = x.repeat(k, *[1] * (x.dim() - 1))
            return stacked(tiled, member_index(k, b, x.device)).reshape(k, b, -1)
        return torch.stack([m(x).reshape(b, -1) for m in self.nets])

    def quantities(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every quantity the model has, ``(B,)`` float64 each (regression: of ``target``,
        or summed over the outputs)."""
        out = self.member_outputs(x)
        if self.task == "classification":
            return classification_quantities(out)
        d = out.shape[-1] // 2 if self.noise else out.shape[-1]
        per_output = regression_quantities(out[..., :d], out[..., d:] if self.noise else None)
        if self.target is not None and not 0 <= self.target < d:
            raise ValueError(f"target {self.target} is out of range for {d} outputs")
        if self.target is None:
            return {k: v.sum(dim=-1) for k, v in per_output.items()}
        return {k: v[..., self.target] for k, v in per_output.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantities(x)[self.quantity].float()[:, None]

    @torch.no_grad()
    def values(self, x: torch.Tensor, rows: int) -> dict[str, torch.Tensor]:
        """:meth:`quantities` of ``x (N, *input_shape)`` in chunks of ``rows``, on the CPU."""
        parts = [self.quantities(x[s : s + rows]) for s in range(0, len(x), max(1, rows))]
        return {k: torch.cat([p[k] for p in parts]).cpu() for k in parts[0]}
