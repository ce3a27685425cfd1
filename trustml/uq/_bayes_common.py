"""What the Bayesian wrappers share with each other and with ``DeepEnsemble``: data access,
target standardisation, the output convention and the modules handed to attribution."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.exceptions import NotFittedError
from trustml.uq._ensemble_data import Source
from trustml.uq._heads import HeadSpec, MeanHead
from trustml.uq.predictive import Predictive
from trustml.utils.validation import check_in, check_positive_int

__all__ = [
    "Prepared",
    "StdHead",
    "check_device",
    "check_fitted",
    "check_train_settings",
    "explain_head",
    "first_inputs",
    "input_batches",
    "minibatches",
    "prepare",
    "reinitialize",
    "seed_int",
    "seeded_rng",
    "to_predictive",
]


@dataclass
class Prepared:
    """Training data of a fit: the source, the target scaling ``(D,)`` (regression; None for
    classification) and the output width ``d`` (``D`` targets or ``C`` classes)."""

    source: Source
    shift: np.ndarray | None
    scale: np.ndarray | None
    d: int


def reinitialize(module: nn.Module, seed: int) -> nn.Module:
    """A deep copy of ``module`` with every ``reset_parameters`` re-run under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = copy.deepcopy(module)
        for sub in model.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
    return model


def seed_int(ss: np.random.SeedSequence) -> int:
    """A 32-bit integer seed drawn from ``ss``."""
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def check_device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Expected device to name a torch device, got {device!r}") from exc


def check_fitted(obj: Any, attr: str = "n_outputs_") -> None:
    if not hasattr(obj, attr):
        raise NotFittedError(
            f"This {type(obj).__name__} instance is not fitted yet. Call 'fit' before using it."
        )


def check_train_settings(epochs: int, batch_size: int, lr: float) -> None:
    check_positive_int(epochs, name="epochs")
    check_positive_int(batch_size, name="batch_size")
    if not float(lr) > 0:
        raise ValueError(f"Expected lr > 0, got {lr!r}")


def prepare(x: Any, y: Any, task: str, model: nn.Module, device: torch.device) -> Prepared:
    """Wrap the data, standardise regression targets and check the model's output width.

    Regression targets are standardised with the training mean and std (like
    ``DeepEnsemble``); the model must output ``2 * D`` numbers (D means, then D raw scales).
    """
    source = Source(x, y)
    source.task = task
    if source.n == 0:
        raise ValueError("Expected at least one training sample, got 0")
    shift = scale = None
    d = 0
    if task == "regression":
        mean, std = source.target_moments(None)
        shift, scale = mean, np.where(std > 0, std, 1.0)
        source.shift, source.scale = shift, scale
        d = len(shift)
    probe = source.probe(device)
    with torch.no_grad():
        out = model.to(device).eval()(probe)
    if out.dim() != 2 or out.shape[0] != len(probe):
        raise ValueError(
            f"The model must map inputs of shape {tuple(probe.shape)} to (N, outputs), "
            f"got {tuple(out.shape)}"
        )
    if task == "classification":
        d = int(out.shape[1])
        source.check_labels(d)
    else:
        HeadSpec(task, d, True).check_output(int(out.shape[1]))
    return Prepared(source, shift, scale, d)


def first_inputs(source: Source, k: int, device: torch.device) -> torch.Tensor:
    """The first ``k`` inputs (fewer when there are fewer), float32 on ``device``."""
    if source.kind == "loader":
        return next(source.input_batches(k, device))[:k]
    return source.tensors(source.read(np.arange(min(k, source.n)))[0], None, device)[0]


def minibatches(
    source: Source, rng: np.random.Generator, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of ``(x, y, idx)`` minibatches in an order drawn from ``rng``; ``idx`` holds
    the samples' indices (sorted within a batch: datasets read faster)."""
    if source.kind == "loader":
        for batch in source.loader:  # type: ignore[union-attr]
            xb, yb = source.tensors(batch[0], batch[1], device)
            yield xb, yb, torch.arange(len(xb), device=device)  # type: ignore[misc]
        return
    order = rng.permutation(source.n)
    for start in range(0, source.n, batch_size):
        idx = np.sort(order[start : start + batch_size])
        xb, yb = source.tensors(*source.read(idx), device)
        yield xb, yb, torch.as_tensor(idx, device=device)  # type: ignore[misc]


def to_predictive(task: str, d: int, out: torch.Tensor, shift: Any, scale: Any) -> Predictive:
    """Raw outputs of S draws ``(S, N, O)`` as a ``Predictive`` in data units."""
    if task == "classification":
        return Predictive.classification(member_logits=out.double().cpu().numpy())
    return Predictive.regression(*HeadSpec(task, d, True).to_data_units(out, shift, scale))


@contextmanager
def seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """The global torch generator seeded with ``seed`` for the duration, then restored as it
    was (``torch.random.fork_rng``): fitting never shifts the user's random numbers."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class StdHead(nn.Module):
    """Maps a Gaussian model's output ``(N, 2 * D)`` to its predicted std in data units."""

    def __init__(self, model: nn.Module, shift: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.scale.shape[0]
        mean, std = HeadSpec("regression", d, True).split(self.model(x))
        return std * self.scale


def explain_head(model: nn.Module, task: str, shift: Any, scale: Any, output: str) -> nn.Module:
    """``model`` mapping inputs to the predicted mean (data units) or logits, or to the
    predicted (aleatoric) std with ``output="std"``; in eval mode."""
    check_in(output, ("mean", "std"), name="output")
    if task == "classification":
        if output == "std":
            raise ValueError("output='std' is defined for regression models only")
        return model.eval()
    head = MeanHead if output == "mean" else StdHead
    return head(model, shift, scale).eval()


def input_batches(x: Any, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Prediction inputs in order, ``batch_size`` at a time (targets ignored)."""
    check_positive_int(batch_size, name="batch_size")
    yield from Source(x).input_batches(batch_size, device)
