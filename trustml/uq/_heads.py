"""Members and their output convention: construction, output heads (Gaussian, hetero- or
homoscedastic, or categorical), the modules handed to attribution and the ``Predictive`` they
make."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trustml.models import GroupedCall, Lanes
from trustml.uq._rng import reinitialize
from trustml.uq.predictive import Predictive

__all__ = [
    "EPS",
    "EXPLAIN_OUTPUTS",
    "HeadSpec",
    "Homoscedastic",
    "MeanHead",
    "StdHead",
    "build_member",
    "explain_head",
    "member_outputs",
    "to_predictive",
]

EPS = 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def build_member(make_model: Callable[[], nn.Module] | nn.Module, seed: int) -> nn.Module:
    """A fresh member initialised under ``torch.manual_seed(seed)`` (global RNG left as it was).

    ``make_model`` is a zero-argument callable, or a module that is deep-copied and re-initialised.
    """
    if isinstance(make_model, nn.Module):
        return reinitialize(make_model, seed)
    if not callable(make_model):
        raise TypeError("make_model must be a callable returning an nn.Module, or an nn.Module")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_model() must return an nn.Module, got {type(model).__name__}")
    return model


class Homoscedastic(nn.Module):
    """A model with ``D`` outputs plus one learned log-std per output dimension.

    ``forward`` returns ``(N, 2 * D)``: the model's means, then the log-stds repeated for every
    sample, so hetero- and homoscedastic members share one output layout.
    """

    def __init__(self, model: nn.Module, d: int) -> None:
        super().__init__()
        self.model = model
        self.log_std = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.model(x)
        return torch.cat([mean, self.log_std.expand(mean.shape[0], -1)], dim=1)

    def trustml_grouped_forward(self, g: GroupedCall, x: Lanes) -> Lanes:
        """:meth:`forward` for L stacked members (see :mod:`trustml.models.grouped`)."""
        mean = g.dense(g.run("model", x))  # (L, b, D)
        log_std = g.param("log_std")[:, None, :].expand(-1, mean.shape[1], -1)
        return Lanes(torch.cat([mean, log_std], dim=-1))


class MeanHead(nn.Module):
    """Maps a Gaussian member's output ``(N, 2 * D)`` to its mean in data units ``(N, D)``."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, model: nn.Module, shift: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.shift.shape[0]
        return self.model(x)[:, :d] * self.scale + self.shift


class HeadSpec:
    """How member outputs are scored and turned into predictions.

    Parameters
    ----------
    task : {"regression", "classification"}
    d : int
        Regression: number of targets ``D``. Classification: number of classes ``C``.
    heteroscedastic : bool
        Regression: raw scales map to ``softplus(raw) + 1e-6`` (else they are log-stds).
    """

    def __init__(self, task: str, d: int, heteroscedastic: bool) -> None:
        self.task, self.d, self.heteroscedastic = task, d, heteroscedastic

    def check_output(self, out_dim: int) -> None:
        """Raise ``ValueError`` unless a member's raw output has the right width."""
        if self.task == "classification":
            return
        if self.heteroscedastic and out_dim != 2 * self.d:
            raise ValueError(
                f"A regression member must output 2*D = {2 * self.d} numbers per sample "
                f"(D means, then D raw scales), got {out_dim}"
            )
        if not self.heteroscedastic and out_dim != self.d:
            raise ValueError(
                f"A homoscedastic regression member must output D = {self.d} means per "
                f"sample, got {out_dim}"
            )

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and stds ``(..., D)`` from outputs ``(..., 2 * D)`` (standardized units)."""
        mean, raw = out[..., : self.d], out[..., self.d :]
        std = F.softplus(raw) + EPS if self.heteroscedastic else torch.exp(raw)
        return mean, std

    def loss_sums(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-lane loss summed over samples (each sample: mean NLL over its dims).

        Parameters
        ----------
        out : tensor of shape (L, b, O)
        y : tensor of shape (L, b, D) float or (L, b) int64

        Returns
        -------
        tensor of shape (L,)
        """
        if self.task == "classification":
            lanes, b = out.shape[:2]
            nll = F.cross_entropy(out.reshape(lanes * b, -1), y.reshape(-1), reduction="none")
            return nll.view(lanes, b).sum(1)
        mean, std = self.split(out)
        nll = torch.log(std) + 0.5 * ((y - mean) / std) ** 2 + _HALF_LOG_2PI
        return nll.mean(-1).sum(1)

    def to_data_units(
        self, out: torch.Tensor, shift: np.ndarray | None, scale: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Member means and stds in data units, or member probabilities (float64 numpy)."""
        if self.task == "classification":
            return torch.softmax(out, dim=-1).double().cpu().numpy(), None
        mean, std = self.split(out)
        sh = torch.as_tensor(shift, device=out.device)
        sc = torch.as_tensor(scale, device=out.device)
        return (mean.double() * sc + sh).cpu().numpy(), (std.double() * sc).cpu().numpy()


def member_outputs(model: nn.Module, probe: torch.Tensor, head: HeadSpec) -> int:
    """Check a member's output on ``probe`` inputs; return ``D`` (regression) or ``C``."""
    with torch.no_grad():
        out = model.eval()(probe)
        if out.dim() != 2 or out.shape[0] != len(probe):
            raise ValueError(
                f"A member must map inputs of shape {tuple(probe.shape)} to (N, outputs), "
                f"got {tuple(out.shape)}"
            )
        if head.task == "classification":
            return int(out.shape[1])
        raw = model.model(probe) if isinstance(model, Homoscedastic) else out
    head.check_output(int(raw.shape[1]))
    return head.d


#: What an uncertainty wrapper's ``explain_modules(output=...)`` can map inputs to.
EXPLAIN_OUTPUTS = ("mean", "std")


class StdHead(nn.Module):
    """Maps a Gaussian model's output ``(N, 2 * D)`` to its predicted std in data units
    ``(N, D)`` (``softplus(raw) + 1e-6``, or ``exp(log_std)`` when not heteroscedastic)."""

    scale: torch.Tensor

    def __init__(
        self, model: nn.Module, shift: np.ndarray, scale: np.ndarray, heteroscedastic: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.heteroscedastic = heteroscedastic
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.scale.shape[0]
        _, std = HeadSpec("regression", d, self.heteroscedastic).split(self.model(x))
        return std * self.scale


def explain_head(
    model: nn.Module,
    task: str,
    shift: np.ndarray | None,
    scale: np.ndarray | None,
    output: str,
    *,
    heteroscedastic: bool = True,
) -> nn.Module:
    """``model`` as a module for attribution, in eval mode.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, *input_shape)`` to raw outputs ``(N, 2 * D)`` (regression) or ``(N, C)``.
    task : {"regression", "classification"}
    shift, scale : ndarray of shape (D,) or None
        Target standardisation (regression).
    output : {"mean", "std"}
        The predicted mean in data units ``(N, D)`` (logits ``(N, C)`` for classification),
        or the predicted aleatoric std in data units ``(N, D)`` (regression only).
    heteroscedastic : bool, default True
        How raw scales map to stds (see :class:`HeadSpec`).

    Returns
    -------
    nn.Module
    """
    if output not in EXPLAIN_OUTPUTS:
        raise ValueError(
            f"The 'output' parameter must be one of {{'mean', 'std'}}. Got {output!r} instead."
        )
    if task == "classification":
        if output == "std":
            raise ValueError("output='std' is defined for regression models only")
        return model.eval()
    if output == "mean":
        return MeanHead(model, shift, scale).eval()  # type: ignore[arg-type]
    return StdHead(model, shift, scale, heteroscedastic).eval()  # type: ignore[arg-type]


def to_predictive(
    task: str, d: int, out: torch.Tensor, shift: np.ndarray | None, scale: np.ndarray | None
) -> Predictive:
    """Raw outputs of S members or draws as a ``Predictive`` in data units.

    Parameters
    ----------
    task : {"regression", "classification"}
    d : int
        Targets ``D`` (regression) or classes ``C``.
    out : tensor of shape (S, N, 2 * D) or (S, N, C)
        Heteroscedastic raw outputs (regression) or logits.
    shift, scale : ndarray of shape (D,) or None

    Returns
    -------
    Predictive
        Member means and stds ``(S, N, D)``, or member logits and probabilities ``(S, N, C)``.
    """
    if task == "classification":
        return Predictive.classification(member_logits=out.double().cpu().numpy())
    return Predictive.regression(*HeadSpec(task, d, True).to_data_units(out, shift, scale))
