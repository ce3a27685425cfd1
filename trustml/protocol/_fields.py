"""The field types of the protocol schema: strict integers, finite numbers, the strict base model.

Every model forbids unknown keys; number keys never take a bool; integer keys take integers only.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

__all__ = [
    "AtLeastTwo",
    "Float",
    "Fraction",
    "KeyedError",
    "LABEL",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Seed",
    "StrictModel",
]

#: A method label or a shift name: what may follow ``@`` in an acceptance key.
LABEL = r"^[A-Za-z][A-Za-z0-9_\-]*$"


def _no_bool(value: Any) -> Any:
    # YAML's true/false are Python bools, and bool is an int: pydantic's lax float would take
    # `lr: true` as 1.0. A number key never takes a bool.
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"must be a number, got {str(bool(value)).lower()} (a bool)")
    return value


def _integer(value: Any) -> Any:
    # Strict int below takes Python ints only: not a bool (YAML's true/false), 5.0 or "5".
    # numpy integers (a protocol built in Python) are ints too.
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"must be an integer, got {str(bool(value)).lower()} (a bool)")
    if isinstance(value, np.integer):
        return int(value)
    return value


# Integer keys. The checks wrap the constrained int, so the JSON Schema keeps its bounds.
PositiveInt = Annotated[int, Strict(), Field(ge=1), BeforeValidator(_integer)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0), BeforeValidator(_integer)]
AtLeastTwo = Annotated[int, Strict(), Field(ge=2), BeforeValidator(_integer)]
Seed = Annotated[int, Strict(), Field(ge=0, lt=2**63), BeforeValidator(_integer)]
# Number keys: an int or a float (or a YAML 1.1 string such as ``1e-3``), finite, not a bool.
# The bool check comes last so that it wraps the constrained float (and the JSON Schema keeps
# its exclusiveMinimum/exclusiveMaximum).
Float = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_no_bool)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False), BeforeValidator(_no_bool)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False), BeforeValidator(_no_bool)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False), BeforeValidator(_no_bool)]


class StrictModel(BaseModel):
    """Base of every protocol model: unknown keys are errors; validated models are frozen."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class KeyedError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)
