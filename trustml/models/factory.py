"""User model factories named ``"package.module:callable"``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from trustml.exceptions import TrustmlInputError

__all__ = ["build_from_factory", "load_factory"]


def _split(spec: Any) -> tuple[str, str]:
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise TrustmlInputError(f"model factory: expected 'package.module:callable', got {spec!r}")
    module, attr = spec.split(":")
    parts = [*module.split("."), *attr.split(".")]
    if not all(p.isidentifier() for p in parts):
        raise TrustmlInputError(
            f"model factory: expected 'package.module:callable' made of Python identifiers, "
            f"got {spec!r}"
        )
    return module, attr


def load_factory(spec: str) -> Callable[..., Any]:
    """Import the callable named by ``spec``.

    Parameters
    ----------
    spec : str
        ``"package.module:name"``; ``name`` may be dotted (``"pkg.mod:Class.create"``). The module
        must be importable from ``sys.path``.

    Returns
    -------
    callable

    Raises
    ------
    TrustmlInputError
        Malformed ``spec``, module not found (or failing on import), attribute missing, or the
        attribute is not callable.

    Examples
    --------
    >>> load_factory("collections:OrderedDict")
    <class 'collections.OrderedDict'>
    """
    module_name, attr = _split(spec)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name + ".").startswith(err.name + "."):
            raise TrustmlInputError(
                f"model factory {spec!r}: no module named {err.name!r} (is it on sys.path?)"
            ) from None
        raise TrustmlInputError(
            f"model factory {spec!r}: importing {module_name!r} failed: {err}"
        ) from err
    except Exception as err:
        raise TrustmlInputError(
            f"model factory {spec!r}: importing {module_name!r} failed: {type(err).__name__}: {err}"
        ) from err
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = ".".join([module_name, *attr.split(".")[:i]])
            raise TrustmlInputError(f"model factory {spec!r}: {where!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TrustmlInputError(
            f"model factory {spec!r}: expected a callable, got {type(obj).__name__}"
        )
    return obj


def build_from_factory(
    spec: str, *, input_shape: tuple[int, ...], output_dim: int, **options: Any
) -> nn.Module:
    """Build a user model: ``factory(input_shape=..., output_dim=..., **options)``.

    Parameters
    ----------
    spec : str
        ``"package.module:callable"``, see :func:`load_factory`.
    input_shape : tuple of int
        Shape of one sample, without the batch dimension; passed as a tuple.
    output_dim : int
        Output size per sample.
    **options
        Passed on as keyword arguments. When the factory's signature has no ``**kwargs``, an
        option it does not accept raises before the call, listing the accepted ones.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    TrustmlInputError
        The factory cannot be loaded, does not accept the arguments, or returns something that
        is not a ``torch.nn.Module``.

    Examples
    --------
    >>> net = build_from_factory("mypkg.nets:make_net", input_shape=(1, 28, 28), output_dim=10)
    ... # doctest: +SKIP
    """
    factory = load_factory(spec)
    kwargs = {"input_shape": tuple(input_shape), "output_dim": output_dim, **options}
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C callables have none
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as err:
            accepted = ", ".join(
                n for n, p in signature.parameters.items() if p.kind is not p.VAR_POSITIONAL
            )
            raise TrustmlInputError(
                f"model factory {spec!r} does not accept these arguments ({err}); "
                f"its parameters: {accepted or 'none'}"
            ) from None
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise TrustmlInputError(
            f"model factory {spec!r} returned {type(model).__name__}, expected a torch.nn.Module"
        )
    return model
