"""Parameter checks with scikit-learn-style messages (never ``assert``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["check_in", "check_positive_int", "check_probability"]


def check_in(value: Any, options: Iterable[Any], *, name: str, owner: str | None = None) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``options``."""
    opts = list(options)
    if value not in opts:
        where = f"The {name!r} parameter of {owner}" if owner else f"{name!r}"
        raise ValueError(
            f"{where} must be one of {{{', '.join(repr(o) for o in opts)}}}. Got {value!r} instead."
        )
    return value


def check_positive_int(value: Any, *, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an ``int`` >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum}, got {value}")
    return value


def check_probability(value: Any, *, name: str, open_interval: bool = True) -> float:
    """Raise unless ``value`` lies in (0, 1) (or [0, 1] when ``open_interval`` is False)."""
    v = float(value)
    ok = 0.0 < v < 1.0 if open_interval else 0.0 <= v <= 1.0
    if not ok:
        bounds = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"Expected {name} in {bounds}, got {value!r}")
    return v
