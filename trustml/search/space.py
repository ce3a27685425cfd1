"""Search spaces: which settings a hyper-parameter search varies, and over which values.

A space is a plain mapping, as a protocol file writes it::

    {"lr": {"log_uniform": [1e-4, 1e-2]}, "batch_size": {"choice": [32, 64]},
     "epochs": {"int": [5, 20]}, "hidden": {"choice": [32, 64]}, "dropout": {"uniform": [0, 0.3]}}

Each key names one setting and holds exactly one distribution (:data:`DISTRIBUTIONS`).
:data:`TRAINING_KEYS` are optimiser settings; every other key is a model option (a builtin
model's option or a keyword argument of the user's factory), checked against the model with
:func:`check_model_options` before anything trains. Every error is a :class:`SearchSpaceError`
whose ``key`` is the dotted path of the offending entry (``"space.lr.log_uniform"``).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trustml.exceptions import TrustmlInputError

__all__ = [
    "DISTRIBUTIONS",
    "TRAINING_KEYS",
    "Distribution",
    "SearchSpace",
    "SearchSpaceError",
    "check_model_options",
]

#: The distributions a space entry may use.
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "log_uniform", "int", "choice")
#: Keys that set the optimiser and the training loop; every other key is a model option.
TRAINING_KEYS: tuple[str, ...] = ("lr", "weight_decay", "batch_size", "epochs")

_PRIMITIVE = (type(None), bool, int, float, str)


class SearchSpaceError(TrustmlInputError):
    """An invalid search space; ``key`` is the dotted path of the entry (``"space.lr"``).

    Parameters
    ----------
    message : str
        What was expected and what came.
    key : str
        Dotted path, prefixed to the message.

    Attributes
    ----------
    key, message : str
        The path and the message without it (for callers that name the key their own way).
    """

    def __init__(self, message: str, *, key: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Distribution:
    """One key's distribution.

    Attributes
    ----------
    kind : {"uniform", "log_uniform", "int", "choice"}
    low, high : float or int or None
        Bounds (inclusive) of ``uniform``, ``log_uniform`` and ``int``.
    log : bool
        ``int`` drawn uniformly on the log scale (``log_uniform`` is always log).
    choices : tuple or None
        The values of ``choice`` (any JSON values: numbers, strings, lists).
    """

    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def corners(self) -> list[Any]:
        """Values that bound what this distribution proposes (every choice, or both ends)."""
        if self.choices is not None:
            return list(self.choices)
        return [self.low, self.high]

    def to_json(self) -> dict[str, Any]:
        """The mapping this distribution was parsed from (canonical form)."""
        if self.kind == "choice":
            return {"choice": list(self.choices or ())}
        if self.kind == "int" and self.log:
            return {"int": [self.low, self.high], "log": True}
        return {self.kind: [self.low, self.high]}


def _parse_one(key: str, spec: Any) -> Distribution:
    path = f"space.{key}"
    if not isinstance(spec, Mapping) or not spec:
        raise SearchSpaceError(
            f"expected a mapping with one of {', '.join(DISTRIBUTIONS)}, got {spec!r}", key=path
        )
    kinds = [k for k in spec if k != "log"]
    unknown = [k for k in kinds if k not in DISTRIBUTIONS]
    if unknown:
        raise SearchSpaceError(
            f"unknown distribution {unknown[0]!r}; expected one of {', '.join(DISTRIBUTIONS)}",
            key=path,
        )
    if len(kinds) != 1:
        raise SearchSpaceError(
            f"expected exactly one of {', '.join(DISTRIBUTIONS)}, got {sorted(map(str, kinds))}",
            key=path,
        )
    kind = kinds[0]
    value, where = spec[kind], f"{path}.{kind}"
    log = spec.get("log", False)
    if "log" in spec and (kind != "int" or not isinstance(log, bool)):
        raise SearchSpaceError(
            "'log' is an option of 'int' only (true or false); use log_uniform for floats",
            key=f"{path}.log",
        )
    if kind == "choice":
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or not value:
            raise SearchSpaceError(f"expected a non-empty list of values, got {value!r}", key=where)
        try:
            json.dumps(list(value))
        except (TypeError, ValueError):
            raise SearchSpaceError(f"expected JSON values, got {value!r}", key=where) from None
        return Distribution("choice", choices=tuple(value))
    is_ok = _is_int if kind == "int" else _is_number
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(map(is_ok, value)):
        what = "two ints" if kind == "int" else "two finite numbers"
        raise SearchSpaceError(f"expected [low, high], {what}, got {value!r}", key=where)
    low, high = value
    if not low < high:
        raise SearchSpaceError(f"expected low < high, got [{low}, {high}]", key=where)
    if (kind == "log_uniform" or log) and low <= 0:
        raise SearchSpaceError(f"a log scale needs low > 0, got [{low}, {high}]", key=where)
    if kind == "int":
        return Distribution("int", int(low), int(high), log=bool(log))
    return Distribution(kind, float(low), float(high), log=kind == "log_uniform")


_TRAINING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda v: _is_number(v) and v > 0, "numbers > 0"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "numbers >= 0"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "ints >= 1"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "ints >= 1"),
}


def _check_training(key: str, dist: Distribution) -> None:
    ok, what = _TRAINING_RULES[key]
    if key in ("batch_size", "epochs") and dist.kind in ("uniform", "log_uniform"):
        raise SearchSpaceError(
            f"expected an int or choice distribution, got {dist.kind}", key=f"space.{key}"
        )
    bad = [v for v in dist.corners() if not ok(v)]
    if bad:
        raise SearchSpaceError(
            f"{key} takes {what}; the space reaches {bad[0]!r}", key=f"space.{key}.{dist.kind}"
        )


class SearchSpace(Mapping[str, Distribution]):
    """A validated search space: key -> :class:`Distribution`, in the order given.

    Parameters
    ----------
    spec : mapping of str to mapping
        ``{key: {distribution: arguments}}``; see the module docstring.

    Raises
    ------
    SearchSpaceError
        An empty or malformed space, an unknown distribution, ``low >= high``, a log scale
        with ``low <= 0``, an empty choice, or a training value out of range (``lr <= 0``).

    Examples
    --------
    >>> space = SearchSpace({"lr": {"log_uniform": [1e-4, 1e-2]}, "hidden": {"choice": [32, 64]}})
    >>> space.training_keys, space.model_keys
    (('lr',), ('hidden',))
    >>> SearchSpace({"lr": {"log_uniform": [0, 1]}})
    Traceback (most recent call last):
    ...
    trustml.search.space.SearchSpaceError: space.lr.log_uniform: a log scale needs low > 0, got [0, 1]
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if isinstance(spec, SearchSpace):
            self._dists: dict[str, Distribution] = dict(spec._dists)
            return
        if not isinstance(spec, Mapping) or not spec:
            raise SearchSpaceError(
                "expected a non-empty mapping of setting -> distribution, e.g. "
                "{lr: {log_uniform: [1.0e-4, 1.0e-2]}}",
                key="space",
            )
        dists = {}
        for key, sub in spec.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise SearchSpaceError(f"expected a setting name, got {key!r}", key="space")
            dists[key] = _parse_one(key, sub)
            if key in TRAINING_KEYS:
                _check_training(key, dists[key])
        self._dists = dists

    def __getitem__(self, key: str) -> Distribution:
        return self._dists[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dists)

    def __len__(self) -> int:
        return len(self._dists)

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_json()!r})"

    @property
    def training_keys(self) -> tuple[str, ...]:
        """The keys that set the optimiser and the training loop (:data:`TRAINING_KEYS`)."""
        return tuple(k for k in self._dists if k in TRAINING_KEYS)

    @property
    def model_keys(self) -> tuple[str, ...]:
        """The keys that are model options."""
        return tuple(k for k in self._dists if k not in TRAINING_KEYS)

    def to_json(self) -> dict[str, Any]:
        """The space as a plain mapping (JSON-ready, canonical)."""
        return {k: d.to_json() for k, d in self._dists.items()}


def _accepted(builder: Callable[..., Any]) -> tuple[set[str], bool] | None:
    """The keyword names ``builder`` accepts and whether it takes ``**kwargs`` (None: unknown)."""
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return None
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_model_options(space: SearchSpace, build: Callable[..., Any]) -> None:
    """Check every model key of ``space`` against the model builder, before any training.

    Parameters
    ----------
    space : SearchSpace
    build : callable
        ``build(**model_options) -> nn.Module``, the builder the search will call (a builtin,
        e.g. ``functools.partial(trustml.models.build_model, "mlp", input_shape=...,
        output_dim=...)``, or a user's factory). When its signature lists its keywords (a
        factory without ``**kwargs``), names are checked against it and nothing is built.
        Otherwise (builtins take ``**options``) the model is built once per value that bounds
        the space (every choice, both ends of a range), so the builder's own checks name an
        unknown option or a value it does not take.

    Raises
    ------
    SearchSpaceError
        ``key`` is ``space.<option>``; the message carries the builder's own.
    """
    accepted = _accepted(build)
    for key in space.model_keys:
        if accepted is not None and not accepted[1]:
            if key not in accepted[0]:
                valid = ", ".join(sorted(accepted[0])) or "none"
                raise SearchSpaceError(
                    f"the model takes no option {key!r}; its keyword arguments: {valid}",
                    key=f"space.{key}",
                )
            continue
        for value in space[key].corners():
            try:
                build(**{key: value})
            except (TrustmlInputError, TypeError, ValueError) as exc:
                raise SearchSpaceError(
                    f"the model does not take {key}={value!r} ({exc})", key=f"space.{key}"
                ) from None


def is_primitive_choice(dist: Distribution) -> bool:
    """Whether every choice is a value Optuna stores as is (None, bool, int, float, str)."""
    return all(isinstance(c, _PRIMITIVE) for c in dist.choices or ())
