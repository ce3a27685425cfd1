"""The Laplace approximation (MacKay 1992; Daxberger et al. 2021, "Laplace Redux") around a
trained network, computed by laplace-torch (imported when a ``Laplace`` is fitted or loaded)."""

from __future__ import annotations

import copy
import os
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from trustml.uq._constraints import DEVICE, SEED, Constraint, InstanceOf, Interval, Options
from trustml.uq._heads import explain_head
from trustml.uq._rng import seed_int, seeded_rng
from trustml.uq._source import Source
from trustml.uq.base import TASKS, UncertaintyEstimator
from trustml.uq.predictive import Predictive
from trustml.utils.seeding import SeedLike, as_seed_sequence, child

__all__ = ["Laplace"]

_POSITIVE: list[Constraint | None] = [Interval(int, 1, None)]
_EXPLAIN_DRAWS = 20  # default modules for attribution (it runs once per module)
#: Held out for ``prior_precision="gridsearch"`` when ``fit`` is not given ``validation``.
GRIDSEARCH_VALIDATION = 0.1


class Laplace(UncertaintyEstimator):
    """A Gaussian posterior around a trained network's weights, from laplace-torch.

    ``fit`` trains the MAP network exactly as member 0 of a :class:`DeepEnsemble` with the
    same seed and settings (Adam, targets standardised), then fits ``laplace.Laplace`` on the
    training data, tunes the prior precision and draws ``samples`` posterior weight samples
    (in mirrored pairs ``theta_MAP +/- delta``). Every draw is one function of the input:
    the members of the returned :class:`Predictive`.

    Parameters
    ----------
    module : nn.Module
        Maps ``(N, *input_shape)`` to ``(N, D)`` means (regression; see Notes) or ``(N, C)``
        logits. Deep-copied and re-initialised from ``seed``; not modified.
    subset_of_weights : {"last_layer", "all"}, default "last_layer"
        The weights the posterior covers. ``"last_layer"`` needs a model whose output comes
        straight from an ``nn.Linear``.
    hessian : {"kron", "diag", "full"}, default "kron"
        Structure of the generalised Gauss-Newton approximation of the Hessian.
    prior_precision : {"marglik", "gridsearch"} or float > 0, default "marglik"
        ``"marglik"``: maximise laplace-torch's log marginal likelihood (regression: jointly
        with the noise ``sigma_noise``). ``"gridsearch"``: the value among 21 log-spaced ones
        in ``[1e-4, 1e4]`` with the lowest negative log-likelihood on held-out training data
        (``fit``'s ``validation`` fraction, default 0.1, drawn from the seed; the MAP network
        and the Hessian use the rest; the calibration and test splits are never touched). A
        number: that precision.
    pred : {"glm", "nn"}, default "glm"
        ``"glm"``: draws of the network linearised at the MAP (laplace-torch's GLM
        predictive); ``"nn"``: the network run with sampled weights. Identical functions
        for ``subset_of_weights="last_layer"`` (the output is linear in those weights).
    samples : int, default 50
        Posterior draws S (the members of the returned ``Predictive``).
    task : {"regression", "classification"}
    seed : int or SeedSequence, optional
        The MAP network's initialisation and data order (as ensemble member 0), the
        validation split and the posterior draws.
    device : str or torch.device, default "cpu"
    max_memory : int, optional
        Bytes the approximation may use; ``fit`` refuses, before training anything, a
        configuration whose estimated need (:func:`trustml.uq._laplace_fit.laplace_bytes`:
        the Hessian structure, per-batch Jacobians of every output, the kept draws) is
        larger. Default: half the memory available when ``fit`` starts.

    Attributes
    ----------
    laplace_ : laplace.baselaplace.BaseLaplace
        The fitted laplace-torch object (standardised target units).
    model_ : nn.Module
        The MAP network (eval mode).
    tuning_ : dict
        ``prior_precision``, ``sigma_noise`` (standardised units; 1 for classification) and
        ``log_marginal_likelihood`` before (prior precision 1) and after tuning.
    history_ : dict
        The MAP training's ``{"loss": [...], "val_loss": [...]}`` per epoch.
    target_shift_, target_scale_ : ndarray of shape (D,) or None
    n_outputs_ : int
        Targets ``D`` or classes ``C``.

    Notes
    -----
    *Heteroscedastic heads are not supported.* laplace-torch's regression likelihood is a
    Gaussian with one noise level ``sigma_noise`` for every sample and target; a model
    predicting its own noise (``2 * D`` outputs) raises :class:`TrustmlInputError` naming
    the alternatives (a ``D``-output model here, or ``DeepEnsemble`` / ``MCDropout`` for
    input-dependent noise). Each draw's Gaussian has std ``sigma_noise`` (times the target
    scale): the aleatoric part; the spread of the draws is the epistemic part.

    *Memory.* Models with many outputs (a dense field) or many weights are refused before
    allocation with the estimated size; with the default limit a last-layer ``kron``
    posterior is fine for thousands of outputs, while ``full`` and ``diag`` need Jacobians
    of every output (``batch x C x P`` floats). laplace-torch has no output subsampling.

    *Attribution.* :meth:`explain_modules` gives draw ``s`` for both ``pred`` values (with
    ``"glm"`` and all weights, a ``torch.func.jvp``). *MPI runs* fit the same model on every rank.

    Examples
    --------
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    >>> la = Laplace(net, samples=20, seed=0).fit(np.random.rand(64, 3), np.random.rand(64, 1))
    >>> la.predict(np.random.rand(5, 3)).member_means.shape
    (20, 5, 1)
    """

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "module": [InstanceOf(nn.Module, "an nn.Module")],
        "subset_of_weights": [Options(("last_layer", "all"))],
        "hessian": [Options(("kron", "diag", "full"))],
        "prior_precision": [
            Options(("marglik", "gridsearch")),
            Interval(Real, 0, None, closed="neither"),
        ],
        "pred": [Options(("glm", "nn"))],
        "samples": _POSITIVE,
        "task": [Options(TASKS)],
        "seed": [None, SEED],
        "device": [DEVICE],
        "max_memory": [None, Interval(int, 1, None)],
    }

    def __init__(
        self,
        module: nn.Module,
        *,
        subset_of_weights: str = "last_layer",
        hessian: str = "kron",
        prior_precision: str | float = "marglik",
        pred: str = "glm",
        samples: int = 50,
        task: str = "regression",
        seed: SeedLike = None,
        device: str | torch.device = "cpu",
        max_memory: int | None = None,
    ) -> None:
        self.module = module
        self.subset_of_weights = subset_of_weights
        self.hessian = hessian
        self.prior_precision = prior_precision
        self.pred = pred
        self.samples = samples
        self.task = task
        self.seed = seed
        self.device = device
        self.max_memory = max_memory

    # -- fit ------------------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        validation: float | None = None,
        patience: int | None = None,
        progress: bool | None = None,
    ) -> Laplace:
        """Train the MAP network, fit the Laplace approximation, tune it and draw from it.

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader
        y : array of shape (N, D) or (N,), optional
            Regression targets or class labels, with array inputs only.
        epochs, batch_size, lr, weight_decay, patience
            The MAP training, as for :meth:`DeepEnsemble.fit`; ``batch_size`` is also the
            batch of laplace-torch's curvature pass.
        validation : float in [0, 1), optional
            Fraction of the samples held out (drawn from the seed) from the MAP training and
            the Hessian; the grid search scores on it. Default: 0.1 with
            ``prior_precision="gridsearch"``, else 0.
        progress : bool, optional
            Progress bar of the MAP training; default: only when stderr is a terminal.

        Returns
        -------
        self

        Raises
        ------
        TrustmlInputError
            Before any training: a heteroscedastic regression model (``2 * D`` outputs), no
            usable last layer, or an estimated memory need over ``max_memory``.
        """
        from trustml.uq._laplace_fit import Batches, build_laplace, preflight, tune
        from trustml.uq.ensemble import DeepEnsemble

        self._validate_params()
        device = self._device()
        if validation is None:
            validation = GRIDSEARCH_VALIDATION if self.prior_precision == "gridsearch" else 0.0
        settings = self._train_settings(
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            validation=validation, patience=patience, progress=progress,
        )  # fmt: skip
        if self.prior_precision == "gridsearch" and settings.validation == 0.0:
            raise ValueError(
                "prior_precision='gridsearch' scores on held-out data: pass validation > 0 "
                "(a fraction of the training samples), or use prior_precision='marglik'"
            )
        ss = as_seed_sequence(self.seed)
        source = Source(x, y)
        source.task = self.task
        last_layer = preflight(
            self.module, source, device, task=self.task, subset=self.subset_of_weights,
            hessian=self.hessian, samples=self.samples, batch_size=settings.batch_size,
            max_memory=self.max_memory,
        )  # fmt: skip
        ens = DeepEnsemble(
            self.module, members=1, task=self.task, seed=ss, heteroscedastic=False, device=device
        ).fit(
            x, y, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
            weight_decay=settings.weight_decay, validation=settings.validation,
            patience=settings.patience, progress=settings.progress,
        )  # fmt: skip
        member = ens.members_[0]
        net = cast(nn.Module, member.model if self.task == "regression" else member)
        source.shift, source.scale = ens.target_shift_, ens.target_scale_
        val = ens.validation_indices_
        train_idx = None if val is None else np.setdiff1d(np.arange(source.n), val)
        with seeded_rng(device, seed_int(child(ss, "laplace"))):
            la = build_laplace(net, self.task, self.subset_of_weights, self.hessian, last_layer)
            la.fit(Batches(source, train_idx, settings.batch_size, device))
            val_batches = None if val is None else Batches(source, val, settings.batch_size, device)
            tuning = tune(la, self.task, self.prior_precision, self.pred, self.samples, val_batches)
        self._install(
            net, la, last_layer, seed_int(child(ss, "draws")),
            ens.target_shift_, ens.target_scale_, ens.n_outputs_,
        )  # fmt: skip
        self.tuning_ = tuning
        self.history_ = {k: v[0] for k, v in ens.history_.items()}
        self.validation_indices_ = val
        return self

    def _install(
        self, net: nn.Module, la: Any, last_layer: str | None, draw_seed: int,
        shift: np.ndarray | None, scale: np.ndarray | None, n_outputs: int,
    ) -> None:  # fmt: skip
        from trustml.uq._laplace_draws import Draws, draw_deltas

        if last_layer is not None:
            names = [
                f"{last_layer}.{n}" for n, _ in net.get_submodule(last_layer).named_parameters()
            ]
        else:
            names = [n for n, p in net.named_parameters() if p.requires_grad]
        self.laplace_ = la
        self.model_ = net.eval()
        self.last_layer_ = last_layer
        self._draw_seed = int(draw_seed)
        self._draws = Draws(
            net, names, draw_deltas(la, self.samples, draw_seed), self.pred, last_layer
        )
        self.target_shift_ = None if shift is None else np.asarray(shift, dtype=np.float64)
        self.target_scale_ = None if scale is None else np.asarray(scale, dtype=np.float64)
        self.n_outputs_ = int(n_outputs)

    @property
    def sigma_noise_(self) -> float:
        """The regression noise std in standardised units (1 for classification)."""
        return float(self.laplace_.sigma_noise)

    # -- predict --------------------------------------------------------------------------
    def _count(self, method: str, samples: int | None) -> int:
        if samples is None:
            return self.samples
        self._check_argument(method, "samples", samples, _POSITIVE)
        if samples > self.samples:
            raise ValueError(
                f"Expected samples <= {self.samples} (the posterior draws of this Laplace), "
                f"got {samples}"
            )
        return samples

    def predict(self, x: Any, *, samples: int | None = None, batch_size: int = 256) -> Predictive:
        """The posterior draws at ``x``.

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader (targets are ignored)
        samples : int, optional
            The first ``samples`` draws (at most the ``samples`` given at construction).
        batch_size : int, default 256

        Returns
        -------
        Predictive
            Regression: draw means ``(S, N, D)`` in data units, each with std
            ``sigma_noise * target_scale``. Classification: draw logits and probabilities
            ``(S, N, C)``.
        """
        self._check_fitted()
        count = self._count("predict", samples)
        self._check_argument("predict", "batch_size", batch_size, _POSITIVE)
        outs = []
        with torch.no_grad():
            for xb in Source(x).input_batches(batch_size, self._device()):
                outs.append(self._draws.outputs(xb, count))
        if not outs:
            raise ValueError("Expected at least one sample to predict, got 0")
        out = torch.cat(outs, dim=1).double().cpu().numpy()
        if self.task == "classification":
            return Predictive.classification(member_logits=out)
        scale, shift = cast(np.ndarray, self.target_scale_), cast(np.ndarray, self.target_shift_)
        means = out * scale + shift
        stds = np.broadcast_to(self.sigma_noise_ * scale, means.shape)
        return Predictive.regression(means, stds)

    def _explain_modules(self, output: str, samples: int | None) -> list[nn.Module]:
        """Draws ``0..samples-1`` of :meth:`predict` as modules; ``samples`` defaults to the
        smaller of 20 and the ``samples`` given at construction."""
        from trustml.uq._laplace_draws import DrawModule

        count = min(_EXPLAIN_DRAWS, self.samples) if samples is None else samples
        count = self._count("explain_modules", count)
        log_sigma = float(np.log(self.sigma_noise_)) if self.task == "regression" else None
        return [
            explain_head(
                DrawModule(self._draws, s, log_sigma),
                self.task,
                self.target_shift_,
                self.target_scale_,
                output,
                heteroscedastic=False,
            )  # fmt: skip
            for s in range(count)
        ]

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the MAP weights, laplace-torch's state and the configuration to one file
        (atomically; plain tensors and containers, read with ``weights_only=True``).

        Returns
        -------
        pathlib.Path
        """
        from trustml.uq._laplace_io import write_laplace

        self._check_fitted()
        config = {k: v for k, v in self.get_params().items() if k not in ("module", "device")}
        fitted = {
            "n_outputs": self.n_outputs_,
            "target_shift": self.target_shift_,
            "target_scale": self.target_scale_,
            "last_layer": self.last_layer_,
            "draw_seed": self._draw_seed,
            "tuning": self.tuning_,
            "history": self.history_,
            "validation_indices": self.validation_indices_,
        }
        return write_laplace(path, config, fitted, self.model_, self.laplace_.state_dict())

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], module: nn.Module, *, device: str | torch.device = "cpu"
    ) -> Laplace:
        """Read a ``Laplace`` written by :meth:`save`; ``module`` rebuilds the architecture
        (``ValueError`` if the file is no saved Laplace or ``module`` differs)."""
        from trustml.uq._laplace_fit import build_laplace
        from trustml.uq._laplace_io import read_laplace

        config, fitted, map_state, la_state = read_laplace(path)
        est = cls(module, device=device, **config)
        est._validate_params()
        net = copy.deepcopy(module).to(est._device())
        try:
            net.load_state_dict(map_state)
        except RuntimeError as exc:
            raise ValueError(
                f"{path}: module has a different architecture than the saved Laplace's "
                f"({str(exc).splitlines()[0]})"
            ) from None
        la = build_laplace(net, est.task, est.subset_of_weights, est.hessian, fitted["last_layer"])
        la.load_state_dict(la_state)
        est._install(
            net, la, fitted["last_layer"], fitted["draw_seed"], fitted["target_shift"],
            fitted["target_scale"], fitted["n_outputs"],
        )  # fmt: skip
        est.tuning_ = fitted["tuning"]
        est.history_ = fitted["history"]
        est.validation_indices_ = fitted["validation_indices"]
        return est
