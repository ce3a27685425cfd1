"""The uncertainty methods of a protocol: build, check and fit each one, over MPI ranks.

A deep ensemble spreads its members over the ranks (vectorized on each, checkpointed one by
one). The single-network methods (Bayes by SVI, NUTS, MC dropout) are fitted from the same
seed on every rank, so every rank holds the identical model and predictions and attributions
can still be sharded; their cost does not shrink with the rank count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.data import BaseDataset
from trustml.distributed import Comm, MemberCheckpoints, run_key
from trustml.exceptions import ProtocolError
from trustml.protocol._parallel import train_ensemble
from trustml.protocol.schema import Protocol, UncertaintySpec
from trustml.utils.seeding import child

__all__ = [
    "check_method",
    "fit_method",
    "predict_options",
    "history",
    "diagnostics",
    "posterior_netcdf",
    "NUTS_MAX_WEIGHTS",
]

log = logging.getLogger("trustml")

#: NUTS explores the full joint posterior of every weight: beyond this many it takes hours.
NUTS_MAX_WEIGHTS = 5000
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def where(protocol: Protocol, i: int) -> str:
    """The key path of method ``i`` in error messages."""
    return f"uncertainty[{i}]" if len(protocol.methods) > 1 else "uncertainty"


def check_method(protocol: Protocol, i: int, probe: nn.Module) -> None:
    """Protocol errors a method would only hit after training starts, raised up front."""
    spec = protocol.methods[i]
    at = where(protocol, i)
    if spec.method == "mc_dropout":
        rates = [m.p for m in probe.modules() if isinstance(m, _DROPOUT)]
        if not any(p > 0 for p in rates):
            raise ProtocolError(
                "mc_dropout needs a model with dropout layers (p > 0); "
                + ("the builtin models take options: {dropout: 0.1}" if protocol.model.builtin
                   else "the factory's model has none"),
                key=f"{at}.method" if protocol.model.factory else "model.options.dropout",
            )  # fmt: skip
    if spec.method == "bayes_nuts":
        n = sum(p.numel() for p in probe.parameters())
        if n > NUTS_MAX_WEIGHTS:
            raise ProtocolError(
                f"bayes_nuts suits small networks (<= {NUTS_MAX_WEIGHTS} weights); this model "
                f"has {n}. Use bayes_svi (optionally with bayesian_layers) or a smaller model",
                key=f"{at}.method",
            )
    if spec.method == "bayes_svi" and spec.bayesian_layers:
        names = [n for n, _ in probe.named_modules() if n]
        for j, prefix in enumerate(spec.bayesian_layers):
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                raise ProtocolError(
                    f"no layer of the model is named {prefix!r}; layers: "
                    + ", ".join(n for n in names if "." not in n or n.count(".") == 1)[:300],
                    key=f"{at}.bayesian_layers[{j}]",
                )


def predict_options(spec: UncertaintySpec) -> dict[str, Any]:
    """Keyword arguments of the fitted model's ``predict`` for this method."""
    return {"samples": spec.draws} if spec.method in ("bayes_svi", "bayes_nuts") else {}


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
) -> Any:
    """Fit uncertainty method ``i`` of the protocol on the training split.

    Returns the fitted ``DeepEnsemble``, ``BayesianNN`` or ``MCDropout`` (on every rank).
    Method ``i`` > 0 draws from its own child seed, so adding a comparison never changes the
    primary method's numbers.
    """
    from trustml.uq import BayesianNN, DeepEnsemble, MCDropout

    spec = protocol.methods[i]
    seed = protocol.seed if i == 0 else child(protocol.seed, f"method/{spec.name}")
    t = spec.train
    n = len(train)
    if spec.method == "deep_ensemble":
        key = run_key(
            {
                "seed": protocol.seed,
                "data": fingerprint,
                "split": protocol.data.split.model_dump(),
                "task": protocol.task,
                "model": protocol.model.model_dump(),
                "uncertainty": spec.model_dump(),
                "index": i,
                "device": device.type,
            }
        )
        store = (
            MemberCheckpoints(checkpoint_dir / spec.name, key) if checkpoint_dir is not None else None
        )
        if comm.rank == 0:
            log.info(
                "%s: training a %d-member deep ensemble on %d samples%s",
                spec.name, spec.members, n, f" over {comm.size} ranks" if comm.size > 1 else "",
            )  # fmt: skip
        ensemble = DeepEnsemble(
            make_model, members=spec.members, task=protocol.task, seed=seed, device=device
        )
        options = {
            "epochs": t.epochs,
            "batch_size": t.batch_size,
            "lr": t.lr,
            "weight_decay": t.weight_decay,
            "progress": progress,
        }
        return train_ensemble(ensemble, train, options, comm=comm, checkpoints=store)

    if comm.rank == 0:
        log.info("%s: fitting %s on %d samples", spec.name, spec.method, n)
    module = make_model()
    if spec.method == "mc_dropout":
        model = MCDropout(module, samples=spec.draws, task=protocol.task, seed=seed, device=device)
        return model.fit(
            train, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
            weight_decay=t.weight_decay, progress=progress,
        )  # fmt: skip
    bnn = BayesianNN(
        module,
        task=protocol.task,
        inference="svi" if spec.method == "bayes_svi" else "nuts",
        prior_scale=spec.prior_scale,
        guide=spec.guide,
        bayesian_layers=spec.bayesian_layers,
        seed=seed,
        device=device,
    )
    if spec.method == "bayes_svi":
        if t.weight_decay:
            raise ProtocolError(
                "bayes_svi has a prior instead of weight decay; set prior_scale",
                key=f"{where(protocol, i)}.train.weight_decay",
            )
        return bnn.fit(train, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, progress=progress)
    return bnn.fit(
        train, num_samples=spec.num_samples, warmup=spec.warmup, chains=spec.chains,
        progress=progress, comm=comm,
    )  # fmt: skip


def history(model: Any) -> dict[str, Any]:
    """Training curves: ``{"loss": [[per epoch] per member]}`` (ensembles, with
    ``val_loss`` when present) or ``{"loss": [per epoch]}``; ``{}`` for NUTS."""
    return {k: v for k, v in (getattr(model, "history_", None) or {}).items()}


def diagnostics(model: Any, x: np.ndarray, samples: int | None = None) -> dict[str, Any] | None:
    """ArviZ R-hat / ESS / divergences of the posterior predictive at ``x`` (Bayesian
    methods) over the protocol's ``samples`` draws (SVI) or every kept draw (NUTS), as JSON
    numbers; ``None`` for other methods."""
    from trustml.uq import BayesianNN

    if not isinstance(model, BayesianNN):
        return None
    d = model.diagnostics(x, samples=samples if model.inference == "svi" else None)
    table = d["summary"]

    def num(v: Any) -> float | None:
        v = float(v)
        return v if np.isfinite(v) else None

    rows = [
        {
            "quantity": str(name),
            "mean": num(row["mean"]),
            "sd": num(row["sd"]),
            "rhat": num(row["r_hat"]),
            "ess_bulk": num(row["ess_bulk"]),
            "ess_tail": num(row["ess_tail"]),
        }
        for name, row in table.iterrows()
    ]
    return {
        "inference": model.inference,
        "chains": int(d["chains"]),
        "draws": int(d["draws"]),
        "rhat_max": num(d["r_hat_max"]),
        "ess_bulk_min": num(d["ess_bulk_min"]),
        "ess_tail_min": num(d["ess_tail_min"]),
        "divergences": int(d["divergences"]) if model.inference == "nuts" else None,
        "table": rows,
    }


def posterior_netcdf(model: Any) -> bytes | None:
    """A Bayesian method's ArviZ ``InferenceData`` (posterior over the weights, posterior
    predictive, sample stats) as netCDF-4 bytes (h5netcdf); ``None`` for other methods."""
    from trustml.uq import BayesianNN

    if not isinstance(model, BayesianNN):
        return None
    import tempfile

    idata = model.to_inference_data()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "posterior.nc"
        idata.to_netcdf(str(path), engine="h5netcdf")
        return path.read_bytes()
