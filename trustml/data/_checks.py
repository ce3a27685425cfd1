"""Shape, dtype and layout rules shared by every dataset (one place, one wording).

Each checker raises :class:`~trustml.exceptions.DataError` with a one-line message that starts
with ``prefix`` (the file or source) and names the array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trustml.exceptions import DataError

__all__ = [
    "LAYOUTS",
    "check_groups",
    "check_input_meta",
    "check_layout",
    "check_mask_meta",
    "check_target_meta",
    "one_line",
]

#: Valid ``layout`` names by rank of the full array (sample axis included). Rank 3 is ambiguous:
#: channels-first 1D signals ``NCL`` or sequences ``NTF`` (time steps, features).
LAYOUTS: dict[int, tuple[str, ...]] = {
    2: ("NF",),
    3: ("NCL", "NTF"),
    4: ("NCHW",),
    5: ("NCDHW",),
    6: ("NCTDHW",),
}

_RANK_HELP = "[N, C, L] or [N, T, F], [N, C, H, W], [N, C, D, H, W], [N, C, T, D, H, W]"
_TARGET_HELP = "float [N] or [N, D] (regression) or integer [N] (classification)"


def one_line(text: object) -> str:
    """First non-empty line of ``text`` (library messages can span several lines)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _describe(dtype: np.dtype) -> str:
    metadata: Mapping[str, Any] = dtype.metadata or {}
    if dtype.kind == "O" and metadata.get("vlen") in (str, bytes):
        return "variable-length string"
    kinds = {
        "S": "bytes",
        "U": "string",
        "O": "object",
        "V": "compound",
        "b": "bool",
        "c": "complex",
    }
    kind = kinds.get(dtype.kind)
    return f"{dtype} ({kind})" if kind else str(dtype)


def check_input_meta(
    shape: Sequence[int], dtype: np.dtype, *, prefix: str, name: str, min_rank: int = 3
) -> None:
    """Inputs are numeric (float or integer) with rank ``min_rank`` to 6 and at least one sample."""
    if dtype.kind not in "fiu":
        raise DataError(
            f"{prefix}: {name} has dtype {_describe(dtype)}; expected a float or integer numeric type"
        )
    rank = len(shape)
    if not min_rank <= rank <= 6:
        extra = "[N, F], " if min_rank <= 2 else ""
        raise DataError(
            f"{prefix}: {name} has shape {tuple(shape)}; expected rank {min_rank} to 6: "
            f"{extra}{_RANK_HELP}"
        )
    if shape[0] == 0:
        raise DataError(f"{prefix}: {name} has no samples (shape {tuple(shape)})")


def check_target_meta(
    shape: Sequence[int],
    dtype: np.dtype,
    n_samples: int,
    *,
    prefix: str,
    name: str,
    input_name: str,
) -> None:
    """Targets: float ``[N]``/``[N, D]`` or integer ``[N]``, with as many samples as the inputs."""
    if dtype.kind not in "fiu":
        raise DataError(f"{prefix}: {name} has dtype {_describe(dtype)}; expected {_TARGET_HELP}")
    if len(shape) not in (1, 2) or (dtype.kind in "iu" and len(shape) != 1):
        raise DataError(
            f"{prefix}: {name} has dtype {dtype} and shape {tuple(shape)}; expected {_TARGET_HELP}"
        )
    if len(shape) == 2 and shape[1] == 0:
        raise DataError(
            f"{prefix}: {name} has shape {tuple(shape)}; expected at least one target column"
        )
    if shape[0] != n_samples:
        raise DataError(f"{prefix}: {input_name} has {n_samples} samples but {name} has {shape[0]}")


def check_groups(groups: object, n_samples: int, *, prefix: str, name: str) -> np.ndarray:
    """Return group ids as a 1-D integer or ``str`` array of length ``n_samples``."""
    g = np.asarray(groups)
    if g.dtype.kind == "S":
        g = np.char.decode(g, "utf-8")
    elif g.dtype.kind == "O":
        if not all(isinstance(v, str | bytes) for v in g.ravel()):
            raise DataError(f"{prefix}: {name} holds objects; expected integer or string group ids")
        g = np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else v for v in g.ravel()], dtype=str
        )
        g = g.reshape(np.shape(groups))  # type: ignore[call-overload]
    if g.dtype.kind not in "iuU":
        raise DataError(
            f"{prefix}: {name} has dtype {_describe(g.dtype)}; expected integer or string group ids"
        )
    if g.ndim != 1:
        raise DataError(f"{prefix}: {name} has shape {g.shape}; expected [N] group ids")
    if g.shape[0] != n_samples:
        raise DataError(
            f"{prefix}: {name} has {g.shape[0]} entries but the inputs have {n_samples} samples"
        )
    return g


def check_layout(layout: object, rank: int, *, prefix: str, name: str) -> str | None:
    """Normalise a ``layout`` name (``"NCHW"``...) and check it fits the rank; ``None`` stays ``None``.

    For rank 3 ``None`` means "not declared": ``[N, C, L]`` and ``[N, T, F]`` look the same, so
    the model decides.
    """
    valid = LAYOUTS.get(rank, ())
    if layout is None:
        return valid[0] if len(valid) == 1 else None
    if isinstance(layout, bytes):
        layout = layout.decode("utf-8", "replace")
    text = str(layout).strip().upper()
    if text not in valid:
        raise DataError(
            f"{prefix}: {name} has layout {layout!r}; for rank {rank} expected one of "
            f"{', '.join(valid) or '(none)'}"
        )
    return text


def check_mask_meta(
    shape: Sequence[int],
    dtype: np.dtype,
    n_samples: int,
    input_shape: Sequence[int],
    layout: str | None,
    *,
    prefix: str,
    name: str,
) -> tuple[int, ...]:
    """Ground-truth masks: numeric or bool, one per sample, broadcastable to one input.

    Accepted per-sample shapes: the input's rank with every axis equal to the input's or 1
    (``(C, H, W)``, ``(1, H, W)``...), or, for channel-first layouts (``NC...``), the input
    without its channel axis (``(H, W)``: one mask for all channels).

    Returns
    -------
    tuple of int
        The per-sample mask shape as served by ``read_masks``: the input's rank, so that
        ``(n, *mask_shape)`` broadcasts to ``(n, *input_shape)``.
    """
    if dtype.kind not in "biuf":
        raise DataError(
            f"{prefix}: {name} has dtype {_describe(dtype)}; expected bool or numeric masks "
            "(non-zero = inside)"
        )
    per = tuple(int(s) for s in shape[1:])
    inp = tuple(int(s) for s in input_shape)
    expected = f"[{n_samples}, *{list(inp)}] or an axis of 1 in place of any input axis"
    channel_first = layout is not None and layout.startswith("NC")
    if channel_first:
        expected += f", or [{n_samples}, *{list(inp[1:])}] (one mask for all channels)"
    if len(shape) == 0 or shape[0] != n_samples:
        first = shape[0] if len(shape) else 0
        raise DataError(
            f"{prefix}: {name} has {first} masks but the inputs have {n_samples} samples"
        )
    if len(per) == len(inp) and all(m in (i, 1) for m, i in zip(per, inp, strict=True)):
        return per
    if channel_first and len(per) == len(inp) - 1:
        if all(m in (i, 1) for m, i in zip(per, inp[1:], strict=True)):
            return (1, *per)
    raise DataError(
        f"{prefix}: {name} has shape {tuple(int(s) for s in shape)}; expected {expected}"
    )
