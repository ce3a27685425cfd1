"""Captum attribution over every member of an ensemble (or a single module)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn

from trustml.registry import Registry

__all__ = ["Attribution", "CheckResult", "attribute", "completeness_check", "METHODS"]

METHODS: Registry[Callable[..., tuple[torch.Tensor, torch.Tensor | None]]] = Registry(
    "attribution method"
)


@METHODS.register("integrated_gradients")
def _integrated_gradients(
    module: nn.Module, x: torch.Tensor, target: Any, baselines: torch.Tensor, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    ig = IntegratedGradients(module)
    attr, delta = ig.attribute(
        x, baselines=baselines, target=target, return_convergence_delta=True, **kwargs
    )
    return attr, delta


@dataclass(frozen=True)
class Attribution:
    """Attributions of K members (K = 1 for a plain module).

    Attributes
    ----------
    members : ndarray of shape (K, N, *input_shape)
    outputs : ndarray of shape (K, N)
        The attributed output ``F(x)`` of each member.
    baseline_outputs : ndarray of shape (K, N)
        ``F(baseline)``.
    convergence_delta : ndarray of shape (K, N) or None
        Captum's completeness gap ``sum(attr) - (F(x) - F(baseline))`` where the method has one.
    method : str
    """

    members: np.ndarray
    outputs: np.ndarray
    baseline_outputs: np.ndarray
    convergence_delta: np.ndarray | None
    method: str

    @property
    def mean(self) -> np.ndarray:
        """Member-mean attribution, shape ``(N, *input_shape)``."""
        return self.members.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Spread over members (explanation uncertainty), shape ``(N, *input_shape)``."""
        return self.members.std(axis=0)

    @property
    def sign_agreement(self) -> np.ndarray:
        """Share of members whose sign agrees with the mean's, shape ``(N, *input_shape)``."""
        return (np.sign(self.members) == np.sign(self.mean)[None]).mean(axis=0)


@dataclass(frozen=True)
class CheckResult:
    """A sanity or faithfulness check: its number, the threshold and whether it passed."""

    name: str
    value: float
    threshold: float
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
            "detail": self.detail,
        }


def _member_modules(model: Any) -> list[nn.Module]:
    if isinstance(model, nn.Module):
        return [model]
    if hasattr(model, "explain_modules"):
        return list(model.explain_modules())
    raise TypeError(
        f"Expected an nn.Module or a fitted trustml ensemble, got {type(model).__name__}"
    )


def attribute(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    *,
    method: str = "integrated_gradients",
    target: int | np.ndarray | torch.Tensor | None = 0,
    baselines: np.ndarray | torch.Tensor | float | None = None,
    **method_kwargs: Any,
) -> Attribution:
    """Attribute the output ``target`` of every member to the inputs.

    Parameters
    ----------
    model : nn.Module or DeepEnsemble
        A fitted ensemble is explained member by member (its members map inputs to predicted
        means in data units, or logits).
    inputs : array of shape (N, *input_shape)
    method : str
        A name from :data:`METHODS` (``"integrated_gradients"``).
    target : int, array of shape (N,), or None
        The output index explained (a target dimension for regression, a class for
        classification), the same for all examples or one per example.
    baselines : array, float or None
        Reference input; zeros by default.
    **method_kwargs
        Passed to the Captum method (e.g. ``n_steps=50``, ``internal_batch_size=64``).

    Returns
    -------
    Attribution
        ``members`` of shape ``(K, N, *input_shape)``.

    Examples
    --------
    >>> lin = nn.Linear(4, 1)
    >>> a = attribute(lin, np.ones((2, 4), dtype="float32"), target=0)
    >>> bool(np.allclose(a.members.sum(axis=-1), a.outputs - a.baseline_outputs, atol=1e-4))
    True
    """
    fn = METHODS.get(method)
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    if target is not None and not isinstance(target, int | np.integer):
        target = torch.as_tensor(np.asarray(target), dtype=torch.long).reshape(-1)
        if len(target) != len(x):
            raise ValueError(f"Expected one target per example ({len(x)}), got {len(target)}")
    elif target is not None:
        target = int(target)
    if baselines is None:
        base = torch.zeros_like(x)
    elif isinstance(baselines, int | float):
        base = torch.full_like(x, float(baselines))
    else:
        base = torch.as_tensor(np.asarray(baselines), dtype=torch.float32).expand_as(x)
    maps, outs, base_outs, deltas = [], [], [], []
    for module in _member_modules(model):
        module.eval()
        device = next(module.parameters()).device
        xd, bd = x.to(device), base.to(device)
        attr, delta = fn(module, xd, target, bd, **method_kwargs)
        with torch.no_grad():
            outs.append(_select(module(xd), target))
            base_outs.append(_select(module(bd), target))
        maps.append(attr.detach().cpu().double().numpy())
        deltas.append(None if delta is None else delta.detach().cpu().double().numpy())
    return Attribution(
        members=np.stack(maps),
        outputs=np.stack(outs),
        baseline_outputs=np.stack(base_outs),
        convergence_delta=None if any(d is None for d in deltas) else np.stack(deltas),
        method=method,
    )


def _select(out: torch.Tensor, target: int | torch.Tensor | None) -> np.ndarray:
    out = out.detach().cpu().double().reshape(len(out), -1)
    if target is None:
        return out[:, 0].numpy()
    if isinstance(target, torch.Tensor):  # one target index per example
        return out.gather(1, target.cpu().long().reshape(-1, 1))[:, 0].numpy()
    return out[:, target].numpy()


def completeness_check(attribution: Attribution, *, threshold: float = 0.05) -> CheckResult:
    """Integrated-gradients completeness (Sundararajan et al. 2017).

    The attributions of an example should sum to ``F(x) - F(baseline)``. The value is the median
    over members and examples of ``|sum(attr) - (F(x) - F(b))| / |F(x) - F(b)|``; the check
    passes at ``<= threshold`` (5 %, the IG paper's guidance).
    """
    sums = attribution.members.reshape(*attribution.members.shape[:2], -1).sum(axis=-1)
    gap = attribution.outputs - attribution.baseline_outputs
    rel = np.abs(sums - gap) / np.maximum(np.abs(gap), 1e-12)
    value = float(np.median(rel))
    return CheckResult(
        name="completeness",
        value=value,
        threshold=threshold,
        passed=bool(value <= threshold),
        detail=(
            f"median relative IG completeness gap over {rel.size} member-example pairs "
            f"(max {float(rel.max()):.3g})"
        ),
    )
