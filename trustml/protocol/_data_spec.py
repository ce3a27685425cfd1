"""The ``data`` mapping of a protocol: the source, the split and the distribution shifts.

A shift is one shifted test set (``data.shifts.NAME: {options: {...}}`` or an ``hdf5``
source) or a *ladder*: one named shift at ordered intensity levels, each level a test set
that every compared method is scored on.

- ``{option: shift, levels: [0, 1, 2, 3, 4]}`` sweeps a builtin dataset option (the main
  dataset's builtin unless ``builtin`` says otherwise; ``options`` fix the others, e.g. ``n``);
- ``{corruption: noise, levels: [0.1, 0.2, 0.4]}`` corrupts the main test split at each level
  with :func:`trustml.data.corrupt` (``channels`` restricts it to some channels).

``data.shifts`` is a mapping from name to shift, or a list of shifts that each carry a
``name`` (the form of the design document); both give the same protocol.

``data.loader`` says how deep ensembles read their training data (:class:`LoaderSpec`), and
``data.stage`` names a node-local folder the training files are copied to first
(:mod:`trustml.protocol._loader`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, Strict, field_validator, model_validator

from trustml.protocol._fields import (
    LABEL,
    Fraction,
    KeyedError,
    NonNegativeInt,
    PositiveInt,
    StrictModel,
    _integer,
)
from trustml.protocol._names import CORRUPTION_NAMES

__all__ = [
    "Criterion",
    "DataSpec",
    "HDF5Source",
    "LevelValue",
    "LoaderSpec",
    "ShiftSpec",
    "Split",
    "check_criterion",
    "check_examples_source",
    "level_label",
    "parse_criterion",
]


def _level(value: Any) -> Any:
    # One clear message for anything that is neither a number nor a list of numbers.
    items = value if isinstance(value, list) else [value]
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"a level is a number or a list of numbers, got {value!r}")
        if not math.isfinite(v):
            raise ValueError(f"a level must be finite, got {value!r}")
    if isinstance(value, list) and not value:
        raise ValueError("a list level needs at least one number")
    return value


#: One ladder level: a number, or a list of numbers for a range option (e.g. ``[3.0, 3.5]``).
#: Levels are floats; a whole number is handed to a builtin option as an int.
LevelValue = Annotated[float | list[float], BeforeValidator(_level)]


def level_label(level: Any) -> str:
    """How a level is written in acceptance keys, tables and figures: ``3``, ``0.4``, ``3-3.5``."""
    if isinstance(level, list | tuple):
        return "-".join(format(float(v), "g") for v in level)
    return format(float(level), "g")


@dataclass(frozen=True)
class Criterion:
    """An acceptance key taken apart: ``metric[@label][@shift:NAME[:LEVEL]]``.

    ``label`` is None for the primary method; ``shift`` None for the test split; ``level`` the
    ladder level as written (None for a single shifted set).
    """

    metric: str
    label: str | None = None
    shift: str | None = None
    level: str | None = None


def parse_criterion(key: str) -> Criterion:
    """Split an acceptance key, e.g. ``"ece@shift:warming:3"`` or ``"rmse@laplace"``.

    Raises
    ------
    ValueError
        More than one label or shift part, or an empty part.
    """
    metric, *parts = key.split("@")
    label = shift = level = None
    for part in parts:
        if part.startswith("shift:"):
            if shift is not None:
                raise ValueError("names more than one shift")
            shift, _, rest = part[len("shift:") :].partition(":")
            level = rest if _ else None
            if not shift or level == "":
                raise ValueError("write a shift as 'shift:NAME' or 'shift:NAME:LEVEL'")
        else:
            if label is not None:
                raise ValueError("names more than one method label")
            label = part
    if level is not None:
        try:
            level = format(float(level), "g")
        except ValueError:
            pass  # a range level, written as in level_label
    return Criterion(metric, label, shift, level)


def check_criterion(
    key: str, metrics: list[str], labels: list[str], shifts: dict[str, ShiftSpec]
) -> Criterion:
    """Check an acceptance key against the protocol's metrics, method labels and shifts.

    A single shifted set is scored with the primary method only, so it takes no label; a
    ladder needs one of its levels.
    """
    where = f"acceptance.{key}"
    try:
        c = parse_criterion(key)
    except ValueError as err:
        raise KeyedError(where, str(err)) from None
    if c.metric not in metrics:
        raise KeyedError(where, f"not a metric of this protocol; metrics: {', '.join(metrics)}")
    if c.label is not None and c.label not in labels:
        raise KeyedError(
            where, f"no uncertainty method is labelled {c.label!r}; labels: {', '.join(labels)}"
        )
    if c.shift is None:
        return c
    if not _check_shift(where, c, shifts).is_ladder and c.label not in (None, labels[0]):
        raise KeyedError(
            where,
            f"only the primary method ({labels[0]}) is scored on the single shift {c.shift!r}",
        )
    return c


def _check_shift(where: str, c: Criterion, shifts: dict[str, ShiftSpec]) -> ShiftSpec:
    """The shift ``c`` names, checked: it exists, and a ladder's level is one of its levels
    (a single shifted set takes none). Errors name ``where``."""
    spec = shifts.get(c.shift or "")
    if spec is None:
        raise KeyedError(
            where, f"no shift is named {c.shift!r}; shifts: {', '.join(shifts) or '(none)'}"
        )
    if spec.is_ladder and c.level not in spec.level_labels:
        raise KeyedError(
            where,
            f"name one of the levels of ladder {c.shift!r} (shift:{c.shift}:LEVEL); "
            f"levels: {', '.join(spec.level_labels)}",
        )
    if not spec.is_ladder and c.level is not None:
        raise KeyedError(where, f"shift {c.shift!r} is one test set, not a ladder; drop the level")
    return spec


def check_examples_source(source: str, shifts: dict[str, ShiftSpec]) -> Criterion:
    """Check ``attribution.examples_from`` (``shift:NAME`` or ``shift:NAME:LEVEL``) against
    the shifts."""
    where = "attribution.examples_from"
    try:
        c = parse_criterion(f"attribution@{source}")
    except ValueError as err:
        raise KeyedError(where, str(err)) from None
    _check_shift(where, c, shifts)
    return c


class HDF5Source(StrictModel):
    """``data.hdf5``: one HDF5 file (``path``) or many with the same layout (``files``).

    ``files`` is a glob pattern (``"shards/*.h5"``) or a list of paths; the files are read in
    sorted order as one dataset. Relative paths are relative to the protocol file's folder.
    """

    path: str | None = None
    files: (
        Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)] | None
    ) = None
    inputs: str = "/x"
    targets: str = "/y"
    groups: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> HDF5Source:
        if (self.path is None) == (self.files is None):
            raise ValueError("give exactly one of 'path' (one file) or 'files' (many shards)")
        return self


class Split(StrictModel):
    """Fractions of the samples for each split; they must sum to 1.

    ``validation`` (optional) is held out for model selection (a hyper-parameter search);
    calibration uses only the calibration split and the scores only the test split.
    """

    train: Fraction = 0.7
    validation: Fraction | None = None
    calibration: Fraction = 0.15
    test: Fraction = 0.15
    order: Literal["random", "temporal"] = "random"
    gap: NonNegativeInt = 0

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = sum(self.fractions.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            parts = " + ".join(self.fractions)
            raise ValueError(f"{parts} must sum to 1, got {total:.6g}")
        return self

    @property
    def fractions(self) -> dict[str, float]:
        """Split name -> fraction, in time order for a temporal split (validation after train)."""
        out = {"train": self.train}
        if self.validation is not None:
            out["validation"] = self.validation
        return {**out, "calibration": self.calibration, "test": self.test}


class ShiftSpec(StrictModel):
    """``data.shifts.NAME``: a distribution-shifted test set, or a ladder of them.

    A single shifted set: ``builtin`` defaults to the main dataset's, and ``options`` are merged
    over its options (e.g. ``{options: {shift: 1.0}}``); or give an ``hdf5`` source. Only the
    primary method is scored on it.

    A ladder (``levels`` with ``option`` or ``corruption``): every method is scored at every
    level, in the order given (increasing intensity).
    """

    builtin: str | None = None
    hdf5: HDF5Source | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    option: str | None = None
    corruption: Literal[CORRUPTION_NAMES] | None = None  # type: ignore[valid-type]
    levels: Annotated[list[LevelValue], Field(min_length=1)] | None = None
    channels: Annotated[list[NonNegativeInt], Field(min_length=1)] | None = None
    unit: Annotated[str, Field(min_length=1, max_length=40)] | None = None

    def check(self, key: str) -> None:
        """Cross-key rules; ``key`` is this shift's key (``data.shifts.NAME``)."""
        try:
            self._consistent()
        except KeyedError as err:
            raise KeyedError(f"{key}.{err.key}" if err.key else key, str(err)) from None

    def _consistent(self) -> None:
        if self.builtin is not None and self.hdf5 is not None:
            raise KeyedError("", "give at most one of 'builtin' or 'hdf5'")
        if self.hdf5 is not None and self.options:
            raise KeyedError("options", "apply to builtin datasets only")
        if self.option is not None and self.corruption is not None:
            raise KeyedError("corruption", "give 'option' or 'corruption', not both")
        ladder = self.option is not None or self.corruption is not None
        if ladder and self.levels is None:
            raise KeyedError("levels", "a ladder ('option' or 'corruption') needs its levels")
        if not ladder and self.levels is not None:
            raise KeyedError("levels", "levels sweep an 'option' or a 'corruption'; give one")
        if self.unit is not None and self.option is None:
            raise KeyedError(
                "unit", "names the unit of an 'option' ladder's levels (a corruption has its own)"
            )
        if self.channels is not None and self.corruption is None:
            raise KeyedError("channels", "applies to a 'corruption' ladder only")
        if self.corruption is not None:
            for key in ("builtin", "hdf5", "options"):
                if key in self.model_fields_set:
                    raise KeyedError(
                        key, "a corruption ladder corrupts the main test split; drop it"
                    )
        if self.option is not None:
            if self.hdf5 is not None:
                raise KeyedError("option", "sweeps a builtin dataset option, not an hdf5 source")
            if self.option in self.options:
                raise KeyedError(f"options.{self.option}", "is the option the ladder sweeps")
        if self.levels is not None:
            self._check_levels(self.levels)

    def _check_levels(self, levels: list[Any]) -> None:
        scalar = [not isinstance(v, list) for v in levels]
        if any(scalar) and not all(scalar):
            raise KeyedError("levels", "give all levels as numbers or all as lists")
        keys = [tuple(v) if isinstance(v, list) else (v,) for v in levels]
        for i in range(1, len(keys)):
            if not keys[i - 1] < keys[i]:
                raise KeyedError(
                    f"levels[{i}]",
                    f"levels must increase (the ladder's intensity order); {level_label(levels[i])}"
                    f" follows {level_label(levels[i - 1])}",
                )
        labels = [level_label(v) for v in levels]
        if len(set(labels)) != len(labels):
            raise KeyedError("levels", "two levels are written the same way")

    @property
    def is_ladder(self) -> bool:
        """Whether this shift is a ladder of levels (else one shifted test set)."""
        return self.levels is not None

    @property
    def level_labels(self) -> list[str]:
        """The levels as written in acceptance keys (``[]`` for a single shifted set)."""
        return [level_label(v) for v in self.levels or []]


class LoaderSpec(StrictModel):
    """``data.loader``: how a deep ensemble reads its training data each epoch.

    ``order: random`` reads every member's own random minibatches sample by sample (the
    order trustml has always used); ``blocks`` reads whole storage blocks (HDF5 chunks, small
    files) in windows of ``buffer`` samples, read ``prefetch`` windows ahead by a background
    thread, and every member shuffles each window (:class:`trustml.uq.BlockShuffle`);
    ``auto`` is ``blocks`` when the training split holds more than 2 GiB (from shapes, nothing
    read), else ``random``. The other methods (MC dropout, Bayesian networks, Laplace) read
    in random order whatever it says.
    """

    order: Literal["auto", "random", "blocks"] = "auto"
    buffer: PositiveInt | None = None
    prefetch: Annotated[int, Strict(), Field(ge=0, le=4), BeforeValidator(_integer)] = 1

    @model_validator(mode="after")
    def _blocks_only(self) -> LoaderSpec:
        if self.order == "random":
            for key in ("buffer", "prefetch"):
                if key in self.model_fields_set:
                    raise KeyedError(
                        f"data.loader.{key}",
                        "applies to order: blocks (or auto); order: random reads every "
                        "minibatch when it is needed",
                    )
        return self


class DataSpec(StrictModel):
    builtin: str | None = None
    hdf5: HDF5Source | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    split: Split = Field(default_factory=Split)
    shifts: dict[Annotated[str, Field(pattern=LABEL)], ShiftSpec] = Field(default_factory=dict)
    #: How the run fingerprints the main data (:meth:`trustml.data.BaseDataset.fingerprint`):
    #: every byte, or the structure and a seeded sample of chunks; ``auto`` samples above 10 GB.
    fingerprint: Literal["auto", "full", "sampled"] = "auto"
    #: How deep ensembles read the training data: random samples, or chunk-aligned blocks.
    loader: LoaderSpec = Field(default_factory=LoaderSpec)
    #: A node-local folder each rank copies its training files to before training (HDF5 only).
    stage: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("shifts", mode="before")
    @classmethod
    def _list_of_named(cls, v: Any) -> Any:
        # The list form: [{name: noise, corruption: noise, levels: [...]}, ...].
        if not isinstance(v, list):
            return v
        out: dict[Any, Any] = {}
        for i, item in enumerate(v):
            if not isinstance(item, dict) or "name" not in item:
                raise KeyedError(f"data.shifts[{i}]", "each listed shift needs a 'name'")
            rest = {k: val for k, val in item.items() if k != "name"}
            name = item["name"]
            if not isinstance(name, str):
                raise KeyedError(f"data.shifts[{i}].name", f"must be a string, got {name!r}")
            if name in out:
                raise KeyedError(f"data.shifts[{i}].name", f"two shifts are named {name!r}")
            out[name] = rest
        return out

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.builtin is None) == (self.hdf5 is None):
            raise ValueError("give exactly one of 'builtin' or 'hdf5'")
        if self.hdf5 is not None and self.options:
            raise ValueError("'options' apply to builtin datasets only")
        if self.stage is not None and self.hdf5 is None:
            raise KeyedError(
                "data.stage",
                "copies HDF5 files to a local folder; builtin data is made in memory",
            )
        if self.stage is not None and not self.stage.strip():
            raise KeyedError("data.stage", "an empty path; name a local folder")
        for name, shift in self.shifts.items():
            shift.check(f"data.shifts.{name}")
        return self
