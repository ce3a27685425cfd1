"""Option checks shared by the builtin models; every failure names the model and the option."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from trustml.exceptions import TrustmlInputError

__all__ = [
    "ACTIVATIONS",
    "activation",
    "check_dropout",
    "check_input_shape",
    "check_output_dim",
    "check_positive",
    "check_widths",
    "resolve_options",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def _fail(model: str, option: str, expected: str, got: Any) -> TrustmlInputError:
    return TrustmlInputError(f"model {model!r} option {option!r}: expected {expected}, got {got!r}")


def resolve_options(
    model: str, options: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge ``options`` over ``defaults``; an unknown name lists the valid ones."""
    for key in options:
        if key not in defaults:
            raise TrustmlInputError(
                f"model {model!r} has no option {key!r}; valid: {', '.join(sorted(defaults))}"
            )
    return {**defaults, **options}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_input_shape(
    model: str, input_shape: Any, ranks: Sequence[int], expected: str
) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints whose length is one of ``ranks``."""
    if isinstance(input_shape, str | bytes) or not isinstance(input_shape, Sequence):
        raise _fail(model, "input_shape", expected, input_shape)
    shape = tuple(input_shape)
    if not all(_is_int(s) and s >= 1 for s in shape) or len(shape) not in ranks:
        raise _fail(model, "input_shape", expected, shape)
    return shape


def check_output_dim(model: str, output_dim: Any) -> int:
    if not _is_int(output_dim) or output_dim < 1:
        raise _fail(model, "output_dim", "an int >= 1", output_dim)
    return output_dim


def check_positive(model: str, option: str, value: Any, *, odd: bool = False) -> int:
    """A positive int (odd when ``odd``)."""
    if not _is_int(value) or value < 1 or (odd and value % 2 == 0):
        raise _fail(model, option, "an odd int >= 1" if odd else "an int >= 1", value)
    return value


def check_widths(model: str, option: str, value: Any, *, allow_empty: bool) -> tuple[int, ...]:
    """A sequence of positive ints (a single int counts as one entry)."""
    if _is_int(value):
        value = (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise _fail(model, option, "a list of ints >= 1", value)
    widths = tuple(value)
    if not all(_is_int(w) and w >= 1 for w in widths) or (not widths and not allow_empty):
        what = "a list of ints >= 1" if allow_empty else "a non-empty list of ints >= 1"
        raise _fail(model, option, what, value)
    return widths


def check_dropout(model: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise _fail(model, "dropout", "a float in [0, 1)", value)
    return float(value)


def activation(model: str, name: Any) -> nn.Module:
    """A fresh activation module; names are those of :data:`ACTIVATIONS`."""
    if name not in ACTIVATIONS:
        raise _fail(model, "activation", f"one of {', '.join(sorted(ACTIVATIONS))}", name)
    return ACTIVATIONS[name]()
