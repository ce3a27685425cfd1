"""The training settings every uncertainty method's ``fit`` takes, declared and checked once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from numbers import Real
from typing import Any

from trustml.uq._constraints import BOOLEAN, Constraint, Interval, validate_parameter

__all__ = ["TRAIN_CONSTRAINTS", "TrainSettings", "check_fit_options", "train_settings"]

#: Constraints of the ``fit`` keywords the methods share; a method adds its own (e.g. SVI's
#: ``particles``) through :func:`check_fit_options`.
TRAIN_CONSTRAINTS: dict[str, list[Constraint | None]] = {
    "epochs": [Interval(int, 1, None)],
    "batch_size": [Interval(int, 1, None)],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "validation": [Interval(Real, 0, 1, closed="left")],
    "patience": [None, Interval(int, 1, None)],
    "progress": [None, BOOLEAN],
}


@dataclass(frozen=True)
class TrainSettings:
    """Validated training settings of one ``fit``.

    Attributes
    ----------
    epochs, batch_size : int
        Passes over the data, and samples per minibatch.
    lr, weight_decay : float
        Adam's learning rate and L2 penalty.
    validation : float
        Fraction of the samples held out for validation (deep ensembles).
    patience : int or None
        Early stopping after this many epochs without improvement (deep ensembles).
    progress : bool or None
        Progress bar; None: only when stderr is a terminal.
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    validation: float = 0.0
    patience: int | None = None
    progress: bool | None = None


_FIELDS = {f.name for f in fields(TrainSettings)}


def check_fit_options(
    owner: str,
    options: Mapping[str, Any],
    extra: Mapping[str, Sequence[Constraint | None]] | None = None,
) -> dict[str, Any]:
    """Check every ``fit`` keyword in ``options`` against its declared constraints.

    Parameters
    ----------
    owner : str
        ``"DeepEnsemble.fit"``, for the messages.
    options : mapping of str to object
        The keywords as given.
    extra : mapping of str to constraints, optional
        Constraints of the method's own keywords, beyond :data:`TRAIN_CONSTRAINTS`.

    Returns
    -------
    dict
        ``options``, unchanged.
    """
    table = {**TRAIN_CONSTRAINTS, **(extra or {})}
    for name, value in options.items():
        validate_parameter(name, value, table[name], owner=owner)
    return dict(options)


def train_settings(owner: str, **options: Any) -> TrainSettings:
    """Validate the shared training keywords of a ``fit`` and return them as settings.

    Parameters
    ----------
    owner : str
        ``"MCDropout.fit"``, for the messages.
    **options
        Any of the fields of :class:`TrainSettings` (``epochs``, ``batch_size`` and ``lr``
        are required).

    Returns
    -------
    TrainSettings
        Numbers converted to ``float`` where the optimizer wants them.
    """
    unknown = sorted(set(options) - _FIELDS)
    if unknown:
        raise TypeError(f"{owner} got unexpected training option(s) {unknown}")
    check_fit_options(owner, options)
    for name in ("lr", "weight_decay", "validation"):
        if name in options:
            options[name] = float(options[name])
    return TrainSettings(**options)
