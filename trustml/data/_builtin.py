"""Builtin datasets: small, real or physically meaningful, generated deterministically from a seed."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trustml.data._array import ArrayDataset
from trustml.data._grf import power_law_fields
from trustml.data._hdf5 import write_hdf5
from trustml.exceptions import DataError
from trustml.registry import Registry
from trustml.utils.seeding import SeedLike, child

__all__ = ["builtin_names", "export_builtin", "load_builtin"]


@dataclass(frozen=True)
class _Generated:
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class _Builtin:
    make: Callable[..., _Generated]  # make(name, rng, **options)
    defaults: dict[str, Any]
    description: str
    stream: str  # seed stream name, <= 8 bytes so that `child` keeps streams apart
    dims: tuple[str, ...]
    layout: str
    target_names: tuple[str, ...]
    target_description: str


_BUILTINS: Registry[_Builtin] = Registry("builtin dataset")


# -- option checks ------------------------------------------------------------------------
def _int_option(
    dataset: str, key: str, value: Any, minimum: int, maximum: int | None = None
) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(
            f"builtin dataset {dataset!r}: option {key!r} must be an int, got {value!r}"
        )
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise DataError(
            f"builtin dataset {dataset!r}: option {key!r} must be >= {minimum}{upper}, got {value}"
        )
    return int(value)


def _range_option(dataset: str, key: str, value: Any) -> tuple[float, float]:
    ok = isinstance(value, list | tuple) and len(value) == 2
    ok = ok and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok or value[0] > value[1]:
        raise DataError(
            f"builtin dataset {dataset!r}: option {key!r} must be a pair [low, high] of finite "
            f"numbers with low <= high, got {value!r}"
        )
    return float(value[0]), float(value[1])


# -- cosmology: Gaussian random fields ------------------------------------------------------
def _cosmology(
    name: str,
    rng: np.random.Generator,
    *,
    n: int,
    size: int,
    log_amplitude: Any,
    index: Any,
    ndim: int,
) -> _Generated:
    n = _int_option(name, "n", n, 1)
    size = _int_option(name, "size", size, 4)
    lo_a, hi_a = _range_option(name, "log_amplitude", log_amplitude)
    lo_n, hi_n = _range_option(name, "index", index)
    log_a = rng.uniform(lo_a, hi_a, n)
    spectral = rng.uniform(lo_n, hi_n, n)
    fields = power_law_fields(rng, log_a, spectral, size, ndim)
    y = np.stack([log_a, spectral], axis=1).astype(np.float32)
    return _Generated(fields[:, None], y)


_COSMO_DESCRIPTION = (
    "Gaussian random fields in a periodic box of size^{d} cells with power spectrum "
    "P(k) = A k^-n (k in units of the fundamental mode, P(0) = 0), normalised so that "
    "<|rfftn(field)[k]|^2> / size^{d} = P(k): the variance of a field is proportional to A. "
    "log A (natural log) and n are drawn uniformly from the log_amplitude and index ranges."
)
_COSMO_TARGETS = "log_A: natural log of the amplitude A of P(k) = A k^-n; n: spectral index"

for _ndim, _defaults, _dims, _layout in (
    (2, {"n": 2000, "size": 32}, ("sample", "channel", "y", "x"), "NCHW"),
    (3, {"n": 500, "size": 16}, ("sample", "channel", "z", "y", "x"), "NCDHW"),
):
    _BUILTINS.register(f"cosmology{_ndim}d")(
        _Builtin(
            make=lambda name, rng, _d=_ndim, **o: _cosmology(name, rng, ndim=_d, **o),
            defaults={**_defaults, "log_amplitude": (-1.0, 1.0), "index": (1.0, 3.0)},
            description=_COSMO_DESCRIPTION.replace("{d}", str(_ndim)),
            stream=f"grf{_ndim}d",
            dims=_dims,
            layout=_layout,
            target_names=("log_A", "n"),
            target_description=_COSMO_TARGETS,
        )
    )


# -- digits: scikit-learn's real 8x8 handwritten digits --------------------------------------
def _digits(name: str, rng: np.random.Generator, *, n: int | None) -> _Generated:
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    if n is not None:
        n = _int_option(name, "n", n, 1, len(y))
        keep = np.sort(rng.choice(len(y), size=n, replace=False))
        x, y = x[keep], y[keep]
    return _Generated(np.ascontiguousarray(x), y)


_BUILTINS.register("digits")(
    _Builtin(
        make=_digits,
        defaults={"n": None},
        description=(
            "scikit-learn's 8x8 handwritten digits (UCI optical recognition, 1797 images), "
            "pixel values scaled from 0..16 to [0, 1]; option n keeps a random subset of n "
            "images, drawn from the seed, in their original order."
        ),
        stream="digits",
        dims=("sample", "channel", "y", "x"),
        layout="NCHW",
        target_names=tuple(str(k) for k in range(10)),
        target_description="digit class 0..9",
    )
)


# -- public API ---------------------------------------------------------------------------
def builtin_names() -> list[str]:
    """Names of the builtin datasets, sorted: ``["cosmology2d", "cosmology3d", "digits"]``."""
    return _BUILTINS.names()


def _resolve(name: str, options: dict[str, Any]) -> tuple[_Builtin, dict[str, Any]]:
    try:
        spec = _BUILTINS.get(name)
    except KeyError as exc:
        raise DataError(exc.args[0]) from None
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise DataError(
            f"Unknown option {unknown[0]!r} for builtin dataset {name!r}; "
            f"valid: {', '.join(sorted(spec.defaults))}"
        )
    return spec, {**spec.defaults, **options}


def load_builtin(name: str, *, seed: SeedLike, **options: Any) -> ArrayDataset:
    """Generate (or load) a builtin dataset, deterministically from ``seed``.

    Parameters
    ----------
    name : str
        One of :func:`builtin_names`:

        - ``"cosmology2d"``: Gaussian random fields, inputs ``(n, 1, size, size)`` float32,
          targets ``(n, 2)`` = ``(log_A, n)``. Options ``n=2000``, ``size=32``,
          ``log_amplitude=(-1.0, 1.0)``, ``index=(1.0, 3.0)``.
        - ``"cosmology3d"``: the same in 3D, inputs ``(n, 1, size, size, size)``; options
          ``n=500``, ``size=16`` and the same ranges.
        - ``"digits"``: scikit-learn's 8x8 handwritten digits, inputs ``(1797, 1, 8, 8)``
          float32 in [0, 1], int64 labels 0..9; option ``n=None`` (all) or a subset size.

        The fields follow ``P(k) = A k^-n`` with ``<|rfftn(field)[k]|^2> / V = P(|k|)``
        (``V`` cells, integer wavenumbers, ``P(0) = 0``), so a field's variance scales with ``A``.
    seed : int, numpy.random.SeedSequence or None
        Draws come from ``child(child(seed, "data"), <dataset stream>)``.
    **options
        Dataset options as listed above.

    Returns
    -------
    ArrayDataset
        With ``source = "builtin:<name>"``, ``target_names`` set and ``groups = None``.

    Raises
    ------
    DataError
        For an unknown name or option (the valid ones are listed) or an invalid option value.

    Examples
    --------
    >>> ds = load_builtin("cosmology2d", seed=0, n=100, size=16)
    >>> ds.input_shape, ds.target_names
    ((1, 16, 16), ['log_A', 'n'])
    """
    spec, opts = _resolve(name, options)
    rng = np.random.default_rng(child(child(seed, "data"), spec.stream))
    gen = spec.make(name, rng, **opts)
    return ArrayDataset(
        gen.x,
        gen.y,
        gen.groups,
        source=f"builtin:{name}",
        layout=spec.layout,
        target_names=spec.target_names,
        validate=False,
    )


def export_builtin(
    name: str, path: str | os.PathLike[str], *, seed: SeedLike, **options: Any
) -> Path:
    """Write a builtin dataset to an HDF5 file that :class:`HDF5Dataset` reads.

    The file holds ``/x`` (inputs; attributes ``dims``, ``layout``, ``description``), ``/y``
    (targets; ``target_names``, ``description``), ``/groups`` when the dataset has groups, and
    file attributes ``builtin``, ``options`` (JSON), ``seed`` and ``description``. It is
    written to a temporary file and renamed, so ``path`` is never left half-written.

    Parameters
    ----------
    name, seed, **options
        As for :func:`load_builtin`.
    path : str or path-like
        Destination file (parent folders are created).

    Returns
    -------
    pathlib.Path
        ``path``; ``HDF5Dataset(path)`` has the same :meth:`~BaseDataset.fingerprint` as
        ``load_builtin(name, seed=seed, **options)``.
    """
    spec, opts = _resolve(name, options)
    ds = load_builtin(name, seed=seed, **options)
    seed_attr = seed if isinstance(seed, int) and not isinstance(seed, bool) else repr(seed)
    return write_hdf5(
        path,
        ds._x,
        ds._y,
        ds.groups,
        attrs={
            "builtin": name,
            "options": json.dumps(opts, sort_keys=True, default=list),
            "seed": seed_attr,
            "description": spec.description,
        },
        input_attrs={
            "dims": list(spec.dims),
            "layout": spec.layout,
            "description": spec.description,
        },
        target_attrs={
            "target_names": list(spec.target_names),
            "description": spec.target_description,
        },
        group_attrs={"description": "group id of each sample"},
    )
