"""pydantic validation errors as one line: the key path, what was expected, what came.

An unknown key suggests the closest valid key of the mapping it is in.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from trustml.protocol._models import Protocol

__all__ = ["format_error"]


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at ``loc`` (for 'did you mean')."""
    ann: Any = Protocol
    for part in loc:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            ann = field.annotation
        elif typing.get_origin(ann) in (dict, list):
            ann = typing.get_args(ann)[-1]  # a dict's values or a list's items
        else:
            return None
        # Optional[Model] and other unions: take the model branch.
        if typing.get_origin(ann) in (types.UnionType, typing.Union):
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


_BOUND_WORDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def format_error(err: Mapping[str, Any]) -> tuple[str, str]:
    """``(key path, message)`` of one error of ``ValidationError.errors()``."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic inserts the Literal/union branch name into loc; drop such parts.
    loc = tuple(
        p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("literal")))
    )
    key = _format_loc(loc) or "protocol"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = sorted(parent.model_fields) if parent is not None else []
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        msg = "unknown key"
        if hint:
            msg += f"; did you mean '{hint[0]}'?"
        if valid:
            msg += f" (valid here: {', '.join(valid)})"
        return key, msg
    if kind == "missing":
        return key, "required key is missing"
    ctx = err.get("ctx") or {}
    got = f", got {err['input']!r}" if "input" in err else ""
    if kind in _BOUND_WORDS:
        (bound,) = (ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx)
        return key, f"must be {_BOUND_WORDS[kind]} {bound}{got}"
    if kind == "literal_error":
        return key, f"must be one of {ctx.get('expected', '')}{got}"
    if kind == "int_type":
        return key, f"must be an integer{got}"
    if kind == "finite_number":
        return key, f"must be a finite number{got}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        # Our own validators' messages already say what came.
        return key, msg[len("Value error, ") :]
    if kind in ("model_type", "dict_type"):
        return key, f"expected a mapping, got {type(err.get('input')).__name__}"
    return key, msg[0].lower() + msg[1:] + got
