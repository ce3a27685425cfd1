"""Faithfulness: does the model's output follow the attribution? Deletion and insertion curves
(Petsiuk et al. 2018), infidelity and max-sensitivity (Yeh et al. 2019, via ``captum.metrics``).

For an ensemble or posterior the model is the member mean of the explained output, and the
attribution is the member-mean map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max

from trustml.explain._curves import order_curves
from trustml.explain._members import Members, Target, as_input_tensor, per_example_baselines
from trustml.explain._result import Attribution, CheckResult, compare
from trustml.explain.attribution import _seeded, attribute
from trustml.utils.seeding import SeedLike

__all__ = ["deletion_curve", "infidelity", "insertion_curve", "sensitivity"]


class _MeanModel:
    """The member-mean (reduced) output ``(M, D)`` of a model, evaluated in bounded chunks."""

    def __init__(self, members: Members, target: Target, rows: int | None) -> None:
        self.members = members
        self.target = target
        self._plain = Target(None, target.reduce)
        self._rows = rows
        self._stacked: Any = None

    def __enter__(self) -> _MeanModel:
        self._ctx = self.members.evaluating()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)

    def prepare(self, probe: torch.Tensor) -> None:
        self._rows = self._rows or 2 * self.members.rows_per_pass(probe)
        self._stacked = self.members.stack(probe)

    @property
    def rows(self) -> int:
        return int(self._rows or 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members.predict(x, self._plain, self.rows, self._stacked).mean(dim=0)
        return out.to(device=x.device, dtype=torch.float32)

    def scalar(self, x: torch.Tensor, index: int | torch.Tensor | None) -> np.ndarray:
        """The explained scalar per row ``(M,)`` with per-row target ``index``."""
        return Target(index).pick(self(x).double()[None])[0].cpu().numpy()


def _maps(attribution: Attribution | np.ndarray, x: torch.Tensor) -> np.ndarray:
    maps = attribution.mean if isinstance(attribution, Attribution) else np.asarray(attribution)
    if maps.shape != tuple(x.shape):
        raise ValueError(
            f"attribution of shape {maps.shape} does not match the inputs {tuple(x.shape)}"
        )
    return maps


def deletion_curve(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    attribution: Attribution | np.ndarray,
    *,
    target: Any = 0,
    baselines: np.ndarray | torch.Tensor | float | None = None,
    steps: int = 20,
    n_random: int = 3,
    threshold: float = 0.05,
    seed: SeedLike = 0,
    internal_batch_size: int | None = None,
) -> CheckResult:
    """Remove features (set them to the baseline) most relevant first, and compare the drop of
    the output with removal in random order.

    The curve is ``mean_n s_n (F(x_t) - F(b)) / mean_n |F(x) - F(b)|`` at the removed fraction
    ``t`` (``s_n`` the sign of ``F(x) - F(b)``; features are ranked by ``s_n * attribution``),
    so it falls from 1 to 0. A faithful attribution makes it fall early: the score is the area
    under the random-order curve minus the area under the attribution-order curve, and the
    check passes at ``>= threshold``.

    Parameters
    ----------
    model : nn.Module or uncertainty wrapper
    inputs : array of shape (N, *input_shape)
    attribution : Attribution or array of shape (N, *input_shape)
        An :class:`Attribution` is ranked by its member mean.
    target : as for :func:`attribute`
    baselines : array broadcastable to the inputs, float or None
        What a removed feature is set to (zeros by default).
    steps : int, default 20
        Fractions ``0, 1/steps, ..., 1`` of the features are removed.
    n_random : int, default 3
        Random orders averaged for the reference curve.
    threshold : float, default 0.05
    seed : int or SeedSequence
        For the random orders.
    internal_batch_size : int, optional
        Input rows per forward pass (default: from the model's activation size).

    Returns
    -------
    CheckResult
        ``extra``: ``fraction``, ``attribution`` and ``random`` curves (lists), ``random_std``,
        ``auc_attribution``, ``auc_random``.
    """
    return _curve(
        "deletion",
        model,
        inputs,
        attribution,
        target=target,
        baselines=baselines,
        steps=steps,
        n_random=n_random,
        threshold=threshold,
        seed=seed,
        internal_batch_size=internal_batch_size,
    )


def insertion_curve(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    attribution: Attribution | np.ndarray,
    *,
    target: Any = 0,
    baselines: np.ndarray | torch.Tensor | float | None = None,
    steps: int = 20,
    n_random: int = 3,
    threshold: float = 0.05,
    seed: SeedLike = 0,
    internal_batch_size: int | None = None,
) -> CheckResult:
    """Start from the baseline and insert the input's features most relevant first; the curve
    rises from 0 to 1 and a faithful attribution makes it rise early.

    The score is the area under the attribution-order curve minus that under the random-order
    curve; the check passes at ``>= threshold``. Parameters and result as for
    :func:`deletion_curve`.
    """
    return _curve(
        "insertion",
        model,
        inputs,
        attribution,
        target=target,
        baselines=baselines,
        steps=steps,
        n_random=n_random,
        threshold=threshold,
        seed=seed,
        internal_batch_size=internal_batch_size,
    )


def _curve(
    mode: str,
    model: Any,
    inputs: Any,
    attribution: Any,
    *,
    target: Any,
    baselines: Any,
    steps: int,
    n_random: int,
    threshold: float,
    seed: SeedLike,
    internal_batch_size: int | None,
) -> CheckResult:
    if steps < 1 or n_random < 1:
        raise ValueError(f"Expected steps >= 1 and n_random >= 1, got {steps} and {n_random}")
    members = Members(model)
    x = as_input_tensor(inputs, members.device)
    maps = _maps(attribution, x)
    fwd = _MeanModel(members, Target.parse(target, len(x), x.device), internal_batch_size)
    base = per_example_baselines(baselines, x)
    with fwd, torch.no_grad():
        fwd.prepare(x[:1])
        curves = order_curves(
            mode, fwd.scalar, fwd.rows, x, base, maps, steps=steps, n_random=n_random,
            seed=seed, index=fwd.target.index,
        )  # fmt: skip
    n, scale = len(x), curves.scale
    auc_attr, auc_rand = curves.auc_attribution, curves.auc_random
    value = auc_rand - auc_attr if mode == "deletion" else auc_attr - auc_rand
    verb = "removing" if mode == "deletion" else "inserting"
    return CheckResult(
        name=mode,
        value=value,
        threshold=threshold,
        passed=compare(value, threshold, ">="),
        detail=(
            f"area gap between {verb} features in random and attribution order "
            f"({n} examples, {steps} steps, {n_random} random orders)"
            + ("; the output does not change between input and baseline" if scale == 0 else "")
        ),
        comparison=">=",
        extra=curves.extra(),
    )


def infidelity(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    attribution: Attribution | np.ndarray,
    *,
    target: Any = 0,
    noise_scale: float = 0.1,
    n_perturb_samples: int = 16,
    threshold: float = 0.5,
    seed: SeedLike = 0,
    internal_batch_size: int | None = None,
) -> CheckResult:
    """Relative explanation infidelity (Yeh et al. 2019) with ``captum.metrics.infidelity``.

    Inputs are perturbed by Gaussian noise ``I`` with standard deviation ``noise_scale`` times
    the inputs' standard deviation; infidelity is ``E[(I . attr - (F(x) - F(x - I)))^2]`` with
    the attribution optimally rescaled (Captum's ``normalize=True``). It is divided by the
    infidelity of an all-zero attribution, ``E[(F(x) - F(x - I))^2]``, on the same
    perturbations: 0 means the attribution predicts every output change, 1 that it predicts
    none. The check passes at ``<= threshold``.

    Parameters
    ----------
    model, inputs, attribution, target
        As for :func:`deletion_curve`.
    noise_scale : float, default 0.1
    n_perturb_samples : int, default 16
    threshold : float, default 0.5
    seed : int or SeedSequence
    internal_batch_size : int, optional

    Returns
    -------
    CheckResult
        ``extra``: ``per_example`` relative infidelity (None where the output never changes)
        and ``raw`` (Captum's normalized infidelity, per example).
    """
    members = Members(model)
    x = as_input_tensor(inputs, members.device)
    maps = torch.as_tensor(_maps(attribution, x), dtype=torch.float32, device=x.device)
    fwd = _MeanModel(members, Target.parse(target, len(x), x.device), internal_batch_size)
    sigma = noise_scale * float(x.std()) if len(x.reshape(-1)) > 1 else noise_scale

    def perturb(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(inp) * sigma
        return noise, inp - noise

    def run(attr: torch.Tensor, normalize: bool) -> torch.Tensor:
        with _seeded(seed, x.device):
            return captum_infidelity(
                fwd,
                perturb,
                x,
                attr,
                target=fwd.target.index,
                n_perturb_samples=n_perturb_samples,
                max_examples_per_batch=min(len(x) * n_perturb_samples, max(len(x), fwd.rows)),
                normalize=normalize,
            )

    with fwd:
        fwd.prepare(x[:1])
        raw = run(maps, True).double().cpu().numpy()
        reference = run(torch.zeros_like(maps), False).double().cpu().numpy()
    valid = reference > 1e-12 * max(1.0, float(np.abs(reference).max()))
    rel = np.where(valid, raw / np.where(valid, reference, 1.0), np.nan)
    value = float(np.nanmean(rel)) if valid.any() else float("nan")
    return CheckResult(
        name="infidelity",
        value=value,
        threshold=threshold,
        passed=compare(value, threshold, "<="),
        detail=(
            f"infidelity relative to an all-zero attribution (Gaussian perturbations of "
            f"{noise_scale:g} input std, {n_perturb_samples} per example), mean over "
            f"{int(valid.sum())} examples"
        ),
        comparison="<=",
        extra={"per_example": rel.tolist(), "raw": raw.tolist()},
    )


def sensitivity(
    model: Any,
    inputs: np.ndarray | torch.Tensor,
    *,
    method: str | Callable[..., torch.Tensor] = "integrated_gradients",
    target: Any = 0,
    baselines: Any = None,
    radius: float = 0.02,
    n_perturb_samples: int = 8,
    threshold: float = 0.5,
    seed: SeedLike = 0,
    **method_kwargs: Any,
) -> CheckResult:
    """Max-sensitivity (Yeh et al. 2019) of the member-mean attribution, with
    ``captum.metrics.sensitivity_max``.

    The inputs are perturbed uniformly within ``radius`` times their value range; the value
    is the largest change of the explanation, ``||attr(x + d) - attr(x)|| / ||attr(x)||``,
    averaged over examples. The check passes at ``<= threshold``: a perturbation at noise level
    changes the explanation by at most that fraction.

    Parameters
    ----------
    model, inputs
        As for :func:`attribute`.
    method, target, baselines, **method_kwargs
        The explanation, as for :func:`attribute`.
    radius : float, default 0.02
    n_perturb_samples : int, default 8
    threshold : float, default 0.5
    seed : int or SeedSequence
        Seeds the perturbations and the methods' own noise.

    Returns
    -------
    CheckResult
        ``extra``: ``per_example`` relative max-sensitivity.
    """
    members = Members(model)
    subject = members.like(members.modules)
    x = as_input_tensor(inputs, members.device)
    span = float(x.max() - x.min()) or 1.0
    kwargs: dict[str, Any] = {}
    tgt = target
    if isinstance(target, np.ndarray | torch.Tensor | list | tuple):
        kwargs["target"] = torch.as_tensor(np.asarray(target), device=x.device).long()
        tgt = None
    if isinstance(baselines, np.ndarray | torch.Tensor) and np.ndim(baselines) == x.dim():
        kwargs["baselines"] = torch.as_tensor(np.asarray(baselines, dtype=np.float32)).expand_as(x)
        baselines = None

    def explain(inp: Any, **kw: Any) -> tuple[torch.Tensor]:
        # Captum passes the inputs as a 1-tuple and iterates over what comes back.
        inp = inp[0] if isinstance(inp, tuple) else inp
        a = attribute(
            subject,
            inp,
            method=method,
            target=kw.get("target", tgt),
            baselines=kw.get("baselines", baselines),
            seed=seed,
            **method_kwargs,
        )
        return (torch.as_tensor(a.mean, dtype=torch.float32, device=inp.device),)

    with _seeded(seed, x.device):
        per_example = sensitivity_max(
            explain,
            x,
            perturb_radius=radius * span,
            n_perturb_samples=n_perturb_samples,
            max_examples_per_batch=len(x) * n_perturb_samples,
            **kwargs,
        )
    per = per_example.double().cpu().numpy()
    value = float(per.mean())
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    return CheckResult(
        name="sensitivity",
        value=value,
        threshold=threshold,
        passed=compare(value, threshold, "<="),
        detail=(
            f"max relative change of the {name} map under uniform input perturbations of "
            f"{radius:g} x the input range ({n_perturb_samples} per example), mean over "
            f"{len(per)} examples"
        ),
        comparison="<=",
        extra={"per_example": per.tolist()},
    )
