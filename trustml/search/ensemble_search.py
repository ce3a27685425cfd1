"""``EnsembleSearch``: Optuna proposes trials, trustml trains them as lanes and selects members.

AutoDEUQ-style (Egele et al. 2022): every trial trains one network of a configuration drawn
from the search space; the ensemble is then built from the trained candidates by greedy
(Caruana) or top-K selection on a validation split of its own. See :mod:`trustml.search`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trustml.distributed import Comm, MemberCheckpoints, get_comm, greedy_owners, run_key
from trustml.exceptions import RunFailed, TrustmlInputError
from trustml.search._members import by_architecture, candidate_predictive, predict_members
from trustml.search._proposals import Proposer, optuna_version
from trustml.search._record import group_entries, selection_entry, trial_entry
from trustml.search._trials import TrainContext, TrialPlan, lane_units, train_unit, unit_weight
from trustml.search.select import OBJECTIVES, STRATEGIES, Selection, mixture_score, select_members
from trustml.search.space import SearchSpace, check_model_options
from trustml.uq import Predictive, UncertaintyEstimator
from trustml.utils.atomic import atomic_write_bytes
from trustml.utils.seeding import SeedLike, as_seed_sequence, child

__all__ = ["DEFAULT_TRAINING", "EnsembleSearch", "search_ensemble"]

log = logging.getLogger("trustml")

#: Training settings a trial uses for the keys its space does not vary.
DEFAULT_TRAINING: dict[str, Any] = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 64, "epochs": 20}
_FORMAT = "trustml.EnsembleSearch"


def _bad(name: str, expected: str, got: Any) -> TrustmlInputError:
    return TrustmlInputError(
        f"The {name!r} parameter of EnsembleSearch must be {expected}. Got {got!r} instead."
    )


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(name, "an int >= 1", value)


class EnsembleSearch(UncertaintyEstimator):
    """An ensemble built by a hyper-parameter search (an ``UncertaintyEstimator``).

    Parameters
    ----------
    build : callable
        ``build(**model_options) -> nn.Module``: a fresh, untrained network with the given
        model options (the space's model keys), e.g.
        ``functools.partial(trustml.models.build_model, "cnn", input_shape=(1, 32, 32),
        output_dim=2)``. Regression networks output ``2 * D`` numbers (``D`` with
        ``heteroscedastic=False``), classification networks ``C`` logits, as for
        :class:`~trustml.uq.DeepEnsemble`.
    space : mapping or SearchSpace
        ``{key: {distribution: arguments}}``; see :class:`~trustml.search.SearchSpace`.
    members : int, default 5
        Ensemble size K.
    trials : int, default 24
        Trials (trained candidates), at least ``members`` for ``top_k``.
    task : {"regression", "classification"}
    seed : int or SeedSequence, optional
        Everything derives from it: proposals, each trial's training (from the seed and the
        trial number only) and so the selection. Needed to resume.
    strategy : {"greedy", "top_k"}, default "greedy"
    objective : {"nll", "crps", "brier"}, default "nll"
        Of the validation mixture (``crps``: regression, ``brier``: classification); also
        each trial's score told to the proposer.
    generation : int, default 8
        Trials proposed at once; proposals see the trials of earlier generations only.
        Changing it changes the proposals.
    training : mapping, optional
        ``lr``, ``weight_decay``, ``batch_size``, ``epochs`` for the keys the space does not
        vary (defaults: :data:`DEFAULT_TRAINING`).
    folder : path-like, optional
        Where the Optuna journal and one checkpoint per finished trial live; a search
        started again with the same folder and settings resumes (finished trials are not
        retrained). Default: a temporary folder, removed after ``fit``.
    fingerprint : str, default ""
        Anything else that determines the trials (data and model identity); part of the key
        under which trials are stored.
    device : str, default "cpu"
    heteroscedastic, standardize_targets : bool, default True
        As for :class:`~trustml.uq.DeepEnsemble`.
    comm : Comm or mpi4py communicator, optional
        Ranks share the trials (see :func:`trustml.distributed.get_comm`); every rank gets the
        same ensemble.
    progress : bool, optional
        A progress bar over trials on rank 0; default: when stderr is a terminal.
    on_trial : callable, optional
        Called on rank 0 with each trial's record entry once it is told (in trial order).

    Attributes
    ----------
    record_ : dict
        ``trials`` (``number``, ``params``, ``model_options``, ``training``, ``score``,
        ``state``, ``generation``, ``group``, ``time_s``), ``groups`` (lane groups: their
        ``trials``, ``model_options``, ``batch_size``, ``epochs``, ``generation``),
        ``selection`` (``trials`` with repeats, ``counts``, ``trace``, ``best_single``) and the
        settings. Only ``time_s`` may differ between runs.
    selection_ : Selection
        Over candidate positions (``record_["candidates"]`` maps them to trial numbers).
    members_trials_ : list of int
        Trial number of member k (length K).
    trained_ : list of int
        Trials this ``fit`` trained on this rank (the others were resumed or trained elsewhere).
    n_outputs_ : int

    Examples
    --------
    >>> import functools, trustml.models as tmm
    >>> from trustml.data import load_builtin
    >>> ds = load_builtin("cosmology2d", n=96, size=8, seed=0)
    >>> build = functools.partial(tmm.build_model, "mlp", input_shape=ds.input_shape, output_dim=4)
    >>> search = EnsembleSearch(build, {"lr": {"log_uniform": [1e-3, 1e-2]}}, members=2,
    ...     trials=4, seed=0, training={"epochs": 1})
    >>> search.fit(ds.subset(range(64)), ds.subset(range(64, 96))).predict(ds.subset(range(8))).mean.shape
    (8, 2)
    """

    _fitted_attribute: ClassVar[str] = "n_outputs_"

    def __init__(
        self,
        build: Callable[..., nn.Module],
        space: Mapping[str, Any] | SearchSpace,
        *,
        members: int = 5,
        trials: int = 24,
        task: str = "regression",
        seed: SeedLike = None,
        strategy: str = "greedy",
        objective: str = "nll",
        generation: int = 8,
        training: Mapping[str, Any] | None = None,
        folder: str | os.PathLike[str] | None = None,
        fingerprint: str = "",
        device: str = "cpu",
        heteroscedastic: bool = True,
        standardize_targets: bool = True,
        comm: Any = None,
        progress: bool | None = None,
        on_trial: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.build = build
        self.space = space
        self.members = members
        self.trials = trials
        self.task = task
        self.seed = seed
        self.strategy = strategy
        self.objective = objective
        self.generation = generation
        self.training = training
        self.folder = folder
        self.fingerprint = fingerprint
        self.device = device
        self.heteroscedastic = heteroscedastic
        self.standardize_targets = standardize_targets
        self.comm = comm
        self.progress = progress
        self.on_trial = on_trial

    # -- checks ---------------------------------------------------------------------------
    def _validate_params(self) -> None:
        if not callable(self.build):
            raise _bad("build", "a callable returning an nn.Module", self.build)
        for name in ("members", "trials", "generation"):
            _positive_int(name, getattr(self, name))
        if self.task not in OBJECTIVES:
            raise _bad("task", f"one of {set(OBJECTIVES)}", self.task)
        if self.strategy not in STRATEGIES:
            raise _bad("strategy", f"one of {set(STRATEGIES)}", self.strategy)
        if self.objective not in OBJECTIVES[self.task]:
            raise _bad(
                "objective", f"one of {set(OBJECTIVES[self.task])} for {self.task}", self.objective
            )
        if self.strategy == "top_k" and self.trials < self.members:
            raise _bad("trials", f"at least members ({self.members}) for top_k", self.trials)
        unknown = sorted(set(self.training or {}) - set(DEFAULT_TRAINING))
        if unknown:
            raise _bad("training", f"a mapping with keys among {sorted(DEFAULT_TRAINING)}", unknown)

    def _defaults(self) -> dict[str, Any]:
        return {**DEFAULT_TRAINING, **(self.training or {})}

    # -- fit ------------------------------------------------------------------------------
    def fit(self, train: Any, validation: Any) -> EnsembleSearch:
        """Run the search on ``train``, select members on ``validation``; return ``self``.

        Parameters
        ----------
        train, validation : trustml.data.BaseDataset
            Training samples of every trial, and the held-out samples that score trials and
            select members (never the calibration or test split).

        Returns
        -------
        self

        Raises
        ------
        SearchSpaceError
            A malformed space, or a model option the model does not take (before training).
        RunFailed
            Every trial diverged (or too few remain for ``top_k``).
        """
        self._validate_params()
        space = SearchSpace(self.space)
        check_model_options(space, self.build)
        comm: Comm = get_comm(self.comm)
        ss = comm.bcast(as_seed_sequence(self.seed))
        defaults = self._defaults()
        key = run_key(
            {
                "space": space.to_json(),
                "seed": [str(ss.entropy), list(ss.spawn_key)],
                "generation": self.generation,
                "training": defaults,
                "task": self.task,
                "objective": self.objective,
                "heteroscedastic": self.heteroscedastic,
                "standardize_targets": self.standardize_targets,
                "device": str(self.device),
                "fingerprint": self.fingerprint,
            }
        )
        tmp = None
        folder = self.folder
        if folder is None:  # nothing to resume from: every rank keeps its trials locally
            tmp = tempfile.TemporaryDirectory(prefix="trustml-search-")
            folder = tmp.name
        try:
            self._search(space, Path(folder), key, ss, comm, train, validation, defaults)
        finally:
            comm.barrier()
            if tmp is not None:
                tmp.cleanup()
        return self

    def _search(
        self,
        space: SearchSpace,
        folder: Path,
        key: str,
        ss: np.random.SeedSequence,
        comm: Comm,
        train: Any,
        validation: Any,
        defaults: dict[str, Any],
    ) -> None:
        proposer = None
        if comm.rank == 0:
            proposer = Proposer(folder, key, space, child(ss, "search/proposals"))
        comm.barrier()
        store = MemberCheckpoints(folder / f"trials-{key}", key)
        ctx = TrainContext(
            self.build,
            train,
            validation,
            self.task,
            child(ss, "search/trials"),
            self.trials,
            str(self.device),
            self.heteroscedastic,
            self.standardize_targets,
        )
        y_val = np.asarray(validation.read(np.arange(validation.n_samples))[1])
        n_train = int(train.n_samples)
        show = sys.stderr.isatty() if self.progress is None else bool(self.progress)
        bar = tqdm(
            total=self.trials, disable=comm.rank != 0 or not show, desc="search", unit="trial"
        )
        results: dict[int, dict[str, Any]] = {}
        entries: list[dict[str, Any]] = []
        groups: list[dict[str, Any]] = []
        self.trained_: list[int] = []
        try:
            for g in range(math.ceil(self.trials / self.generation)):
                idx = range(g * self.generation, min(self.trials, (g + 1) * self.generation))
                proposed = comm.bcast(proposer.propose(idx) if proposer is not None else None)
                plans = [TrialPlan.from_params(i, proposed[i], defaults) for i in idx]
                units = lane_units(plans)
                owners = greedy_owners([unit_weight(u, n_train) for u in units], comm.size)
                mine: list[dict[str, Any]] = []
                for unit, owner in zip(units, owners, strict=True):
                    if owner == comm.rank:
                        mine += self._run_unit(unit, ctx, store)
                results.update({r["index"]: r for rs in comm.allgather(mine) for r in rs})
                new = self._tell(g, plans, units, groups, results, y_val, proposer, bar)
                entries += new
        finally:
            bar.close()
        self._finish(space, key, entries, groups, results, y_val, ctx)

    def _run_unit(
        self, unit: list[TrialPlan], ctx: TrainContext, store: MemberCheckpoints
    ) -> list[dict[str, Any]]:
        stored = {p.index: store.load(p.index) for p in unit}
        todo = [p for p in unit if stored[p.index] is None]
        if todo:
            for r in train_unit(todo, ctx):
                store.save(r["index"], r)
                stored[r["index"]] = r
                self.trained_.append(r["index"])
        return [stored[p.index] for p in unit]  # type: ignore[misc]

    def _score(self, result: Mapping[str, Any], y: np.ndarray) -> float | None:
        if result["diverged"]:
            return None
        return mixture_score(candidate_predictive([result], self.task), y, self.objective)

    def _tell(
        self,
        g: int,
        plans: list[TrialPlan],
        units: list[list[TrialPlan]],
        groups: list[dict[str, Any]],
        results: dict[int, dict[str, Any]],
        y_val: np.ndarray,
        proposer: Proposer | None,
        bar: Any,
    ) -> list[dict[str, Any]]:
        group_of = {p.index: len(groups) + u for u, unit in enumerate(units) for p in unit}
        groups += group_entries(g, units)
        entries = []
        for p in plans:
            score = self._score(results[p.index], y_val)
            entry = trial_entry(p, results[p.index], score, g, group_of[p.index])
            entries.append(entry)
            if proposer is not None:
                proposer.tell({p.index: score})
                bar.update()
                if self.on_trial is not None:
                    self.on_trial(dict(entry))
        return entries

    def _finish(
        self,
        space: SearchSpace,
        key: str,
        entries: list[dict[str, Any]],
        groups: list[dict[str, Any]],
        results: dict[int, dict[str, Any]],
        y_val: np.ndarray,
        ctx: TrainContext,
    ) -> None:
        cands = [e["number"] for e in entries if e["state"] == "complete"]
        if not cands or (self.strategy == "top_k" and len(cands) < self.members):
            raise RunFailed(
                "the hyper-parameter search",
                f"{len(entries) - len(cands)} of {len(entries)} trials diverged; "
                f"too few candidates left for {self.members} members",
            )
        preds = candidate_predictive([results[i] for i in cands], self.task)
        sel = select_members(
            preds, y_val, members=self.members, strategy=self.strategy, objective=self.objective
        )
        selection = selection_entry(sel, cands, entries)
        chosen = selection["trials"]
        self.selection_: Selection = sel
        self.members_trials_ = chosen
        self.record_ = {
            "space": space.to_json(),
            "training_defaults": self._defaults(),
            "members": self.members,
            "generation": self.generation,
            "strategy": self.strategy,
            "objective": self.objective,
            "sampler": "optuna.samplers.TPESampler",
            "optuna": optuna_version(),
            "key": key,
            "trials": entries,
            "groups": groups,
            "candidates": cands,
            "selection": selection,
        }
        self._install(
            [results[i] for i in chosen],
            [entries[i]["model_options"] for i in chosen],
        )

    def _install(self, parts: list[Mapping[str, Any]], options: list[dict[str, Any]]) -> None:
        """Build the selected members from their trials' weights."""
        self._validate_params()
        ctx = TrainContext(
            self.build, None, None, self.task, 0, 1, str(self.device),
            self.heteroscedastic, self.standardize_targets,
        )  # fmt: skip
        self.ensembles_ = by_architecture(ctx, parts, options)
        self.member_options_ = [dict(o) for o in options]
        self._parts = [{k: v for k, v in p.items() if k != "predictions"} for p in parts]
        self.n_outputs_ = int(parts[0]["n_outputs"])

    # -- prediction -----------------------------------------------------------------------
    def predict(self, x: Any, *, batch_size: int = 256) -> Predictive:
        """The selected members' predictive (member k: the k-th selected; repeats count twice).

        Parameters
        ----------
        x : array of shape (N, *input_shape), or a dataset
        batch_size : int, default 256

        Returns
        -------
        Predictive
            Regression: member means and stds ``(K, N, D)`` in data units (aleatoric and
            epistemic variance by the law of total variance). Classification: member
            probabilities ``(K, N, C)``.
        """
        self._check_fitted()
        return predict_members(self.ensembles_, len(self.member_options_), x, batch_size)

    def member_module(self, k: int, output: str = "mean") -> nn.Module:
        """Member ``k`` as a module for attribution (see ``DeepEnsemble.member_module``)."""
        self._check_fitted()
        for positions, ens in self.ensembles_:
            if k in positions:
                return ens.member_module(positions.index(k), output=output)
        raise ValueError(f"Expected a member index in 0..{len(self.member_options_) - 1}, got {k}")

    def _explain_modules(self, output: str, samples: int | None) -> list[nn.Module]:
        k = len(self.member_options_)
        if samples is not None and samples > k:
            raise ValueError(
                f"Expected samples <= {k} (the members of this ensemble), got {samples}"
            )
        return [
            self.member_module(j, output=output) for j in range(k if samples is None else samples)
        ]

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the selected members, their options and the record to one file (atomically).

        Returns
        -------
        pathlib.Path
        """
        self._check_fitted()
        payload = {
            "format": _FORMAT,
            "version": 1,
            "task": self.task,
            "heteroscedastic": self.heteroscedastic,
            "standardize_targets": self.standardize_targets,
            "options": [json.dumps(o, sort_keys=True) for o in self.member_options_],
            "parts": self._parts,
            "record": json.dumps(self.record_),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], build: Callable[..., nn.Module], *, device: str = "cpu"
    ) -> EnsembleSearch:
        """Read an ensemble written by :meth:`save`; ``build`` rebuilds the architectures."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a saved EnsembleSearch")
        record = json.loads(payload["record"])
        est = cls(
            build,
            record["space"],
            members=int(record["members"]),
            trials=len(record["trials"]),
            task=payload["task"],
            strategy=record["strategy"],
            objective=record["objective"],
            generation=int(record["generation"]),
            device=device,
            heteroscedastic=bool(payload["heteroscedastic"]),
            standardize_targets=bool(payload["standardize_targets"]),
        )
        est._install(payload["parts"], [json.loads(o) for o in payload["options"]])
        est.record_ = record
        est.members_trials_ = list(record["selection"]["trials"])
        return est


def search_ensemble(
    build: Callable[..., nn.Module],
    space: Mapping[str, Any] | SearchSpace,
    train: Any,
    validation: Any,
    **options: Any,
) -> tuple[EnsembleSearch, dict[str, Any]]:
    """Run a search and return the fitted ensemble and its record.

    ``EnsembleSearch(build, space, **options).fit(train, validation)``; see
    :class:`EnsembleSearch` for the options and the record.

    Returns
    -------
    (EnsembleSearch, dict)
    """
    est = EnsembleSearch(build, space, **options).fit(train, validation)
    return est, est.record_
