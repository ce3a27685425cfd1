"""Minibatch SVI for :class:`~trustml.uq.bayes.BayesianNN`: two exact engines and the loop.

``pyro``: Pyro's own ELBO, ``TraceMeanField_ELBO`` with the mean-field guide (closed-form KL
of every weight to its prior) or ``Trace_ELBO`` with the low-rank guide, each step tracing
model and guide.

``fused``: the same ``TraceMeanField_ELBO`` estimator of the mean-field guide evaluated in
plain torch. The guide's own parameters give the weights (drawn with the same
``Normal.rsample`` calls, in the same site order, so the two engines draw identical numbers),
the unconverted network runs them through ``torch.func.functional_call``, and the KL is the
same closed form; several particles run as one ``vmap``-batched forward when the network
allows it. What it saves is Pyro's per-step bookkeeping (effect handlers, traces,
``PyroModule`` attribute look-ups), which dominates for small networks. Before it is used,
its loss and gradients on the first minibatch are checked against Pyro's; any difference
(e.g. a model that draws its own random numbers) falls back to ``pyro`` with a log line.

Both engines step one ``torch.optim.Adam`` over all parameters (guide and point-estimated
weights): Pyro's ``SVI`` would create one optimizer per parameter, a cost that buys nothing
here. The likelihood of a minibatch of ``b`` out of ``N`` samples is scaled by ``N / b``
(``pyro.plate("data", size=N, subsample=idx)``), the KL by 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoLowRankMultivariateNormal
from pyro.infer.autoguide.initialization import init_to_value
from pyro.params.param_store import StateDict
from torch import nn
from torch.distributions import transform_to
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from trustml.uq._pyro_convert import MeanFieldNormal, RegressionOrClassModel
from trustml.uq._rng import seed_int, seeded_rng
from trustml.uq._source import Prepared, minibatches
from trustml.utils.seeding import child

__all__ = [
    "ENGINES",
    "FusedMeanField",
    "PyroELBO",
    "GuideFit",
    "adam",
    "choose_engine",
    "fit_guide",
    "scoped",
    "svi_step",
    "train_svi",
]

log = logging.getLogger("trustml")

ENGINES = ("auto", "fused", "pyro")

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
#: One minibatch ``(x, y, idx)``, as :func:`~trustml.uq._source.minibatches` yields it.
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class PyroELBO:
    """Pyro's ELBO as a differentiable loss (``TraceMeanField_ELBO`` for the mean-field guide,
    ``Trace_ELBO`` otherwise), averaged over ``particles`` draws."""

    kind = "pyro"

    def __init__(self, model: RegressionOrClassModel, guide: Any, particles: int) -> None:
        cls = TraceMeanField_ELBO if isinstance(guide, MeanFieldNormal) else Trace_ELBO
        self.elbo = cls(num_particles=particles)
        self.model, self.guide = model, guide

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, size: int):
        return self.elbo.differentiable_loss(self.model, self.guide, x, y, idx, size=size)


class FusedMeanField:
    """``TraceMeanField_ELBO`` of the model and its mean-field guide, in plain torch.

    Parameters
    ----------
    model : RegressionOrClassModel
        Its converted network holds the point-estimated parameters and buffers.
    guide : MeanFieldNormal
        Set up (called once); holds the locs and scales.
    plain : nn.Module
        The unconverted network, same parameter names; only its structure is used.
    prior_scale : float
    particles : int
    """

    kind = "fused"

    def __init__(
        self,
        model: RegressionOrClassModel,
        guide: MeanFieldNormal,
        plain: nn.Module,
        prior_scale: float,
        particles: int,
        vectorize: bool = True,
    ) -> None:
        self.model, self.plain, self.particles = model, plain, particles
        self.prior_scale = float(prior_scale)
        own = dict(guide.named_parameters())
        # The guide draws its sites in the model's order; so must we (same random numbers).
        self.sites = [name for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
        self.locs = [own[f"locs.{n}_unconstrained"] for n in self.sites]
        self.scales = [own[f"scales.{n}_unconstrained"] for n in self.sites]
        self.to_scale = transform_to(guide.scale_constraint)
        self.point = dict(model.net.named_parameters())
        self.buffers = dict(model.net.named_buffers())
        expected = {n for n, _ in plain.named_parameters()}
        if expected != set(self.sites) | set(self.point):
            raise ValueError("the converted network's parameters differ from the plain one's")
        self.vectorized = vectorize and particles > 1
        # Particles run as one batched forward: the network sees (P, b, ...) via vmap.
        self._forward = vmap(self._one, in_dims=(0, None)) if self.vectorized else self._one

    def _one(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.plain, {**self.point, **weights, **self.buffers}, (x,))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, size: int):
        s0 = self.prior_scale
        scales = [self.to_scale(raw) for raw in self.scales]
        kl = torch.zeros((), device=x.device)
        for loc, scale in zip(self.locs, scales, strict=True):
            # KL(Normal(loc, scale) || Normal(0, s0)), as torch's _kl_normal_normal computes it.
            var_ratio = (scale / s0).pow(2)
            kl = kl + 0.5 * (var_ratio + (loc / s0).pow(2) - 1 - var_ratio.log()).sum()
        # Normal(loc, scale).rsample() op for op, site after site and particle after particle
        # like Pyro's guide: both engines draw the same numbers.
        factor = size / len(idx)
        if self.vectorized:
            eps = [
                [torch.empty_like(loc).normal_() for loc in self.locs]
                for _ in range(self.particles)
            ]
            weights = {
                n: loc + torch.stack([e[i] for e in eps]) * scale
                for i, (n, loc, scale) in enumerate(zip(self.sites, self.locs, scales, strict=True))
            }
            log_lik = self.model.log_likelihood(self._forward(weights, x), y)
            return kl - factor * log_lik / self.particles
        loss = torch.zeros((), device=x.device)
        for _ in range(self.particles):  # draws, then the forward (dropout), as Pyro orders them
            weights = {
                n: loc + torch.empty_like(loc).normal_() * scale
                for n, loc, scale in zip(self.sites, self.locs, scales, strict=True)
            }
            log_lik = self.model.log_likelihood(self._forward(weights, x), y)
            loss = loss + (kl - factor * log_lik) / self.particles
        return loss


def adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam``, with its fused kernel where the device has one (same update)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def svi_step(loss_fn: Loss, optim: torch.optim.Optimizer, batch: Batch, size: int) -> torch.Tensor:
    """One optimizer step on the negative ELBO of one minibatch ``(x, y, idx)``."""
    loss = loss_fn(*batch, size)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    return loss.detach()


def _rng_state(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(device)
    return torch.get_rng_state(), None


def _set_rng_state(state: Any, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _agrees(fused: FusedMeanField, reference: PyroELBO, batch: Batch, size: int) -> str | None:
    """None when the fused loss and gradients match Pyro's on ``batch``, else why not."""
    device = batch[0].device
    params = [*fused.locs, *fused.scales, *fused.point.values()]
    state = _rng_state(device)
    results = []
    for loss_fn in (reference, fused):
        _set_rng_state(state, device)
        loss = loss_fn(*batch, size)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        flat = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).reshape(-1)
                for p, g in zip(params, grads, strict=True)
            ]
        )
        results.append((loss.detach(), flat))
    _set_rng_state(state, device)
    (l_ref, g_ref), (l_new, g_new) = results
    if not torch.isclose(l_new, l_ref, rtol=1e-4, atol=1e-3):
        return f"loss {float(l_new):.6g} != Pyro's {float(l_ref):.6g}"
    if torch.linalg.vector_norm(g_new - g_ref) > 1e-3 * torch.linalg.vector_norm(g_ref) + 1e-6:
        return "gradients differ from Pyro's"
    return None


def choose_engine(
    engine: str,
    model: RegressionOrClassModel,
    guide: Any,
    plain: nn.Module,
    prior_scale: float,
    particles: int,
    first_batch: Batch,
    size: int,
) -> Loss:
    """The engine to train with; ``"auto"``: ``fused`` when it applies and agrees with Pyro."""
    reference = PyroELBO(model, guide, particles)
    if engine == "pyro":
        return reference
    if not isinstance(guide, MeanFieldNormal):
        if engine == "fused":
            raise ValueError("engine='fused' needs guide='normal' (a mean-field guide)")
        return reference
    why = None
    # Particles batched with vmap first (when there are several), then one after the other.
    for vectorize in (True, False)[: 2 if particles > 1 else 1]:
        try:
            fused = FusedMeanField(model, guide, plain, prior_scale, particles, vectorize)
            why = _agrees(fused, reference, first_batch, size)
        except Exception as exc:  # an op that functional_call or vmap cannot run
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if why is None:
            return fused
    if engine == "fused":
        raise ValueError(f"engine='fused' does not reproduce Pyro's ELBO for this model: {why}")
    log.info("BayesianNN: using Pyro's ELBO step by step (the fused step does not apply: %s)", why)
    return reference


def train_svi(
    loss_fn: Loss,
    params: list[torch.Tensor],
    data: Prepared,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    device: torch.device,
    progress: bool | None,
) -> list[float]:
    """Adam on the negative ELBO; returns the mean loss per sample of every epoch."""
    optim = adam(params, lr)
    n = data.source.n
    show = sys.stderr.isatty() if progress is None else bool(progress)
    history: list[float] = []
    with tqdm(total=epochs, disable=not show, desc="Bayesian NN (SVI)", unit="epoch") as bar:
        for epoch in range(epochs):
            total = torch.zeros((), dtype=torch.float64, device=device)
            batches = minibatches(data.source, rng, batch_size, device)
            for batch in batches:
                loss = svi_step(loss_fn, optim, batch, n)
                total += loss.double() * (len(batch[2]) / n)  # no sync per step
            value = float(total) / n
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"the ELBO became non-finite in epoch {epoch + 1}; lower the learning "
                    "rate or the prior_scale, or check the data"
                )
            history.append(value)
            bar.set_postfix(elbo=f"{-value:.4f}")
            bar.update()
    return history


def scoped(state: StateDict) -> Any:
    """This model's own Pyro parameter store, swapped in for the duration."""
    return pyro.get_param_store().scope(state=state)


@dataclass
class GuideFit:
    """What :func:`fit_guide` trained: the guide, its loss (engine), the optimised tensors
    and the negative ELBO per sample of every epoch."""

    guide: Any
    loss_fn: Loss
    params: list[torch.Tensor]
    losses: list[float]


def fit_guide(
    model: RegressionOrClassModel,
    plain: nn.Module,
    data: Prepared,
    ss: np.random.SeedSequence,
    device: torch.device,
    opts: dict[str, Any],
    *,
    guide: str,
    init_scale: float,
    prior_scale: float,
    store: StateDict,
    progress: bool | None,
) -> GuideFit:
    """Fit the variational posterior of ``model`` by minibatch SVI.

    Parameters
    ----------
    model : RegressionOrClassModel
        The Pyro model; ``plain`` is its unconverted network (weights start there).
    data : Prepared
    ss : SeedSequence
        Data order from its child ``"data"``, SVI noise from ``"svi"``.
    opts : dict
        ``epochs``, ``batch_size``, ``lr``, ``particles``, ``engine`` (already checked).
    guide : {"normal", "lowrank"}
    init_scale, prior_scale : float
    store : pyro.params.param_store.StateDict
        The model's own Pyro parameter store (see :func:`scoped`).

    Returns
    -------
    GuideFit
    """
    init = init_to_value(values={n: p.detach() for n, p in plain.named_parameters()})
    cls = MeanFieldNormal if guide == "normal" else AutoLowRankMultivariateNormal
    fitted_guide = cls(model, init_loc_fn=init, init_scale=init_scale)
    n = data.source.n
    data_seed = child(ss, "data")
    first = next(
        minibatches(data.source, np.random.default_rng(data_seed), opts["batch_size"], device)
    )
    plain.train()
    model.net.train()
    with scoped(store), seeded_rng(device, seed_int(child(ss, "svi"))):
        fitted_guide(*first, size=n)  # sets the guide up: sites, shapes, initial values
        loss_fn = choose_engine(
            opts["engine"], model, fitted_guide, plain, prior_scale, opts["particles"], first, n
        )
        params: list[torch.Tensor] = [*fitted_guide.parameters(), *model.net.parameters()]
        losses = train_svi(
            loss_fn,
            params,
            data,
            epochs=opts["epochs"],
            batch_size=opts["batch_size"],
            lr=float(opts["lr"]),
            rng=np.random.default_rng(data_seed),
            device=device,
            progress=progress,
        )
    model.net.eval()
    return GuideFit(fitted_guide, loss_fn, params, losses)
