"""The uncertainty methods of a protocol: check, fit and predict each one, over MPI ranks.

:data:`METHODS` is the dispatch table, keyed by the schema's names
(:data:`trustml.protocol._names.UNCERTAINTY_METHODS`). A deep ensemble spreads its members
over the ranks (vectorized on each, checkpointed one by one). The single-network methods
(Bayes by SVI, NUTS, MC dropout, Laplace) are fitted from the same seed on every rank, so
every rank holds the identical model and predictions and attributions can still be sharded;
their cost does not shrink with the rank count.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.data import BaseDataset
from trustml.distributed import Comm, MemberCheckpoints, run_key
from trustml.exceptions import ProtocolError
from trustml.models import dropout_rates
from trustml.protocol._loader import order_key, training_order
from trustml.protocol._network import model_factory
from trustml.protocol._parallel import fit_plain_ensemble
from trustml.protocol._search import fit_search
from trustml.protocol.schema import Protocol, UncertaintySpec
from trustml.utils.seeding import child

__all__ = [
    "METHODS",
    "NUTS_MAX_WEIGHTS",
    "FitJob",
    "Method",
    "check_method",
    "diagnostics",
    "fit_method",
    "history",
    "posterior_netcdf",
    "predict_options",
]

log = logging.getLogger("trustml")

#: NUTS explores the full joint posterior of every weight: beyond this many it takes hours.
NUTS_MAX_WEIGHTS = 5000


@dataclass(frozen=True)
class FitJob:
    """What fitting any method needs besides the protocol: the data, the model and the ranks."""

    train: BaseDataset
    make_model: Callable[[], nn.Module]
    device: torch.device
    fingerprint: str
    comm: Comm
    checkpoint_dir: Path | None
    progress: bool
    validation: BaseDataset | None = None


@dataclass(frozen=True)
class Method:
    """How the runner handles one uncertainty method.

    Attributes
    ----------
    fit : callable
        ``fit(protocol, i, seed, job) -> fitted model`` (the same on every rank).
    check : callable, optional
        ``check(protocol, i, probe)`` raises the protocol errors that fitting would only hit
        after training starts (``probe`` is an untrained network of the protocol's model).
    predict_samples : bool
        Whether the fitted model's ``predict`` takes the protocol's ``samples`` draws.
    """

    fit: Callable[[Protocol, int, Any, FitJob], Any]
    check: Callable[[Protocol, int, nn.Module], None] | None = None
    predict_samples: bool = False


def check_method(protocol: Protocol, i: int, probe: nn.Module) -> None:
    """Protocol errors a method would only hit after training starts, raised up front."""
    check = METHODS[protocol.methods[i].method].check
    if check is not None:
        check(protocol, i, probe)


def predict_options(spec: UncertaintySpec) -> dict[str, Any]:
    """Keyword arguments of the fitted model's ``predict`` for this method."""
    return {"samples": spec.draws} if METHODS[spec.method].predict_samples else {}


def fit_method(
    protocol: Protocol,
    i: int,
    *,
    train: BaseDataset,
    make_model: Callable[[], nn.Module],
    device: torch.device,
    fingerprint: str,
    comm: Comm,
    checkpoint_dir: Path | None,
    progress: bool,
    seed: Any = None,
    validation: BaseDataset | None = None,
) -> Any:
    """Fit uncertainty method ``i`` of the protocol on the training split.

    Returns the fitted ``DeepEnsemble``, ``BayesianNN``, ``MCDropout`` or ``Laplace`` (on
    every rank).
    Method ``i`` > 0 draws from its own child seed, so adding a comparison never changes the
    primary method's numbers; ``seed`` overrides both (a labeling campaign's rounds).
    """
    spec = protocol.methods[i]
    if seed is None:
        seed = protocol.seed if i == 0 else child(protocol.seed, f"method/{spec.name}")
    job = FitJob(train, make_model, device, fingerprint, comm, checkpoint_dir, progress, validation)
    return METHODS[spec.method].fit(protocol, i, seed, job)


# -- checks ------------------------------------------------------------------------------------


def _check_dropout(protocol: Protocol, i: int, probe: nn.Module) -> None:
    rates = dropout_rates(probe)
    if not any(p > 0 for p in rates):
        raise ProtocolError(
            "mc_dropout needs a model with dropout layers (p > 0); "
            + ("the builtin models take options: {dropout: 0.1}" if protocol.model.builtin
               else "the factory's model has none"),
            key=f"{protocol.method_key(i)}.method" if protocol.model.factory else "model.options.dropout",
        )  # fmt: skip


def _check_nuts(protocol: Protocol, i: int, probe: nn.Module) -> None:
    n = sum(p.numel() for p in probe.parameters())
    if n > NUTS_MAX_WEIGHTS:
        raise ProtocolError(
            f"bayes_nuts suits small networks (<= {NUTS_MAX_WEIGHTS} weights); this model "
            f"has {n}. Use bayes_svi (optionally with bayesian_layers) or a smaller model",
            key=f"{protocol.method_key(i)}.method",
        )


def _check_svi(protocol: Protocol, i: int, probe: nn.Module) -> None:
    spec = protocol.methods[i]
    if not spec.bayesian_layers:
        return
    names = [n for n, _ in probe.named_modules() if n]
    for j, prefix in enumerate(spec.bayesian_layers):
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise ProtocolError(
                f"no layer of the model is named {prefix!r}; layers: "
                + ", ".join(n for n in names if "." not in n or n.count(".") == 1)[:300],
                key=f"{protocol.method_key(i)}.bayesian_layers[{j}]",
            )


def _check_laplace(protocol: Protocol, i: int, probe: nn.Module) -> None:
    # The exact check (the output must come straight from an nn.Linear) needs a forward
    # pass and runs at the start of the fit, before any training; this one needs none.
    spec = protocol.methods[i]
    if spec.subset_of_weights == "last_layer" and not any(
        isinstance(m, nn.Linear) for m in probe.modules()
    ):
        raise ProtocolError(
            "last-layer Laplace needs a model whose output comes from an nn.Linear layer, "
            "and this model has none; use subset_of_weights: all",
            key=f"{protocol.method_key(i)}.subset_of_weights",
        )


# -- fitting -----------------------------------------------------------------------------------


def _fit_ensemble(protocol: Protocol, i: int, seed: Any, job: FitJob) -> Any:
    spec = protocol.methods[i]
    if spec.search is not None:
        return fit_search(protocol, i, seed, job)
    key = run_key(
        {
            "seed": protocol.seed,
            "data": job.fingerprint,
            "split": protocol.data.split.model_dump(),
            "task": protocol.task,
            "model": protocol.model.model_dump(),
            "uncertainty": spec.model_dump(),
            "index": i,
            "device": job.device.type,
            # Another group size changes a member's numbers (float rounding): never resume
            # from its checkpoints. D = 1 keeps the key it always had.
            **({"parallel": protocol.parallel.data} if protocol.parallel.data > 1 else {}),
            **order_key(protocol, job.train),  # data.loader: blocks change the numbers
        }
    )
    folder = job.checkpoint_dir
    store = MemberCheckpoints(folder / spec.name, key) if folder is not None else None
    if job.comm.rank == 0:
        log.info(
            "%s: training a %d-member deep ensemble on %d samples%s", spec.name, spec.members,
            len(job.train), f" over {job.comm.size} ranks" if job.comm.size > 1 else "",
        )  # fmt: skip
    return fit_plain_ensemble(
        job.make_model, spec.train, members=spec.members, task=protocol.task, seed=seed,
        device=job.device, data=job.train, comm=job.comm, checkpoints=store,
        progress=job.progress, data_parallel=protocol.parallel.data,
        order=training_order(protocol, job.train, seed),
    )  # fmt: skip


def _network(protocol: Protocol, i: int, job: FitJob) -> nn.Module:
    """The one network a single-network method fits (logged on rank 0)."""
    spec = protocol.methods[i]
    if job.comm.rank == 0:
        log.info("%s: fitting %s on %d samples", spec.name, spec.method, len(job.train))
    return job.make_model()


def _fit_dropout(protocol: Protocol, i: int, seed: Any, job: FitJob) -> Any:
    from trustml.uq import MCDropout

    spec, t = protocol.methods[i], protocol.methods[i].train
    module = _network(protocol, i, job)
    model = MCDropout(module, samples=spec.draws, task=protocol.task, seed=seed, device=job.device)
    return model.fit(
        job.train, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
        weight_decay=t.weight_decay, progress=job.progress,
    )  # fmt: skip


def _bayesian(protocol: Protocol, i: int, seed: Any, job: FitJob, inference: str) -> Any:
    from trustml.uq import BayesianNN

    spec = protocol.methods[i]
    return BayesianNN(
        _network(protocol, i, job),
        task=protocol.task,
        inference=inference,
        prior_scale=spec.prior_scale,
        guide=spec.guide,
        bayesian_layers=spec.bayesian_layers,
        seed=seed,
        device=job.device,
    )


def _fit_svi(protocol: Protocol, i: int, seed: Any, job: FitJob) -> Any:
    bnn, t = _bayesian(protocol, i, seed, job, "svi"), protocol.methods[i].train
    if t.weight_decay:
        raise ProtocolError(
            "bayes_svi has a prior instead of weight decay; set prior_scale",
            key=f"{protocol.method_key(i)}.train.weight_decay",
        )
    return bnn.fit(
        job.train, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, progress=job.progress
    )


def _fit_nuts(protocol: Protocol, i: int, seed: Any, job: FitJob) -> Any:
    spec = protocol.methods[i]
    return _bayesian(protocol, i, seed, job, "nuts").fit(
        job.train, num_samples=spec.num_samples, warmup=spec.warmup, chains=spec.chains,
        progress=job.progress, comm=job.comm,
    )  # fmt: skip


def _laplace_network(protocol: Protocol, i: int, job: FitJob) -> nn.Module:
    """The network Laplace fits: the protocol's model, with ``D`` outputs for regression
    (laplace-torch's Gaussian likelihood has one noise level, so no per-sample scales)."""
    if protocol.task == "classification":
        return _network(protocol, i, job)
    n_targets = int(np.prod(job.train.target_shape)) if job.train.target_shape else 1
    if job.comm.rank == 0:
        spec = protocol.methods[i]
        log.info("%s: fitting %s on %d samples", spec.name, spec.method, len(job.train))
    return model_factory(protocol, job.train, n_targets)()


def _fit_laplace(protocol: Protocol, i: int, seed: Any, job: FitJob) -> Any:
    from trustml.uq import Laplace, LaplaceInputError

    spec, t = protocol.methods[i], protocol.methods[i].train
    model = Laplace(
        _laplace_network(protocol, i, job),
        subset_of_weights=spec.subset_of_weights,
        hessian=spec.hessian,
        prior_precision=spec.prior_precision,
        pred=spec.pred,
        samples=spec.draws,
        task=protocol.task,
        seed=seed,
        device=job.device,
    )
    try:
        return model.fit(
            job.train, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
            weight_decay=t.weight_decay, progress=job.progress,
        )  # fmt: skip
    except LaplaceInputError as exc:
        key = "model" if exc.parameter == "module" else f"{protocol.method_key(i)}.{exc.parameter}"
        raise ProtocolError(str(exc), key=key) from None


#: The runner's uncertainty methods, keyed by the schema's names (``uncertainty.method``).
METHODS: dict[str, Method] = {
    "deep_ensemble": Method(_fit_ensemble),
    "bayes_svi": Method(_fit_svi, _check_svi, predict_samples=True),
    "bayes_nuts": Method(_fit_nuts, _check_nuts, predict_samples=True),
    "mc_dropout": Method(_fit_dropout, _check_dropout),
    "laplace": Method(_fit_laplace, _check_laplace, predict_samples=True),
}


# -- what the report shows of a fitted method --------------------------------------------------


def history(model: Any) -> dict[str, Any]:
    """Training curves: ``{"loss": [[per epoch] per member]}`` (ensembles, with
    ``val_loss`` when present) or ``{"loss": [per epoch]}``; ``{}`` for NUTS."""
    return {k: v for k, v in (getattr(model, "history_", None) or {}).items()}


def _number(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def diagnostics(model: Any, x: np.ndarray, samples: int | None = None) -> dict[str, Any] | None:
    """ArviZ R-hat / ESS / divergences of the posterior predictive at ``x`` (Bayesian
    methods) over the protocol's ``samples`` draws (SVI) or every kept draw (NUTS), as JSON
    numbers; ``None`` for other methods."""
    from trustml.uq import BayesianNN

    if not isinstance(model, BayesianNN):
        return None
    d = model.diagnostics(x, samples=samples if model.inference == "svi" else None)
    rows = [
        {
            "quantity": str(name),
            "mean": _number(row["mean"]),
            "sd": _number(row["sd"]),
            "rhat": _number(row["r_hat"]),
            "ess_bulk": _number(row["ess_bulk"]),
            "ess_tail": _number(row["ess_tail"]),
        }
        for name, row in d["summary"].iterrows()
    ]
    return {
        "inference": model.inference,
        "chains": int(d["chains"]),
        "draws": int(d["draws"]),
        "rhat_max": _number(d["r_hat_max"]),
        "ess_bulk_min": _number(d["ess_bulk_min"]),
        "ess_tail_min": _number(d["ess_tail_min"]),
        "divergences": int(d["divergences"]) if model.inference == "nuts" else None,
        "table": rows,
    }


def posterior_netcdf(model: Any) -> bytes | None:
    """A Bayesian method's ArviZ ``InferenceData`` (posterior over the weights, posterior
    predictive, sample stats) as netCDF-4 bytes (h5netcdf); ``None`` for other methods."""
    from trustml.uq import BayesianNN

    if not isinstance(model, BayesianNN):
        return None
    idata = model.to_inference_data()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "posterior.nc"
        idata.to_netcdf(str(path), engine="h5netcdf")
        return path.read_bytes()
