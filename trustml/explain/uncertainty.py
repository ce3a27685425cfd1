"""Attribution of predictive uncertainty: where in the input the total, aleatoric or
epistemic uncertainty of an ensemble or posterior comes from, and its deletion check.

The explained function is the uncertainty itself, computed from the outputs of all members or
posterior samples at the same input (see :mod:`trustml.explain._uncertainty_quantities`), so any
attribution method of :data:`~trustml.explain.METHODS` that differentiates or perturbs a model
explains it: Integrated Gradients maps sum to ``U(x) - U(baseline)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trustml.explain._curves import order_curves
from trustml.explain._members import (
    Members,
    _Explained,
    as_input_tensor,
    per_example_baselines,
)
from trustml.explain._result import Attribution, CheckResult, compare
from trustml.explain._uncertainty_model import (
    UncertaintyFunction,
    UncertaintySource,
    check_quantity,
    uncertainty_source,
)
from trustml.explain.attribution import STRATEGIES, attribute
from trustml.explain.methods import METHODS
from trustml.utils.seeding import SeedLike

__all__ = [
    "UncertaintyAttribution",
    "attribute_uncertainty",
    "uncertainty_deletion_curve",
    "uncertainty_quantities",
]


@dataclass(frozen=True)
class UncertaintyAttribution(Attribution):
    """Attribution of one uncertainty quantity (an :class:`Attribution` of one function).

    The quantity is one function of all K members or posterior samples, so ``members`` holds
    a single map per example: ``members`` ``(1, N, *input_shape)``, ``mean`` the maps
    ``(N, *input_shape)``, ``std`` zeros, ``outputs`` ``U(x)`` and ``baseline_outputs``
    ``U(baseline)`` ``(1, N)``.

    Attributes
    ----------
    quantity : {"total", "aleatoric", "epistemic"}
    target : int or None
        Regression: the output whose variance is explained (None: summed over outputs).
    n_samples : int
        K, the members or posterior samples the quantity is computed from.
    task : {"regression", "classification"}
    """

    quantity: str = "total"
    target: int | None = None
    n_samples: int = 1
    task: str = "regression"

    @property
    def values(self) -> np.ndarray:
        """The explained quantity at the inputs, ``U(x)``, shape ``(N,)``."""
        return self.outputs[0]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly scalars: method, quantity, samples, examples and the mean quantity."""
        return {
            "method": self.method,
            "quantity": self.quantity,
            "target": self.target,
            "task": self.task,
            "n_samples": self.n_samples,
            "n_examples": int(self.members.shape[1]),
            "mean_value": float(np.mean(self.values)),
        }


def attribute_uncertainty(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    *,
    quantity: str = "epistemic",
    method: str = "integrated_gradients",
    target: int | None = None,
    task: str | None = None,
    samples: int | None = None,
    baselines: np.ndarray | torch.Tensor | float | None = None,
    strategy: str = "auto",
    internal_batch_size: int | None = None,
    seed: SeedLike = None,
    **method_kwargs: Any,
) -> UncertaintyAttribution:
    """Attribute the predictive uncertainty of an ensemble or posterior to the inputs.

    Regression, per example (law of total variance over the K members or samples):
    ``aleatoric = mean_k sigma_k(x)^2`` (the members' predicted noise variances),
    ``epistemic = var_k mu_k(x)`` (``ddof=0``, their disagreement), ``total`` their sum,
    in squared data units. Classification: ``total = H(mean_k p_k(x))`` (predictive entropy),
    ``aleatoric = mean_k H(p_k(x))`` (expected entropy), ``epistemic = total - aleatoric``
    (mutual information), in nats. These equal ``Predictive.var``, ``aleatoric_var``,
    ``epistemic_var``, ``entropy`` and ``mutual_information`` of the same members.

    Parameters
    ----------
    model : uncertainty wrapper, nn.Module or list of nn.Module
        A fitted ``DeepEnsemble`` (its K members), ``MCDropout`` (its first ``samples`` fixed
        dropout masks, default min(20, samples)), ``BayesianNN`` (its first ``samples``
        posterior draws, default 20) or anything with ``explain_modules(output=...)``; the
        modules used are exactly those prediction attribution uses. Regression needs
        ``explain_modules(output="std")`` for ``aleatoric`` and ``total``. Plain modules (a list
        is K members, explained in eval mode) give means or logits only: pass ``task``;
        regression then has ``epistemic`` only.
    inputs : array of shape (N, *input_shape)
        Any rank: ``(N, F)``, ``(N, C, L)``, ``(N, C, H, W)``, ``(N, C, D, H, W)``, sequences
        ``(N, T, F)``.
    quantity : {"total", "aleatoric", "epistemic"}, default "epistemic"
    method : str or callable
        Any attribution method of :func:`attribute` except ``"gradcam"`` (a layer of one
        network says nothing about a function of all of them).
    target : int or None, default None
        Regression: the output whose variance is explained; None explains the sum of the
        variances over the D outputs (the trace of the predictive covariance). Classification:
        must be None (entropy is over all classes).
    task : {"regression", "classification"}, optional
        Needed for plain modules; a wrapper's own task otherwise.
    samples : int, optional
        Members or posterior samples to use (the wrapper's ``explain_modules(samples=...)``).
    baselines : array broadcastable to (N, *input_shape), float or None
        Reference input (zeros by default), as for :func:`attribute`.
    strategy : {"auto", "vmap", "loop"}
        How the K members are evaluated inside the uncertainty function: stacked into one
        vectorized pass (``torch.func``), or one by one. ``"auto"`` stacks where the members
        and the method allow it (DeepLift hooks modules, so it loops).
    internal_batch_size : int, optional
        Input rows per forward/backward pass of the uncertainty function (each row evaluates
        all K members); default from its activation size.
    seed : int, SeedSequence or None
        Seeds the noise of ``smoothgrad`` and ``gradient_shap``.
    **method_kwargs
        The method's options, as for :func:`attribute` (e.g. ``n_steps`` of IG).

    Returns
    -------
    UncertaintyAttribution
        ``mean``: the maps ``(N, *input_shape)``; ``values``: ``U(x)`` ``(N,)``;
        ``baseline_outputs`` ``(1, N)``; ``convergence_delta`` ``(1, N)`` for IG and DeepLift.

    Raises
    ------
    ValueError
        An unknown ``quantity``, a quantity the model does not have (``aleatoric`` without a
        noise model), ``gradcam``, or a ``target`` out of range.

    Examples
    --------
    >>> from torch import nn
    >>> nets = [nn.Linear(3, 1), nn.Linear(3, 1)]
    >>> a = attribute_uncertainty(nets, np.ones((2, 3), "float32"), task="regression")
    >>> a.mean.shape, bool(np.allclose(a.mean.sum(1), a.values - a.baseline_outputs[0], atol=1e-4))
    ((2, 3), True)
    """
    quantity = check_quantity(quantity)
    if strategy not in STRATEGIES:
        raise ValueError(
            "The 'strategy' parameter of attribute_uncertainty must be one of "
            f"{{'auto', 'vmap', 'loop'}}. Got {strategy!r} instead."
        )
    if method == "gradcam":
        raise ValueError(
            "method='gradcam' explains a layer of one network; the uncertainty is a function "
            "of all members. Use integrated_gradients, saliency, occlusion, ..."
        )
    batchable = METHODS.get(method).batchable if isinstance(method, str) else False
    source = uncertainty_source(model, task, samples)
    x = as_input_tensor(inputs, source.members.device)
    with _uncertainty_function(source, quantity, target, x, strategy, batchable) as fn:
        attr = attribute(
            _Explained([fn]),
            x,
            method=method,
            target=0,
            baselines=baselines,
            internal_batch_size=internal_batch_size,
            seed=seed,
            **method_kwargs,
        )
        inner = "vmap" if fn._stacked[0] is not None else "loop"
    return UncertaintyAttribution(
        members=attr.members,
        outputs=attr.outputs,
        baseline_outputs=attr.baseline_outputs,
        convergence_delta=attr.convergence_delta,
        method=attr.method,
        strategy=inner,
        quantity=quantity,
        target=target,
        n_samples=fn.n_members,
        task=source.task,
    )


def uncertainty_quantities(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    *,
    target: int | None = None,
    task: str | None = None,
    samples: int | None = None,
    internal_batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """The uncertainty quantities :func:`attribute_uncertainty` explains, at ``inputs``.

    Parameters
    ----------
    model, inputs, target, task, samples, internal_batch_size
        As for :func:`attribute_uncertainty`.

    Returns
    -------
    dict of str to ndarray of shape (N,), float64
        ``total``, ``aleatoric`` and ``epistemic`` (regression without a noise model:
        ``epistemic`` only); ``total == aleatoric + epistemic`` to float64 rounding.
    """
    source = uncertainty_source(model, task, samples)
    x = as_input_tensor(inputs, source.members.device)
    with _uncertainty_function(source, "epistemic", target, x, "auto", True) as fn:
        rows = internal_batch_size or _as_members(fn).rows_per_pass(x[:1])
        return {k: v.numpy() for k, v in fn.values(x, rows).items()}


def uncertainty_deletion_curve(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    attribution: UncertaintyAttribution | np.ndarray,
    *,
    quantity: str | None = None,
    target: int | None = None,
    task: str | None = None,
    samples: int | None = None,
    baselines: np.ndarray | torch.Tensor | float | None = None,
    steps: int = 20,
    n_random: int = 3,
    threshold: float = 0.8,
    seed: SeedLike = 0,
    internal_batch_size: int | None = None,
) -> CheckResult:
    """Uncertainty deletion: remove the most relevant features first (set them to the
    baseline) and compare the fall of the uncertainty with removal in random order.

    The curves are those of :func:`~trustml.explain.deletion_curve` with the model output
    replaced by the uncertainty ``U``: ``mean_n s_n (U(x_t) - U(b)) / mean_n |U(x) - U(b)|``
    at the removed fraction ``t`` (``s_n`` the sign of ``U(x) - U(b)``; features ranked by
    ``s_n * attribution``), falling from 1 at ``t = 0`` to 0 at ``t = 1``. Both curves share
    that normalisation, so the value, the **area ratio** ``AUC(attribution order) /
    AUC(random order)`` (mean of ``n_random`` seeded orders), does not depend on it: below 1
    the attribution finds the features the uncertainty depends on faster than chance, about 1
    it does no better than a random map. The check passes at ``ratio <= threshold``.

    Parameters
    ----------
    model, inputs
        As for :func:`attribute_uncertainty`.
    attribution : UncertaintyAttribution or array of shape (N, *input_shape)
        The maps that order the features. An :class:`UncertaintyAttribution` also gives the
        quantity and target (unless given here).
    quantity : {"total", "aleatoric", "epistemic"}, optional
        Required with an array attribution.
    target, task, samples
        As for :func:`attribute_uncertainty`.
    baselines : array broadcastable to the inputs, float or None
        What a removed feature is set to (zeros by default).
    steps : int, default 20
        Fractions ``0, 1/steps, ..., 1`` of the features are removed.
    n_random : int, default 3
        Random orders averaged for the reference curve.
    threshold : float, default 0.8
        The largest area ratio that passes: the attribution order must save at least 20 % of
        the random order's area (a random map scatters about 1 by roughly +-0.1 on a few
        dozen examples).
    seed : int or SeedSequence
        For the random orders.
    internal_batch_size : int, optional

    Returns
    -------
    CheckResult
        ``value``: the area ratio (NaN when ``U`` does not change between input and baseline,
        or the random-order area is not positive). ``extra``: ``fraction``, ``attribution`` and
        ``random`` curves, ``random_std``, ``auc_attribution``, ``auc_random``, ``quantity``.
    """
    if steps < 1 or n_random < 1:
        raise ValueError(f"Expected steps >= 1 and n_random >= 1, got {steps} and {n_random}")
    if isinstance(attribution, UncertaintyAttribution):
        quantity = quantity or attribution.quantity
        target = attribution.target if target is None else target
        maps = attribution.mean
    elif quantity is None:
        raise ValueError("uncertainty_deletion_curve needs quantity= with an array attribution")
    else:
        maps = np.asarray(attribution)
    quantity = check_quantity(quantity)
    source = uncertainty_source(model, task, samples)
    x = as_input_tensor(inputs, source.members.device)
    if maps.shape != tuple(x.shape):
        raise ValueError(
            f"attribution of shape {maps.shape} does not match the inputs {tuple(x.shape)}"
        )
    base = per_example_baselines(baselines, x)
    with _uncertainty_function(source, quantity, target, x, "auto", True) as fn:
        rows = internal_batch_size or 2 * _as_members(fn).rows_per_pass(x[:1])

        def scalar(rows_x: torch.Tensor, _index: Any) -> np.ndarray:
            return fn.values(rows_x, rows)[quantity].numpy()

        curves = order_curves(
            "deletion", scalar, rows, x, base, maps, steps=steps, n_random=n_random, seed=seed
        )
    auc_attr, auc_rand = curves.auc_attribution, curves.auc_random
    ratio = auc_attr / auc_rand if np.isfinite(auc_rand) and auc_rand > 0 else float("nan")
    why = ""
    if curves.scale == 0:
        why = f"; the {quantity} uncertainty does not change between input and baseline"
    elif not np.isfinite(ratio):
        why = "; the random-order curve has no positive area"
    return CheckResult(
        name="uncertainty_deletion",
        value=float(ratio),
        threshold=threshold,
        passed=compare(float(ratio), threshold, "<="),
        detail=(
            f"area under the {quantity}-uncertainty deletion curve in attribution order over "
            f"that in random order ({len(x)} examples, {steps} steps, {n_random} random "
            f"orders; < 1: the uncertainty falls faster than by chance)" + why
        ),
        comparison="<=",
        extra={**curves.extra(), "quantity": quantity, "area_ratio": _finite_or_none(ratio)},
    )


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _as_members(fn: UncertaintyFunction) -> Members:
    """The uncertainty function as a one-member :class:`Members` (for its row budget)."""
    return Members(_Explained([fn]))


@contextmanager
def _uncertainty_function(
    source: UncertaintySource,
    quantity: str,
    target: int | None,
    x: torch.Tensor,
    strategy: str,
    batchable: bool,
) -> Iterator[UncertaintyFunction]:
    """The uncertainty function of ``source``, its members in evaluation mode meanwhile."""
    if quantity not in source.quantities():
        raise ValueError(
            f"quantity={quantity!r} needs members that predict their noise: a regression "
            "wrapper with explain_modules(output='std') (plain modules and wrappers without a "
            "noise model have 'epistemic' only)"
        )
    if source.task == "classification" and target is not None:
        raise ValueError("target must be None for classification: entropy is over all classes")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int)):
        raise TypeError(f"Expected target to be an int or None, got {type(target).__name__}")
    members = source.members
    with members.evaluating():
        stacked = None
        if strategy != "loop" and batchable:
            stacked = members.stack(x[:1])
        if strategy == "vmap" and stacked is None:
            raise ValueError(
                "strategy='vmap' is not possible here: the method hooks modules (deeplift), "
                "there is a single member, or the members cannot be stacked (different "
                "architectures, recurrent layers, operations without a vmap rule)"
            )
        fn = UncertaintyFunction(source, quantity, target, stacked)
        with torch.no_grad():
            fn.values(x[:1], 1)  # a target out of range fails here, before any work
        yield fn
