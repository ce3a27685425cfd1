"""Deterministic JSON: the bytes of ``results.json`` and ``manifest.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["json_bytes"]


def json_bytes(obj: Mapping[str, Any], *, name: str = "summary") -> bytes:
    """Serialise ``obj`` deterministically: sorted keys, shortest round-trip floats, UTF-8.

    numpy scalars and arrays become plain numbers and lists; tuples become lists; non-finite
    floats become ``null``. Anything else raises a ``TypeError`` naming its key path.
    """
    text = json.dumps(
        _jsonable(obj, name), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False
    )
    return (text + "\n").encode("utf-8")


def _jsonable(obj: Any, path: str) -> Any:
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: keys must be str, got {key!r} ({type(key).__name__})")
            out[key] = _jsonable(value, f"{path}.{key}")
        return out
    if isinstance(obj, list | tuple):
        return [_jsonable(value, f"{path}[{i}]") for i, value in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), path)
    raise TypeError(f"{path} is not JSON-serialisable: got {type(obj).__name__}")
