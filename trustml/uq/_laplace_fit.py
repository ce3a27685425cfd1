"""What :class:`~trustml.uq.Laplace` asks of laplace-torch, and checks before asking.

laplace-torch computes the curvature, the posterior, the marginal likelihood and the
grid search; this module only finds the last layer, estimates the memory a configuration
needs (before anything large is allocated), feeds laplace-torch the standardised training
data batch by batch and tunes the prior precision (and, for regression, the noise) with
laplace-torch's own functions. Importing it imports laplace-torch.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.exceptions import TrustmlInputError
from trustml.uq._source import Source
from trustml.utils.memory import available_memory, format_bytes

__all__ = [
    "GRID",
    "LaplaceInputError",
    "Batches",
    "build_laplace",
    "check_memory",
    "find_last_layer",
    "laplace_bytes",
    "preflight",
    "tune",
]

#: Grid search: 21 prior precisions, log-spaced from 1e-4 to 1e4 (0.4 decades apart).
GRID = (-4.0, 4.0, 21)
#: Steps and Adam learning rate of the marginal-likelihood optimisation (laplace-torch's).
_MARGLIK_STEPS, _MARGLIK_LR = 100, 0.1
_FLOAT = 4  # bytes per float32
#: Default memory limit: this fraction of the memory available when ``fit`` starts.
MEMORY_FRACTION = 0.5


class LaplaceInputError(TrustmlInputError):
    """A model or configuration laplace-torch cannot handle; ``parameter`` names the
    ``Laplace`` parameter to change (the protocol key of the same name)."""

    def __init__(self, message: str, *, parameter: str) -> None:
        self.parameter = parameter
        super().__init__(message)


# -- the last layer ------------------------------------------------------------------------
def find_last_layer(model: nn.Module, probe: torch.Tensor) -> str:
    """Name of the ``nn.Linear`` whose output is the model's output on ``probe``.

    laplace-torch's last-layer Laplace needs one; its own search assumes the last module
    called is linear and does not check it. Here the last leaf module called must be an
    ``nn.Linear`` and return exactly the model output (no activation, reshape or slice after).

    Raises
    ------
    LaplaceInputError
        (``parameter="subset_of_weights"``) naming what the model ends with instead.
    """
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, out, name=name: calls.append((name, mod, out)))
        for name, m in model.named_modules()
        if name and not list(m.children())
    ]
    try:
        with torch.no_grad():
            out = model.eval()(probe)
    finally:
        for h in hooks:
            h.remove()
    advice = "; use subset_of_weights='all', or end the model with an nn.Linear layer"
    if not calls:
        raise LaplaceInputError(
            "last-layer Laplace needs a model whose output comes from an nn.Linear layer; "
            f"{type(model).__name__} calls no submodule" + advice,
            parameter="subset_of_weights",
        )
    name, module, last = calls[-1]
    if not isinstance(module, nn.Linear):
        raise LaplaceInputError(
            "last-layer Laplace needs a model whose output comes from an nn.Linear layer; "
            f"its last layer {name!r} is a {type(module).__name__}" + advice,
            parameter="subset_of_weights",
        )
    if not isinstance(last, torch.Tensor) or last.shape != out.shape or not torch.equal(last, out):
        raise LaplaceInputError(
            "last-layer Laplace needs a model whose output comes from an nn.Linear layer; "
            f"the output of its last nn.Linear {name!r} is changed after the layer" + advice,
            parameter="subset_of_weights",
        )
    return name


# -- memory ---------------------------------------------------------------------------------
def _layer_shapes(modules: list[nn.Module]) -> list[tuple[int, int]]:
    """``(out, in)`` of the Kronecker factors of each weight (a bias: ``(out, 0)``)."""
    shapes = []
    for m in modules:
        for pname, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if pname == "weight" and p.dim() >= 2:
                shapes.append((int(p.shape[0]), int(np.prod(p.shape[1:]))))
            else:
                shapes.append((int(p.numel()), 0))
    return shapes


def laplace_bytes(
    modules: list[nn.Module], hessian: str, outputs: int, batch: int, draws: int
) -> dict[str, int]:
    """Rough peak bytes of a Laplace fit and prediction, by part.

    Parameters
    ----------
    modules : list of nn.Module
        The layers whose parameters the Laplace approximation covers.
    hessian : {"kron", "diag", "full"}
    outputs : int
        Outputs ``C`` per sample (targets or classes).
    batch : int
        Samples per curvature batch.
    draws : int
        Posterior samples kept (half of them: the others are their mirror images).

    Returns
    -------
    dict
        ``posterior`` (the Hessian, the posterior precision and its factor or
        decomposition, float32), ``jacobians`` (per-batch Jacobians or output gradients
        ``batch x C x ...``), ``samples`` (the kept weight draws) and ``total``.
    """
    shapes = _layer_shapes(modules)
    p = sum(o * max(i, 1) for o, i in shapes)
    if hessian == "full":
        posterior = 3 * p * p
        jac = batch * outputs * p
    elif hessian == "diag":
        posterior = 3 * p
        jac = batch * outputs * p
    else:
        posterior = 3 * sum(o * o + i * i for o, i in shapes)
        jac = batch * outputs * max((o for o, _ in shapes), default=1)
    parts = {
        "posterior": _FLOAT * posterior,
        "jacobians": _FLOAT * jac,
        "samples": _FLOAT * math.ceil(draws / 2) * p,
    }
    parts["total"] = sum(parts.values())
    return parts


def check_memory(
    parts: dict[str, int], limit: int | None, *, subset: str, hessian: str, weights: int,
    outputs: int,
) -> None:  # fmt: skip
    """Raise :class:`LaplaceInputError` (``parameter="hessian"``) when ``parts["total"]``
    exceeds ``limit`` bytes (default: half the memory available now)."""
    if limit is None:
        avail = available_memory()
        if avail is None:
            return
        limit = int(MEMORY_FRACTION * avail)
        source = f"half of the {format_bytes(avail)} available"
    else:
        source = "max_memory"
    if parts["total"] <= limit:
        return
    worst = max(("posterior", "jacobians", "samples"), key=lambda k: parts[k])
    what = {
        "posterior": f"the {hessian} posterior of {weights:,} weights",
        "jacobians": f"per-batch Jacobians of {outputs:,} outputs",
        "samples": "the posterior weight samples",
    }[worst]
    if worst == "samples":
        advice = "use fewer samples"
    elif worst == "posterior" and hessian == "full":
        advice = "use hessian='kron' or 'diag', or subset_of_weights='last_layer'"
    else:
        advice = (
            "laplace-torch has no structure (and no output subsampling) for this many "
            "outputs: predict fewer outputs (e.g. summaries of the field), or use "
            "deep_ensemble / mc_dropout"
        )
    raise LaplaceInputError(
        f"Laplace(subset_of_weights={subset!r}, hessian={hessian!r}) would need about "
        f"{format_bytes(parts['total'])} ({what}: {format_bytes(parts[worst])}), over the "
        f"limit of {format_bytes(limit)} ({source}); nothing was allocated. {advice}",
        parameter="hessian",
    )


# -- data -------------------------------------------------------------------------------------
class Batches:
    """The ``(x, y)`` batches laplace-torch reads (targets standardised, labels int64).

    A stand-in for a ``DataLoader``: laplace-torch iterates it and reads
    ``len(loader.dataset)``. Samples ``idx`` in order, ``batch_size`` at a time; a
    ``DataLoader`` source is read as it comes.
    """

    def __init__(
        self, source: Source, idx: np.ndarray | None, batch_size: int, device: torch.device
    ) -> None:
        self.source, self.idx, self.batch_size, self.device = source, idx, batch_size, device
        n = source.n if source.kind == "loader" or idx is None else len(idx)
        self.dataset = range(n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.source.kind == "loader":
            for batch in self.source.loader:  # type: ignore[union-attr]
                yield self.source.labelled(batch[0], batch[1], self.device)
            return
        idx = np.arange(self.source.n) if self.idx is None else self.idx
        for start in range(0, len(idx), self.batch_size):
            yield self.source.labelled(
                *self.source.read(idx[start : start + self.batch_size]), self.device
            )

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)


# -- laplace-torch ------------------------------------------------------------------------------
def build_laplace(
    model: nn.Module, task: str, subset: str, hessian: str, last_layer: str | None
) -> Any:
    """``laplace.Laplace(model, ...)`` for this configuration (not yet fitted)."""
    from laplace import Laplace as _Laplace

    kwargs: dict[str, Any] = {"last_layer_name": last_layer} if subset == "last_layer" else {}
    return _Laplace(model, task, subset_of_weights=subset, hessian_structure=hessian, **kwargs)


def _gaussian_nll(la: Any):
    """Validation loss of the grid search for regression: the mean Gaussian NLL of the
    predictive ``N(f_mu, f_var + sigma_noise**2)`` (the default, MSE, ignores the variance and
    would not depend on the prior precision of a GLM predictive)."""

    def loss(mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if var.dim() == 3:
            var = torch.diagonal(var, dim1=1, dim2=2)
        total = var + la.sigma_noise.square()
        return 0.5 * (torch.log(2 * math.pi * total) + (y - mean) ** 2 / total).mean()

    return loss


def tune(
    la: Any, task: str, prior_precision: str | float, pred: str, samples: int,
    val: Batches | None,
) -> dict[str, float]:  # fmt: skip
    """Set the prior precision (and the regression noise) of a fitted ``la``.

    Regression first sets ``sigma_noise`` to its maximum-likelihood value at the MAP (the
    root mean squared standardised residual: laplace-torch's ``loss`` is half the sum of
    squares). ``"marglik"`` then maximises laplace-torch's log marginal likelihood: for
    classification with ``optimize_prior_precision(method="marglik")``, for regression
    jointly over the prior precision and ``sigma_noise`` (laplace-torch's documented recipe,
    Adam on their logarithms). ``"gridsearch"`` calls ``optimize_prior_precision(method=
    "gridsearch")`` on the held-out batches ``val`` (negative log-likelihood; Monte Carlo
    link, as :meth:`Laplace.predict`). A number is used as it is.

    Returns
    -------
    dict
        ``prior_precision``, ``sigma_noise`` (1 for classification) and the log marginal
        likelihood before (prior precision 1) and after tuning.
    """
    if task == "regression":
        la.sigma_noise = math.sqrt(max(2.0 * float(la.loss) / (la.n_data * la.n_outputs), 1e-12))
    before = float(la.log_marginal_likelihood())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # laplace-torch's reminders about link_approx
        if prior_precision == "marglik" and task == "regression":
            log_prior = torch.zeros(1, requires_grad=True)
            log_sigma = torch.log(la.sigma_noise.detach().cpu().reshape(1)).requires_grad_()
            optim = torch.optim.Adam([log_prior, log_sigma], lr=_MARGLIK_LR)
            for _ in range(_MARGLIK_STEPS):
                optim.zero_grad()
                neg = -la.log_marginal_likelihood(log_prior.exp(), log_sigma.exp())
                neg.backward()
                optim.step()
            la.prior_precision = log_prior.detach().exp()
            la.sigma_noise = log_sigma.detach().exp()
        elif prior_precision == "marglik":
            la.optimize_prior_precision(
                pred_type=pred, method="marglik", n_steps=_MARGLIK_STEPS, lr=_MARGLIK_LR
            )
        elif prior_precision == "gridsearch":
            lo, hi, n = GRID
            la.optimize_prior_precision(
                pred_type=pred, method="gridsearch", val_loader=val,
                loss=_gaussian_nll(la) if task == "regression" else None,
                log_prior_prec_min=lo, log_prior_prec_max=hi, grid_size=int(n),
                link_approx="mc", n_samples=samples,
            )  # fmt: skip
        else:
            la.prior_precision = float(prior_precision)
    return {
        "prior_precision": float(la.prior_precision.reshape(-1)[0]),
        "sigma_noise": float(la.sigma_noise),
        "log_marginal_likelihood_initial": before,
        "log_marginal_likelihood": float(la.log_marginal_likelihood()),
    }


# -- checks before training -----------------------------------------------------------------
def preflight(
    module: nn.Module, source: Source, device: torch.device, *, task: str, subset: str,
    hessian: str, samples: int, batch_size: int, max_memory: int | None,
) -> str | None:  # fmt: skip
    """The checks that need no training: output width, heteroscedastic heads, the last layer
    and the memory estimate (on an untrained copy of ``module`` and two training inputs).

    Returns
    -------
    str or None
        The last layer's name (last-layer Laplace).
    """
    model = copy.deepcopy(module).to(device).eval()
    probe = source.probe(device)
    with torch.no_grad():
        out = model(probe)
    if out.dim() != 2 or out.shape[0] != len(probe):
        raise ValueError(
            f"The model must map inputs of shape {tuple(probe.shape)} to (N, outputs), "
            f"got {tuple(out.shape)}"
        )
    width = int(out.shape[1])
    if task == "regression":
        d = _target_dim(source)
        if width == 2 * d:
            raise LaplaceInputError(
                f"the model outputs 2*D = {width} numbers per sample (D means and D "
                "per-sample noise scales: a heteroscedastic head); laplace-torch's "
                "regression likelihood has one noise level (sigma_noise) for every sample, "
                f"so Laplace needs a model with D = {d} outputs (the protocol builds one), "
                "or use DeepEnsemble / MCDropout for input-dependent noise",
                parameter="module",
            )
        if width != d:
            raise ValueError(
                f"A Laplace regression model must output D = {d} means per sample, got {width}"
            )
    last = None
    if subset == "last_layer":
        last = find_last_layer(model, probe)
        modules = [model.get_submodule(last)]
    else:
        modules = [
            m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))
        ]
    parts = laplace_bytes(modules, hessian, width, min(batch_size, max(source.n, 1)), samples)
    weights = sum(p.numel() for m in modules for p in m.parameters(recurse=False))
    check_memory(parts, max_memory, subset=subset, hessian=hessian, weights=weights, outputs=width)
    return last


def _target_dim(source: Source) -> int:
    """Regression targets ``D`` per sample, from the first batch."""
    if source.kind == "loader":
        y = next(iter(source.loader))[1]  # type: ignore[arg-type]
    else:
        y = source.read(np.arange(min(2, source.n)))[1]
        if y is None:
            raise TypeError("Expected training targets, got inputs only")
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    return int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
