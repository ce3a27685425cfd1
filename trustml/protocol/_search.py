"""What a hyper-parameter search adds to a run: the two references it is compared with, and
its record in the results.

The searched ensemble (``uncertainty.search``) is compared on the test split with (b) its best
single candidate (member 0: greedy and top-K selection both start from it) and (c) a plain
ensemble of the protocol's default configuration with the same number of members, trained
from its own seed. Each is calibrated on the calibration split like the searched ensemble,
so the three rows differ only in how their members were chosen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustml.data import BaseDataset
from trustml.distributed import Comm, MemberCheckpoints, run_key
from trustml.exceptions import ProtocolError
from trustml.protocol._calibrate import calibrate
from trustml.protocol._metric_scores import quantities, score
from trustml.protocol._parallel import fit_plain_ensemble, predict_sharded
from trustml.protocol.schema import Protocol
from trustml.uq import Predictive
from trustml.utils.seeding import child

__all__ = [
    "SEARCH_CRASH_ENV",
    "SearchReferences",
    "check_search",
    "fit_default",
    "fit_search",
    "record",
    "score_comparison",
    "trial_times",
]

log = logging.getLogger("trustml")


#: (calibration, test) raw predictives of one reference (``None`` off rank 0).
SearchReferences = dict[str, tuple[Predictive | None, Predictive | None]]


def _search_builder(protocol: Protocol, input_shape: tuple[int, ...], output_dim: int) -> Any:
    """``build(**model_options) -> nn.Module`` for a search: the protocol's model with its own
    options, a trial's options overriding them."""
    import functools

    from trustml.models import build_model, load_factory

    m = protocol.model
    if m.builtin is not None:
        return functools.partial(
            build_model, m.builtin, input_shape=input_shape, output_dim=output_dim, **m.options
        )
    assert m.factory is not None  # ModelSpec holds exactly one of builtin and factory
    return functools.partial(
        load_factory(m.factory), input_shape=input_shape, output_dim=output_dim, **m.options
    )


def _output_dim(probe: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(probe(torch.zeros((1, *input_shape))).shape[-1])


def check_search(protocol: Protocol, i: int, input_shape: tuple[int, ...], output_dim: int) -> None:
    """A search's model options, checked against the model before anything trains (building
    the model once per value that bounds the space, or reading a factory's signature)."""
    spec = protocol.methods[i]
    if spec.search is None:
        return
    from trustml.search import SearchSpace, SearchSpaceError, check_model_options

    build = _search_builder(protocol, tuple(input_shape), output_dim)
    try:
        check_model_options(SearchSpace(spec.search.space), build)
    except SearchSpaceError as err:
        raise ProtocolError(err.message, key=f"{protocol.method_key(i)}.search.{err.key}") from None


#: Testing hook: a search exits hard once this many of its trials are told, as a killed job
#: would. Used by the resume tests; never set it in production.
SEARCH_CRASH_ENV = "TRUSTML_TEST_CRASH_AFTER_TRIALS"


def _crash_after(n: int) -> Callable[[dict[str, Any]], None]:
    told: list[int] = []

    def on_trial(entry: dict[str, Any]) -> None:
        told.append(entry["number"])
        if len(told) >= n:
            os._exit(75)

    return on_trial


def fit_search(protocol: Protocol, i: int, seed: Any, job: Any) -> Any:
    """Fit method ``i``'s search (``job`` is the runner's ``FitJob``; its ``validation`` split
    scores the trials and selects the members)."""
    from trustml.search import EnsembleSearch, SearchSpaceError

    spec = protocol.methods[i]
    search, t = spec.search, spec.train
    assert search is not None and job.validation is not None  # the schema checked both
    shape = tuple(job.train.input_shape)
    build = _search_builder(protocol, shape, _output_dim(job.make_model(), shape))
    folder = job.checkpoint_dir / spec.name / "search" if job.checkpoint_dir is not None else None
    if job.comm.rank == 0:
        log.info(
            "%s: searching %d trials for a %d-member ensemble on %d samples (validation %d)%s",
            spec.name, search.trials, spec.members, len(job.train), len(job.validation),
            f" over {job.comm.size} ranks" if job.comm.size > 1 else "",
        )  # fmt: skip
    est = EnsembleSearch(
        build, search.space, members=spec.members, trials=search.trials, task=protocol.task,
        seed=seed, strategy=search.select.strategy, objective=search.select.objective,
        generation=search.generation, training=t.model_dump(), folder=folder,
        fingerprint=job.fingerprint, device=str(job.device), comm=job.comm,
        progress=job.progress,
        on_trial=_crash_after(int(os.environ[SEARCH_CRASH_ENV]))
        if os.environ.get(SEARCH_CRASH_ENV) else None,
    )  # fmt: skip
    try:
        return est.fit(job.train, job.validation)
    except SearchSpaceError as err:
        raise ProtocolError(err.message, key=f"{protocol.method_key(i)}.search.{err.key}") from None


def fit_default(
    protocol: Protocol,
    i: int,
    *,
    ds: BaseDataset,
    splits: Mapping[str, np.ndarray],
    make_model: Any,
    device: Any,
    fingerprint: str,
    comm: Comm,
    checkpoint_dir: Path | None,
    progress: bool,
) -> tuple[Predictive | None, Predictive | None]:
    """Train the default-configuration ensemble of method ``i``'s size and predict the
    calibration and test splits with it (rank 0 gets the predictives)."""
    spec, t = protocol.methods[i], protocol.methods[i].train
    seed = child(protocol.seed, f"search/{spec.name}/default")
    key = run_key(
        {
            "default_of": spec.name, "data": fingerprint, "split": protocol.data.split.model_dump(),
            "task": protocol.task, "model": protocol.model.model_dump(), "members": spec.members,
            "train": t.model_dump(), "seed": protocol.seed, "device": str(device),
        }
    )  # fmt: skip
    store = (
        MemberCheckpoints(checkpoint_dir / spec.name / "default", key)
        if checkpoint_dir is not None
        else None
    )
    ensemble = fit_plain_ensemble(
        make_model, t, members=spec.members, task=protocol.task, seed=seed, device=device,
        data=ds.subset(splits["train"]), comm=comm, checkpoints=store, progress=progress,
    )  # fmt: skip
    return (
        predict_sharded(ensemble, ds, splits["calibration"], comm=comm),
        predict_sharded(ensemble, ds, splits["test"], comm=comm),
    )


def score_comparison(
    protocol: Protocol,
    searched: Mapping[str, Any],
    raw: tuple[Predictive | None, Predictive | None],
    default: tuple[Predictive | None, Predictive | None],
    y_cal: np.ndarray,
    y_test: np.ndarray,
    best_trial: int,
    members: int,
) -> dict[str, Any]:
    """The comparison rows on the test split (rank 0): ``searched`` (the method's own
    metrics), ``best_single`` and ``default``, each ``{"metrics": ...}``."""
    boot_seed = child(protocol.seed, "bootstrap")
    level = 1.0 - protocol.calibration.alpha

    def scored(cal: Predictive | None, test: Predictive | None) -> dict[str, Any]:
        assert cal is not None and test is not None  # rank 0
        calibrated = calibrate(protocol.calibration, cal, y_cal, test).test
        return score(protocol.metric_names, y_test, quantities(calibrated, level), seed=boot_seed)

    cal, test = raw
    assert cal is not None and test is not None  # rank 0
    return {
        "searched": {"metrics": dict(searched)},
        "best_single": {
            "trial": int(best_trial),
            "metrics": scored(cal.member_subset([0]), test.member_subset([0])),
        },
        "default": {"members": int(members), "metrics": scored(*default)},
    }


def record(model: Any) -> dict[str, Any] | None:
    """A search's record for results.json: everything but the trials' wall times (those go to
    the manifest, so that a re-run gives the same results.json); ``None`` without a search."""
    rec = getattr(model, "record_", None)
    if rec is None:
        return None
    out = dict(rec)
    out["trials"] = [{k: v for k, v in t.items() if k != "time_s"} for t in rec["trials"]]
    return out


def trial_times(models: Mapping[str, Any]) -> dict[str, list[float]]:
    """Method label -> the wall time of each trial of its search, in seconds (the manifest's
    ``search_trial_s``)."""
    out = {}
    for label, model in models.items():
        rec = getattr(model, "record_", None)
        if rec is not None:
            out[label] = [round(float(t.get("time_s", 0.0)), 3) for t in rec["trials"]]
    return out
