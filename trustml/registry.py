"""A small name -> object registry whose unknown names list the valid ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Map option names to implementations.

    Parameters
    ----------
    kind : str
        What the names denote (``"metric"``, ``"builtin dataset"``); used in error messages.

    Examples
    --------
    >>> metrics = Registry[Callable]("metric")
    >>> @metrics.register("rmse")
    ... def rmse(a, b): ...
    >>> metrics.get("rsme")
    Traceback (most recent call last):
    ...
    KeyError: "Unknown metric 'rsme'; valid: rmse"
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"Unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def in_order(self) -> list[str]:
        """Registered names in the order they were registered (e.g. a protocol's defaults)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
