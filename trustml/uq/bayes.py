"""Any PyTorch model as a Bayesian neural network, with Pyro (SVI or NUTS) and ArviZ."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from trustml.distributed import Comm, get_comm
from trustml.uq._bayes_arviz import by_chain, inference_data, predictive_groups, summarize
from trustml.uq._bayes_nuts import sample_posterior, select_draws
from trustml.uq._bayes_svi import ENGINES, fit_guide, scoped
from trustml.uq._constraints import (
    DEVICE,
    SEED,
    STR_LIST,
    Constraint,
    InstanceOf,
    Interval,
    Options,
)
from trustml.uq._heads import explain_head, to_predictive
from trustml.uq._pyro_convert import (
    RegressionOrClassModel,
    bayesian_parameters,
    to_pyro_model,
)
from trustml.uq._rng import reinitialize, seed_int, seeded_rng
from trustml.uq._source import Prepared, Source, first_inputs, prepare
from trustml.uq.base import TASKS, UncertaintyEstimator
from trustml.uq.predictive import Predictive
from trustml.utils.seeding import SeedLike, as_seed_sequence, child

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    from pyro.params.param_store import StateDict

__all__ = ["BayesianNN"]

_POSITIVE: list[Constraint | None] = [Interval(int, 1, None)]
_SVI_DEFAULTS = {"epochs": 20, "batch_size": 64, "lr": 1e-3, "particles": 1, "engine": "auto"}
_NUTS_DEFAULTS = {"num_samples": 200, "warmup": 200, "chains": 2, "max_tree_depth": 8}
_SVI_DRAWS = 100
_EXPLAIN_DRAWS = 20
_N_STORED = 8  # training inputs kept for the posterior predictive of to_inference_data()


class BayesianNN(UncertaintyEstimator):
    """A scientist's ``nn.Module`` as a Bayesian neural network, built with Pyro.

    A deep copy of the module (re-initialised from ``seed``) is converted with
    ``pyro.nn.module.to_pyro_module_``; the weights of its ``Linear``, ``Conv1d/2d/3d`` and
    LSTM layers (``nn.LSTM`` or any module with LSTM-style parameters, like the builtin
    ``lstm``) get ``PyroSample`` priors ``Normal(0, prior_scale)``. Normalisation layers and
    any other parameters stay deterministic and are point-estimated by SVI.

    The output convention is ``DeepEnsemble``'s, so the two are interchangeable: regression
    models output ``2 * D`` numbers (``D`` means, then ``D`` raw scales, std =
    ``softplus(raw) + 1e-6``) and get a Normal likelihood on targets standardised with the
    training mean and std; classification models output ``C`` logits (Categorical).

    Parameters
    ----------
    module : nn.Module
        Maps ``(N, *input_shape)`` to ``(N, 2 * D)`` or ``(N, C)``. Not modified.
    task : {"regression", "classification"}
    inference : {"svi", "nuts"}
        Minibatch stochastic variational inference, or NUTS (exact MCMC, small networks).
    prior_scale : float, default 1.0
        Std of the Normal prior on every Bayesian weight (standardised target units).
    guide : {"normal", "lowrank"}
        SVI posterior family: mean-field Normal (Pyro's ``AutoNormal``, closed-form KL) or
        ``AutoLowRankMultivariateNormal`` (correlated weights; cost grows with the weights
        times the rank, about their square root).
    bayesian_layers : list of str, optional
        Module-name prefixes (``module.named_modules()`` names, e.g. ``["head"]`` or
        ``["net.4"]``) whose weights are Bayesian; the others are point-estimated. Default:
        every eligible layer. SVI only.
    init_scale : float, default 0.01
        Initial posterior std of every weight (SVI); the means start at the re-initialised
        weights.
    seed : int or SeedSequence, optional
        Initialisation, data order, SVI noise, NUTS chains and prediction draws each come
        from their own named child of ``numpy.random.SeedSequence(seed)``.
    device : str or torch.device, default "cpu"

    Attributes
    ----------
    sites_ : dict of str to tuple
        The Bayesian weights (Pyro sample sites) and their shapes.
    pyro_model_ : callable
        The Pyro model, ``pyro_model_(x, y, idx, size=N)``: its ``net`` is the converted
        module, ``y`` standardised targets (or labels) of the samples ``idx`` out of ``N``.
    guide_ : pyro.infer.autoguide.AutoGuide
        SVI: the fitted guide (``AutoNormal`` with Normal sites, or
        ``AutoLowRankMultivariateNormal``).
    history_ : dict
        SVI: ``{"loss": [negative ELBO per sample, per epoch]}``.
    svi_engine_ : str
        ``"fused"`` or ``"pyro"``; see :meth:`fit`.
    samples_ : dict of str to tensor
        NUTS: ``(chains, draws, *shape)`` per site.
    diverging_ : ndarray of bool, shape (chains, draws)
        NUTS: divergent transitions.
    acceptance_rate_ : list of float
        NUTS: mean acceptance probability of every chain.
    nuts_engine_ : str
        NUTS: ``"fused"`` (potential energy in plain torch, checked against Pyro's) or
        ``"pyro"`` (Pyro's potential, which traces the model).
    target_shift_, target_scale_ : ndarray of shape (D,) or None

    Examples
    --------
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 2))
    >>> bnn = BayesianNN(net, seed=0).fit(np.random.rand(64, 1), np.random.rand(64, 1),
    ...                                   epochs=2, progress=False)
    >>> bnn.predict(np.random.rand(5, 1), samples=10).member_means.shape
    (10, 5, 1)
    """

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "module": [InstanceOf(nn.Module, "an nn.Module")],
        "task": [Options(TASKS)],
        "inference": [Options(("svi", "nuts"))],
        "prior_scale": [Interval(Real, 0, None, closed="neither")],
        "guide": [Options(("normal", "lowrank"))],
        "bayesian_layers": [None, STR_LIST],
        "init_scale": [Interval(Real, 0, None, closed="neither")],
        "seed": [None, SEED],
        "device": [DEVICE],
    }
    _fit_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "particles": _POSITIVE,
        "engine": [Options(ENGINES)],
        "num_samples": _POSITIVE,
        "warmup": [Interval(int, 0, None)],
        "chains": _POSITIVE,
        "max_tree_depth": _POSITIVE,
    }

    def __init__(
        self,
        module: nn.Module,
        *,
        task: str = "regression",
        inference: str = "svi",
        prior_scale: float = 1.0,
        guide: str = "normal",
        bayesian_layers: Sequence[str] | None = None,
        init_scale: float = 0.01,
        seed: SeedLike = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.module = module
        self.task = task
        self.inference = inference
        self.prior_scale = prior_scale
        self.guide = guide
        self.bayesian_layers = bayesian_layers
        self.init_scale = init_scale
        self.seed = seed
        self.device = device

    # -- checks ---------------------------------------------------------------------------
    def _check_param_combinations(self) -> None:
        if self.inference == "nuts" and self.bayesian_layers is not None:
            raise ValueError(
                "bayesian_layers needs inference='svi': NUTS cannot fit point-estimated layers"
            )

    def _options(self, given: dict[str, Any]) -> dict[str, Any]:
        mine, other = (
            (_SVI_DEFAULTS, _NUTS_DEFAULTS)
            if self.inference == "svi"
            else (_NUTS_DEFAULTS, _SVI_DEFAULTS)
        )
        wrong = sorted(k for k in other if given.get(k) is not None)
        if wrong:
            raise TypeError(
                f"fit option(s) {wrong} do not apply to inference={self.inference!r}; "
                f"its options are {sorted(mine)}"
            )
        opts = {k: v if given.get(k) is None else given[k] for k, v in mine.items()}
        if self.inference == "svi":
            shared = {k: opts[k] for k in ("epochs", "batch_size", "lr")}
            self._train_settings(**shared, progress=given.get("progress"))
            self._check_fit_options({k: opts[k] for k in ("particles", "engine")})
        else:
            self._check_fit_options(opts)
        return opts

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        particles: int | None = None,
        engine: str | None = None,
        num_samples: int | None = None,
        warmup: int | None = None,
        chains: int | None = None,
        max_tree_depth: int | None = None,
        progress: bool | None = None,
        comm: Any = None,
    ) -> BayesianNN:
        """Infer the posterior over the weights from ``(x, y)``.

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader
            Like :meth:`DeepEnsemble.fit`: arrays with ``y``, or a dataset with
            ``read(indices) -> (x, y)`` read minibatch by minibatch.
        y : array of shape (N, D) or (N,), optional
            Regression targets or class labels, with array inputs only.
        epochs, batch_size, lr : SVI, default 20, 64, 1e-3
            Adam on the negative ELBO, one minibatch per step; the likelihood of a minibatch
            of ``b`` samples is scaled by ``N / b``, the KL by 1.
        particles : int, SVI, default 1
            Posterior draws averaged per step.
        engine : {"auto", "fused", "pyro"}, SVI, default "auto"
            ``"pyro"`` steps Pyro's ``TraceMeanField_ELBO`` (``Trace_ELBO`` for the low-rank
            guide). ``"fused"`` (mean-field guide) evaluates the same estimator, with the
            same random draws, in plain torch, without Pyro's per-step tracing; it is
            checked against Pyro's loss and gradients on the first minibatch. ``"auto"``
            uses ``"fused"`` when it applies and agrees, else ``"pyro"`` (with a log line).
        num_samples, warmup, chains, max_tree_depth : NUTS, default 200, 200, 2, 8
            Draws kept and warm-up steps per chain; chains run one after the other (or are
            spread over ``comm``), each from its own seed and re-initialised weights.
        progress : bool, optional
            Progress bar (with the ELBO); default: only when stderr is a terminal.
        comm : mpi4py communicator or trustml Comm, optional, NUTS
            Every rank of ``comm`` calls ``fit`` alike; each runs a block of the chains and
            all of them end with every chain's draws, the same as one process's. SVI is one
            optimisation and ignores it.

        Returns
        -------
        self
        """
        self._validate_params()
        device = self._device()
        opts = self._options(
            {
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "particles": particles,
                "engine": engine,
                "num_samples": num_samples,
                "warmup": warmup,
                "chains": chains,
                "max_tree_depth": max_tree_depth,
                "progress": progress,
            }
        )
        ss = as_seed_sequence(self.seed)
        self._ss = ss
        plain = reinitialize(self.module, seed_int(child(ss, "init"))).to(device)
        data = prepare(x, y, self.task, plain, device)
        sites = bayesian_parameters(plain, self.bayesian_layers)
        net, shapes = to_pyro_model(plain, sites, float(self.prior_scale))
        model = RegressionOrClassModel(net, self.task, data.d)
        self._store: StateDict = {"params": {}, "constraints": {}}
        self._draw_cache: dict[int, dict[str, torch.Tensor]] = {}
        if self.inference == "svi":
            self._fit_svi(model, plain, data, ss, device, opts, progress)
        else:
            self._fit_nuts(
                model, plain, data, ss, device, opts, progress,
                None if comm is None else get_comm(comm),
            )  # fmt: skip
        plain.eval()
        self._plain, self.pyro_model_ = plain, model
        self.sites_ = {n: tuple(s) for n, s in shapes.items()}
        self.target_shift_, self.target_scale_ = data.shift, data.scale
        self._stored_x = first_inputs(data.source, _N_STORED, device)
        self.n_outputs_ = data.d
        return self

    def _fit_svi(
        self,
        model: RegressionOrClassModel,
        plain: nn.Module,
        data: Prepared,
        ss: np.random.SeedSequence,
        device: torch.device,
        opts: dict[str, Any],
        progress: bool | None,
    ) -> None:
        fitted = fit_guide(
            model, plain, data, ss, device, opts, guide=self.guide,
            init_scale=float(self.init_scale), prior_scale=float(self.prior_scale),
            store=self._store, progress=progress,
        )  # fmt: skip
        self.guide_ = fitted.guide
        self._svi_loss, self._svi_params = fitted.loss_fn, fitted.params  # benchmarks.bayes_svi
        self.svi_engine_ = fitted.loss_fn.kind  # type: ignore[attr-defined]
        self.history_ = {"loss": fitted.losses}

    def _fit_nuts(
        self,
        model: RegressionOrClassModel,
        plain: nn.Module,
        data: Prepared,
        ss: np.random.SeedSequence,
        device: torch.device,
        opts: dict[str, Any],
        progress: bool | None,
        comm: Comm | None,
    ) -> None:
        with scoped(self._store):
            result = sample_posterior(
                model, plain, self.module, float(self.prior_scale), data, ss, device, opts,
                progress=progress, comm=comm,
            )  # fmt: skip
        self.samples_ = result.samples
        self.diverging_ = result.diverging
        self.acceptance_rate_ = result.acceptance_rate
        self.nuts_engine_ = result.engine

    # -- posterior draws ------------------------------------------------------------------
    def _draws(self, samples: int | None) -> dict[str, torch.Tensor]:
        """``S`` posterior draws of every site, ``(S, *shape)``; the same for the same ``S``
        (``samples``, already checked)."""
        if self.inference == "nuts":
            return select_draws(self.samples_, samples)
        samples = _SVI_DRAWS if samples is None else samples
        if samples not in self._draw_cache:
            device = self._device()
            with scoped(self._store), seeded_rng(device, seed_int(child(self._ss, "predict"))):
                with torch.no_grad():
                    draws = [self.guide_() for _ in range(samples)]
            self._draw_cache[samples] = {n: torch.stack([d[n] for d in draws]) for n in self.sites_}
        return self._draw_cache[samples]

    def _weights(self, draws: dict[str, torch.Tensor], s: int) -> dict[str, torch.Tensor]:
        fixed = {n: p.detach() for n, p in self.pyro_model_.net.named_parameters()}
        fixed.update({n: b for n, b in self.pyro_model_.net.named_buffers()})
        return {**fixed, **{n: v[s] for n, v in draws.items()}}

    @torch.no_grad()
    def _outputs(self, draws: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Raw outputs of every draw, ``(S, N, O)``."""
        k = next(iter(draws.values())).shape[0]
        return torch.stack(
            [functional_call(self._plain, self._weights(draws, s), (x,)) for s in range(k)]
        )

    # -- prediction -----------------------------------------------------------------------
    def predict(self, x: Any, *, samples: int | None = None, batch_size: int = 256) -> Predictive:
        """The posterior predictive at ``x``, one member per posterior draw.

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader (targets are ignored)
        samples : int, optional
            Posterior draws S (members). SVI: drawn from the guide, default 100. NUTS: evenly
            spaced over all chains, default all of them. Deterministic given the seed.
        batch_size : int, default 256

        Returns
        -------
        Predictive
            Regression: member means and stds ``(S, N, D)`` in data units (epistemic: spread
            of the means over draws; aleatoric: the likelihood's std). Classification:
            member logits and probabilities ``(S, N, C)``.
        """
        self._check_fitted()
        self._check_argument("predict", "samples", samples, [None, *_POSITIVE])
        self._check_argument("predict", "batch_size", batch_size, _POSITIVE)
        draws = self._draws(samples)
        outs = [
            self._outputs(draws, xb) for xb in Source(x).input_batches(batch_size, self._device())
        ]
        if not outs:
            raise ValueError("Expected at least one sample to predict, got 0")
        out = torch.cat(outs, dim=1)
        return to_predictive(
            self.task, self.n_outputs_, out, self.target_shift_, self.target_scale_
        )

    def _explain_modules(self, output: str, samples: int | None) -> list[nn.Module]:
        """One module per posterior draw: the same draws as ``predict(x, samples=samples)``;
        default 20 (attribution runs once per module)."""
        if samples is None:
            total = self.diverging_.size if self.inference == "nuts" else _EXPLAIN_DRAWS
            samples = min(_EXPLAIN_DRAWS, total)
        draws = self._draws(samples)
        k = next(iter(draws.values())).shape[0]
        modules = []
        for s in range(k):
            m = copy.deepcopy(self._plain)
            m.load_state_dict(self._weights(draws, s))
            modules.append(
                explain_head(m, self.task, self.target_shift_, self.target_scale_, output)
            )
        return modules

    # -- ArviZ ----------------------------------------------------------------------------
    def _chains(self) -> int:
        return int(self.diverging_.shape[0]) if self.inference == "nuts" else 1

    def _predictive_at(self, draws: dict[str, torch.Tensor], x: torch.Tensor) -> Predictive:
        out = self._outputs(draws, x)
        return to_predictive(
            self.task, self.n_outputs_, out, self.target_shift_, self.target_scale_
        )

    def to_inference_data(self, samples: int | None = None) -> arviz.InferenceData:
        """The posterior as an ArviZ ``InferenceData``.

        Groups: ``posterior`` (every Bayesian weight, dims ``chain``, ``draw``, then the
        weight's own; NUTS: all chains and draws; SVI: one chain of ``samples`` guide draws,
        default 100), ``posterior_predictive`` at the first (up to 8) training inputs
        (``mean`` and ``std`` ``(chain, draw, obs, target)`` in data units, or ``probs`` and
        ``logits`` ``(chain, draw, obs, class)``), ``constant_data`` (those inputs, ``x``)
        and, for NUTS, ``sample_stats`` (``diverging``, ``(chain, draw)``). Attributes name
        the inference, guide, engine and prior scale.

        Examples
        --------
        >>> idata = bnn.to_inference_data()  # doctest: +SKIP
        >>> idata.posterior["net.0.weight"].dims  # doctest: +SKIP
        ('chain', 'draw', 'net.0.weight_dim_0', 'net.0.weight_dim_1')
        """
        self._check_fitted()
        self._check_argument("to_inference_data", "samples", samples, [None, *_POSITIVE])
        nuts = self.inference == "nuts"
        draws = self._draws(None if nuts else samples)
        chains = self._chains()
        attrs: dict[str, Any] = {
            "inference": self.inference,
            "guide": "none" if nuts else self.guide,
            "engine": self.nuts_engine_ if nuts else self.svi_engine_,
            "prior_scale": float(self.prior_scale),
        }
        if nuts:
            attrs["acceptance_rate"] = [float(a) for a in self.acceptance_rate_]
        return inference_data(
            {n: by_chain(v, chains) for n, v in draws.items()},
            predictive_groups(self._predictive_at(draws, self._stored_x), chains),
            self._stored_x.cpu().numpy(),
            task=self.task,
            sample_stats={"diverging": self.diverging_} if nuts else None,
            attrs=attrs,
        )

    def diagnostics(self, x: Any = None, *, samples: int | None = None) -> dict[str, Any]:
        """R-hat, effective sample sizes and divergences of the posterior predictive mean.

        Parameters
        ----------
        x : array of shape (M, *input_shape), optional
            Where to evaluate the predictive mean (class probabilities for classification);
            default: the inputs stored by :meth:`to_inference_data`. Keep M small.
        samples : int, optional
            SVI: the guide draws to summarise (default 100, as :meth:`predict`). NUTS: every
            kept draw of every chain (this argument must be left out).

        Returns
        -------
        dict
            ``summary``: ``arviz.summary`` DataFrame (one row per point and output; columns
            ``mean``, ``sd``, ..., ``ess_bulk``, ``ess_tail``, ``r_hat``); ``r_hat_max``,
            ``ess_bulk_min``, ``ess_tail_min``: the worst over the rows (R-hat is NaN for
            SVI: one chain of independent draws); ``divergences``: divergent NUTS
            transitions after warm-up (0 for SVI); ``chains`` and ``draws``.
        """
        self._check_fitted()
        self._check_argument("diagnostics", "samples", samples, [None, *_POSITIVE])
        device = self._device()
        xs = self._stored_x if x is None else next(Source(x).input_batches(1 << 30, device))
        if samples is not None and self.inference == "nuts":
            raise ValueError("diagnostics(samples=...) applies to SVI; NUTS uses every kept draw")
        draws = self._draws(samples)
        groups = predictive_groups(self._predictive_at(draws, xs), self._chains())
        name = "mean" if self.task == "regression" else "probs"
        nuts = self.inference == "nuts"
        return summarize(groups[name], name, int(self.diverging_.sum()) if nuts else 0)
