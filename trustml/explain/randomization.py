"""Cascading model-parameter randomization (Adebayo et al. 2018, "Sanity checks for saliency
maps"): an explanation that survives the destruction of the weights it claims to explain does
not explain the model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.explain._members import Members
from trustml.explain._result import CheckResult, compare
from trustml.explain._stats import spearman_rows_support
from trustml.explain.attribution import attribute
from trustml.utils.seeding import SeedLike, as_seed_sequence, member_seed_sequences

__all__ = ["randomization_test"]


def randomization_test(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    *,
    method: str | Callable[..., torch.Tensor] = "saliency",
    target: Any = 0,
    baselines: Any = None,
    max_stages: int | None = None,
    threshold: float = 0.5,
    seed: SeedLike = 0,
    **method_kwargs: Any,
) -> CheckResult:
    """Re-initialise the layers from the output down, one stage at a time, and measure how
    much of the explanation survives.

    At every stage the attributions of the randomized copy are compared with the original ones
    by the Spearman rank correlation of ``|attribution|`` over the features either map uses
    (features exactly zero in both, e.g. the empty pixels of a sparse input under an
    input-times-gradient method, carry no evidence of agreement), per member and example, then
    averaged. The check passes when the similarity after full randomization is below
    ``threshold``: the explanation depends on the learned weights. The model itself is never
    modified (its members are deep-copied).

    Parameters
    ----------
    model : nn.Module or uncertainty wrapper
        As for :func:`attribute`; every member is randomized with its own seed.
    inputs : array of shape (N, *input_shape)
    method : str or callable
        Any :func:`attribute` method, or an explainer ``f(module, inputs, target)``.
    target, baselines, **method_kwargs
        Passed to :func:`attribute`.
    max_stages : int, optional
        Group the parameterized layers into at most this many cascading stages (default:
        one stage per layer). The last stage always randomizes every layer.
    threshold : float, default 0.5
    seed : int or SeedSequence
        Layer ``l`` of member ``k`` is re-drawn from a child of ``seed``; layers with
        ``reset_parameters()`` get their own initialisation, others a Gaussian with the
        parameter's standard deviation.

    Returns
    -------
    CheckResult
        ``value``: mean ``|attribution|`` rank correlation after full randomization.
        ``extra``: ``stages`` (labels, ``"original"`` first, then the layers randomized
        cumulatively, top layer first), ``spearman_abs`` and ``spearman`` (signed maps) per
        stage, and ``spearman_abs_std`` over members and examples.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    >>> check = randomization_test(net, np.random.rand(4, 8).astype("float32"))
    >>> check.extra["stages"]
    ['original', '2', '0']
    """
    kwargs = {"method": method, "target": target, "baselines": baselines, **method_kwargs}
    members = Members(model)
    copies = [copy.deepcopy(m) for m in members.modules]
    subject = members.like(copies)
    x = inputs
    original = attribute(subject, x, seed=0, **kwargs).members
    stages = _stages([_layers(m) for m in copies], max_stages)
    labels = ["original"]
    curve_abs, curve_signed, spread = [1.0], [1.0], [0.0]
    seeds = member_seed_sequences(as_seed_sequence(seed), len(copies))
    for g, stage in enumerate(stages):
        for k, layers in enumerate(stage):
            for i, (_name, layer) in enumerate(layers):
                _randomize(layer, _child(seeds[k], g, i))
        randomized = attribute(subject, x, seed=0, **kwargs).members
        # Ranked over the features either map uses: shared exact zeros (sparse inputs under
        # input-times-gradient methods) would otherwise count as agreement.
        pairs = list(zip(original, randomized, strict=True))
        sim_abs = np.stack([spearman_rows_support(np.abs(o), np.abs(r)) for o, r in pairs])
        sim = np.stack([spearman_rows_support(o, r) for o, r in pairs])
        labels.append(", ".join(name for name, _ in stage[0]) if stage[0] else f"stage {g + 1}")
        curve_abs.append(float(sim_abs.mean()))
        curve_signed.append(float(sim.mean()))
        spread.append(float(sim_abs.std()))
    value = curve_abs[-1]
    return CheckResult(
        name="randomization",
        value=value,
        threshold=threshold,
        passed=compare(value, threshold, "<"),
        detail=(
            "Spearman rank correlation of |attribution| with the original (over the features "
            "either map uses) after cascading "
            f"randomization of all {len(stages)} stages"
        ),
        comparison="<",
        extra={
            "stages": labels,
            "spearman_abs": curve_abs,
            "spearman": curve_signed,
            "spearman_abs_std": spread,
        },
    )


def _layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters, output side first (reverse registration order)."""
    owned = [
        (name, m) for name, m in module.named_modules() if any(True for _ in m.parameters(False))
    ]
    return owned[::-1]


def _stages(
    per_member: list[list[tuple[str, nn.Module]]], max_stages: int | None
) -> list[list[list[tuple[str, nn.Module]]]]:
    """``stages[g][k]``: the layers of member ``k`` randomized at stage ``g``."""
    n_layers = min(len(layers) for layers in per_member)
    if n_layers == 0:
        raise ValueError("randomization_test: the model has no parameters to randomize")
    if max_stages is not None and max_stages < 1:
        raise ValueError(f"Expected max_stages >= 1, got {max_stages}")
    n_stages = n_layers if max_stages is None else min(max_stages, n_layers)
    bounds = np.linspace(0, n_layers, n_stages + 1).round().astype(int)
    stages = []
    for g in range(n_stages):
        lo, hi = bounds[g], bounds[g + 1]
        # A member with more layers than the shortest gets its surplus in the last stage.
        stages.append([layers[lo:hi] if g < n_stages - 1 else layers[lo:] for layers in per_member])
    return stages


def _child(ss: np.random.SeedSequence, stage: int, layer: int) -> int:
    child = np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, stage, layer))
    return int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@torch.no_grad()
def _randomize(layer: nn.Module, seed: int) -> None:
    params = list(layer.parameters(False))
    devices = [p.device for p in params if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for p in params:
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 1.0
            p.normal_(0.0, scale)
