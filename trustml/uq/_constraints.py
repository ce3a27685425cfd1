"""Declared parameter constraints and the one function that checks them.

An estimator lists, for each constructor parameter, the constraints a valid value satisfies
(``{"members": [Interval(int, 1, None)], "seed": [SEED]}``); :func:`validate_parameter`
raises one scikit-learn-style error when a value satisfies none of them::

    The 'members' parameter of DeepEnsemble must be an int >= 1. Got 0 instead.

Every constraint also names a few values that break it, so a contract test can try one bad
value per declared parameter without being told which.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch

__all__ = [
    "BOOLEAN",
    "CALLABLE",
    "DEVICE",
    "SEED",
    "STR_LIST",
    "Constraint",
    "InstanceOf",
    "Interval",
    "IsCallable",
    "InvalidParameterError",
    "Options",
    "invalid_value",
    "validate_parameter",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter's value satisfies none of its declared constraints.

    Both a ``ValueError`` and a ``TypeError``: a wrong value and a wrong type are caught
    either way, as they were before the constraints were declared.
    """


class Constraint(ABC):
    """One way a value can be valid."""

    @abstractmethod
    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` satisfies this constraint."""

    @abstractmethod
    def __str__(self) -> str:
        """What a valid value is, for the error message (``"an int >= 1"``)."""

    def invalid_examples(self) -> list[Any]:
        """Values that break this constraint (for contract tests)."""
        return [object()]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


class Interval(Constraint):
    """A number in an interval.

    Parameters
    ----------
    kind : {int, Real}
        ``int``: a Python int (never a bool); ``Real``: any real number (int, float, numpy
        floating; never a bool).
    left, right : float or None
        Bounds; None is unbounded.
    closed : {"left", "right", "both", "neither"}, default "left"
        Which bounds belong to the interval.
    """

    def __init__(
        self,
        kind: type,
        left: float | None,
        right: float | None,
        *,
        closed: str = "left",
    ) -> None:
        if kind not in (int, Real):
            raise ValueError(f"Interval kind must be int or numbers.Real, got {kind!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def _in_bounds(self, v: float) -> bool:
        if math.isnan(v):
            return False
        closed_left = self.closed in ("left", "both")
        closed_right = self.closed in ("right", "both")
        if self.left is not None and (v < self.left or (v == self.left and not closed_left)):
            return False
        return self.right is None or not (v > self.right or (v == self.right and not closed_right))

    def is_satisfied_by(self, value: Any) -> bool:
        if not (_is_int(value) if self.kind is not Real else _is_real(value)):
            return False
        return self._in_bounds(float(value))

    def __str__(self) -> str:
        noun = "an int" if self.kind is not Real else "a float"
        lo = "[" if self.closed in ("left", "both") else "("
        hi = "]" if self.closed in ("right", "both") else ")"
        if self.left is not None and self.right is not None:
            return f"{noun} in {lo}{self.left:g}, {self.right:g}{hi}"
        if self.left is not None:
            return f"{noun} {'>=' if lo == '[' else '>'} {self.left:g}"
        if self.right is not None:
            return f"{noun} {'<=' if hi == ']' else '<'} {self.right:g}"
        return noun

    def invalid_examples(self) -> list[Any]:
        out: list[Any] = ["1"]
        if self.left is not None:
            out.insert(0, int(self.left) - 1 if self.kind is not Real else self.left - 1.0)
        if self.right is not None:
            out.insert(0, int(self.right) + 1 if self.kind is not Real else self.right + 1.0)
        return out


class Options(Constraint):
    """One of a few values; booleans match only ``True``/``False`` (never ``1``/``0``).

    Parameters
    ----------
    options : iterable
        The valid values, in the order the error message lists them.
    """

    def __init__(self, options: Iterable[Any]) -> None:
        self.options = tuple(options)

    def is_satisfied_by(self, value: Any) -> bool:
        return any(isinstance(value, type(o)) and value == o for o in self.options)

    def __str__(self) -> str:
        return f"one of {{{', '.join(repr(o) for o in self.options)}}}"

    def invalid_examples(self) -> list[Any]:
        return ["__invalid__", -1]


class InstanceOf(Constraint):
    """An instance of ``kind``, described as ``name`` (``"an nn.Module"``)."""

    def __init__(self, kind: type | tuple[type, ...], name: str) -> None:
        self.kind, self.name = kind, name

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        return self.name


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class _Boolean(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, bool | np.bool_)

    def __str__(self) -> str:
        return "a bool"

    def invalid_examples(self) -> list[Any]:
        return ["yes", 1]


class IsCallable(Constraint):
    """Anything callable, described as ``description``."""

    def __init__(self, description: str = "a callable") -> None:
        self.description = description

    def is_satisfied_by(self, value: Any) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return self.description

    def invalid_examples(self) -> list[Any]:
        return [3]


class _Device(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, torch.device):
            return True
        if not isinstance(value, str):
            return False
        try:
            torch.device(value)
        except (RuntimeError, TypeError, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return "a torch device or its name ('cpu', 'cuda', 'cuda:1', ...)"

    def invalid_examples(self) -> list[Any]:
        return ["no-such-device", 3]


class _Seed(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, np.random.SeedSequence):
            return True
        is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        return bool(is_int and value >= 0)

    def __str__(self) -> str:
        return "an int >= 0 or a numpy.random.SeedSequence"

    def invalid_examples(self) -> list[Any]:
        return [-1, "0", 1.5]


class _StrList(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)

    def __str__(self) -> str:
        return "a list of str"

    def invalid_examples(self) -> list[Any]:
        return ["layer", [0]]


#: ``None`` is accepted.
NONE: Constraint = _NoneConstraint()
#: ``True`` or ``False`` (Python or numpy bools).
BOOLEAN: Constraint = _Boolean()
#: Anything callable (an ``nn.Module`` included).
CALLABLE: Constraint = IsCallable()
#: A ``torch.device`` or a string ``torch.device`` accepts.
DEVICE: Constraint = _Device()
#: A seed :func:`trustml.utils.seeding.as_seed_sequence` accepts, except None (add ``None``).
SEED: Constraint = _Seed()
#: A list or tuple of str (not a bare str).
STR_LIST: Constraint = _StrList()


def _as_constraint(c: Constraint | None) -> Constraint:
    return NONE if c is None else c


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60 or "\n" in text:
        return f"an instance of {type(value).__name__}"
    return text


def validate_parameter(
    name: str, value: Any, constraints: Sequence[Constraint | None], *, owner: str
) -> Any:
    """Return ``value`` if it satisfies one of ``constraints``, else raise.

    Parameters
    ----------
    name : str
        The parameter's name.
    value : object
    constraints : sequence of Constraint or None
        ``None`` stands for "``None`` is accepted".
    owner : str
        Who takes the parameter (``"DeepEnsemble"``, ``"DeepEnsemble.fit"``).

    Returns
    -------
    object
        ``value``, unchanged.

    Raises
    ------
    InvalidParameterError
        ``The 'name' parameter of owner must be <...>. Got <value> instead.``
    """
    cs = [_as_constraint(c) for c in constraints]
    if any(c.is_satisfied_by(value) for c in cs):
        return value
    wanted = [str(c) for c in cs if c is not NONE] + (["None"] if NONE in cs else [])
    text = wanted[0] if len(wanted) == 1 else f"{', '.join(wanted[:-1])} or {wanted[-1]}"
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {text}. Got {_shown(value)} instead."
    )


def invalid_value(constraints: Sequence[Constraint | None]) -> Any:
    """A value that satisfies none of ``constraints`` (for contract tests).

    Raises
    ------
    ValueError
        No constraint offers such a value (e.g. one of them accepts anything).
    """
    cs = [_as_constraint(c) for c in constraints]
    for c in cs:
        for candidate in [*c.invalid_examples(), object()]:
            if not any(other.is_satisfied_by(candidate) for other in cs):
                return candidate
    raise ValueError(f"no value breaks every one of {[str(c) for c in cs]}")
