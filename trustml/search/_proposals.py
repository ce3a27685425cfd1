"""Trial proposals from Optuna's ask-and-tell interface, kept in a journal file that resumes.

Only one process (MPI rank 0) opens the study. Proposals are deterministic:

- Trial ``i`` (trustml's number, stored as the Optuna user attribute ``"index"``) is asked
  with a fresh ``TPESampler`` seeded from ``child(seed, "search/trial/i")``, so it depends on
  nothing but the seed, ``i`` and the finished trials in the storage.
- Trials run in generations of a fixed size; nothing is told while a generation is asked or
  trained, and its trials are told in index order once all of them are trained. The trials
  a proposal sees are therefore those of the earlier generations, whatever happened before.
- Resuming: a trial already asked keeps its parameters and its Optuna number, a trial asked
  but never told is told when it finishes (so the storage ends up as an uninterrupted run's),
  and an Optuna trial created but killed before its index was stored is told ``FAIL`` (TPE
  ignores failed trials, so it changes no proposal).

A trial whose training diverged is told ``FAIL`` too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from trustml.search.space import Distribution, SearchSpace, is_primitive_choice
from trustml.utils.seeding import child

__all__ = ["Proposer", "optuna_version"]

_INDEX = "index"
JOURNAL = "optuna.journal"


def optuna_version() -> str:
    import optuna

    return str(optuna.__version__)


def _distribution(dist: Distribution) -> Any:
    from optuna import distributions as od

    if dist.kind == "choice":
        choices = dist.choices or ()
        if is_primitive_choice(dist):
            return od.CategoricalDistribution(list(choices))
        return od.CategoricalDistribution([json.dumps(c) for c in choices])
    if dist.kind == "int":
        return od.IntDistribution(int(dist.low or 0), int(dist.high or 0), log=dist.log)
    return od.FloatDistribution(float(dist.low or 0.0), float(dist.high or 0.0), log=dist.log)


def _decode(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, dist in space.items():
        value = params[key]
        if dist.kind == "choice" and not is_primitive_choice(dist):
            value = json.loads(value)
        elif dist.kind == "int":
            value = int(value)
        elif dist.kind != "choice":
            value = float(value)
        out[key] = value
    return out


class Proposer:
    """One Optuna study in ``folder/optuna.journal``, named after the search's ``key``.

    Parameters
    ----------
    folder : path-like
        Where the journal lives (created).
    key : str
        A hash of everything that determines the trials; another key is another study, so a
        changed search never resumes from stale trials.
    space : SearchSpace
    seed : SeedSequence
        The search seed.
    """

    def __init__(self, folder: str | Path, key: str, space: SearchSpace, seed: Any) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.space, self.seed = space, seed
        self._dists = {k: _distribution(d) for k, d in space.items()}
        storage = JournalStorage(JournalFileBackend(str(folder / JOURNAL)))
        logger = logging.getLogger("optuna")
        level = logger.level
        logger.setLevel(logging.WARNING)  # no "Trial 3 finished ..." lines per trial
        try:
            self.study = optuna.create_study(
                storage=storage,
                study_name=f"trustml-search-{key}",
                direction="minimize",
                load_if_exists=True,
            )
        finally:
            logger.setLevel(level)
        self._fail_orphans()

    def _fail_orphans(self) -> None:
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if _INDEX not in t.user_attrs:
                self.study.tell(t.number, state=TrialState.FAIL)

    def _by_index(self) -> dict[int, Any]:
        found: dict[int, Any] = {}
        for t in self.study.get_trials(deepcopy=False):
            i = t.user_attrs.get(_INDEX)
            if i is not None and int(i) not in found:
                found[int(i)] = t
        return found

    def propose(self, indices: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Parameters of trials ``indices`` (asked now, or as asked before a restart)."""
        import optuna

        known = self._by_index()
        out = {}
        for i in indices:
            trial = known.get(i)
            if trial is None:
                entropy = child(self.seed, f"search/trial/{i}").generate_state(1, np.uint32)
                self.study.sampler = optuna.samplers.TPESampler(seed=int(entropy[0]))
                asked = self.study.ask(fixed_distributions=self._dists)
                asked.set_user_attr(_INDEX, int(i))
                params = asked.params
            else:
                params = trial.params
            out[i] = _decode(self.space, params)
        return out

    def finished(self) -> dict[int, float | None]:
        """Trials already told: their value, or ``None`` for a diverged trial."""
        from optuna.trial import TrialState

        out: dict[int, float | None] = {}
        for i, t in self._by_index().items():
            if t.state == TrialState.COMPLETE:
                out[i] = float(t.value)
            elif t.state == TrialState.FAIL:
                out[i] = None
        return out

    def tell(self, results: dict[int, float | None]) -> None:
        """Tell finished trials in index order (``None``: diverged, told ``FAIL``)."""
        from optuna.trial import TrialState

        known = self._by_index()
        logger = logging.getLogger("optuna")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            for i in sorted(results):
                trial = known[i]
                if trial.state != TrialState.RUNNING:
                    continue  # told before a restart
                value = results[i]
                if value is None:
                    self.study.tell(trial.number, state=TrialState.FAIL)
                else:
                    self.study.tell(trial.number, float(value))
        finally:
            logger.setLevel(level)
