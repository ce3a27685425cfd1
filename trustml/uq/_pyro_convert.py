"""Turn a plain ``nn.Module`` into a Pyro model with Pyro's own machinery.

A deep copy of the module is converted in place with :func:`pyro.nn.module.to_pyro_module_`
and its weights are replaced by ``PyroSample`` priors ``Normal(0, prior_scale)``. Which
weights become random: those of ``Linear``, ``Conv1d/2d/3d`` and recurrent layers (``nn.LSTM``
and friends, and any module holding LSTM-style parameters such as the builtin ``lstm``'s
``weight_ih_l0``). Everything else (normalisation layers, learned scalars) stays a plain
parameter that SVI point-estimates. ``bayesian_layers`` narrows the random part to modules
whose dotted names start with one of the given prefixes.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from typing import Any, cast

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoNormal
from pyro.nn.module import PyroModule, PyroSample, to_pyro_module_
from torch import nn
from torch.nn import functional as F

from trustml.uq._heads import EPS

__all__ = [
    "BAYESIAN_TYPES",
    "MeanFieldNormal",
    "RegressionOrClassModel",
    "bayesian_parameters",
    "to_pyro_model",
]

#: Layers whose weights get priors; normalisation layers are left out on purpose.
BAYESIAN_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.RNNBase,
)
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
_RNN_NAME = re.compile(r"^(weight|bias)_(ih|hh)_l\d+(_reverse)?$")


def _eligible(module: nn.Module, name: str) -> bool:
    return isinstance(module, BAYESIAN_TYPES) or bool(_RNN_NAME.match(name))


def bayesian_parameters(module: nn.Module, layers: Sequence[str] | None = None) -> list[str]:
    """Dotted names of the parameters that get priors, in ``named_parameters`` order.

    Raises
    ------
    ValueError
        A prefix in ``layers`` matches no eligible parameter (the message lists the module
        names that hold some), or the module has no eligible parameter at all.
    """
    owners: dict[str, str] = {}  # parameter name -> module name
    for mod_name, mod in module.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            if _eligible(mod, p_name):
                owners[f"{mod_name}.{p_name}" if mod_name else p_name] = mod_name
    if not owners:
        raise ValueError(
            "The module has no Linear, Conv1d/2d/3d or LSTM parameters to put priors on"
        )
    if layers is None:
        return list(owners)
    if isinstance(layers, str) or not all(isinstance(p, str) for p in layers):
        raise TypeError(f"Expected bayesian_layers to be a list of str, got {layers!r}")
    chosen = set()
    for prefix in layers:
        hits = [n for n in owners if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not hits:
            valid = sorted({m for m in owners.values()})
            raise ValueError(
                f"bayesian_layers entry {prefix!r} matches no Linear/Conv/LSTM layer; "
                f"layers with weights are {valid}"
            )
        chosen.update(hits)
    return [n for n in owners if n in chosen]


def _prior(shape: torch.Size, scale: float, device: torch.device) -> dist.Distribution:
    zero = torch.zeros((), device=device)
    return dist.Normal(zero, zero + scale).expand(shape).to_event(len(shape))


def to_pyro_model(
    module: nn.Module, sites: Sequence[str], prior_scale: float
) -> tuple[PyroModule, dict[str, torch.Size]]:
    """A converted deep copy of ``module`` with a ``PyroSample`` prior on each name in
    ``sites``; returns it and the shape of every site.

    ``nn.LSTM`` and friends read their weights from ``_flat_weights``; torch refreshes that
    list from the attributes whenever they change (``_weights_have_changed``), so the sampled
    weights reach the kernel.
    """
    net = copy.deepcopy(module)
    to_pyro_module_(net)
    shapes: dict[str, torch.Size] = {}
    wanted = set(sites)
    for mod_name, mod in net.named_modules():
        for p_name, p in list(mod.named_parameters(recurse=False)):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if full in wanted:
                shapes[full] = p.shape
                setattr(mod, p_name, PyroSample(_prior(p.shape, prior_scale, p.device)))
    return cast(PyroModule, net), shapes  # to_pyro_module_ converted it in place


class RegressionOrClassModel:
    """The Pyro model: a converted network and a Gaussian or categorical likelihood.

    ``model(x, y, idx, size=N)``: ``x`` is a minibatch of inputs, ``y`` its targets in
    standardised units (or labels), ``idx`` the minibatch's sample indices, a subsample of
    the ``N`` training samples (``pyro.plate`` scales the likelihood by ``N / len(idx)``).
    """

    def __init__(self, net: PyroModule, task: str, d: int) -> None:
        self.net, self.task, self.d = net, task, d

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, *, size: int
    ) -> torch.Tensor:
        out = self.net(x)
        with pyro.plate("data", size=size, subsample=idx):
            pyro.sample("obs", self.likelihood(out), obs=y)
        return out

    def likelihood(self, out: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of one minibatch of targets given the network output."""
        if self.task == "classification":
            return dist.Categorical(logits=out)
        mean, raw = out[..., : self.d], out[..., self.d :]
        return dist.Normal(mean, F.softplus(raw) + EPS).to_event(1)

    def log_likelihood(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``likelihood(out).log_prob(y).sum()`` computed as torch's Normal and Categorical
        compute it, without building distributions; ``out`` may have extra leading dims."""
        if self.task == "classification":
            labels = y.expand(*out.shape[:-1]).reshape(-1)
            return -F.cross_entropy(out.reshape(-1, out.shape[-1]), labels, reduction="sum")
        mean, raw = out[..., : self.d], out[..., self.d :]
        scale = F.softplus(raw) + EPS
        return (-((y - mean) ** 2) / (2 * scale**2) - scale.log() - _LOG_SQRT_2PI).sum()


class MeanFieldNormal(AutoNormal):
    """Pyro's ``AutoNormal`` whose sample sites are the Normal factors themselves.

    ``AutoNormal`` samples an auxiliary ``*_unconstrained`` Normal and hands the model a
    ``Delta``, which makes ``TraceMeanField_ELBO`` estimate the KL by sampling. Every latent
    here is an unconstrained weight outside any plate, so the Normal can be the site itself:
    ``TraceMeanField_ELBO`` then uses the closed-form KL to the Normal prior. Parameters,
    initialisation and ``median`` are ``AutoNormal``'s.
    """

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        result = {}
        for name, _ in self.prototype_trace.iter_stochastic_nodes():
            loc, scale = self._get_loc_and_scale(name)
            result[name] = pyro.sample(
                name, dist.Normal(loc, scale).to_event(self._event_dims[name])
            )
        return result
