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

from trustml.data import _climate, _enso, _jets
from trustml.data._array import ArrayDataset
from trustml.data._grf import power_law_fields
from trustml.data._hdf5 import check_destination, write_hdf5
from trustml.exceptions import DataError
from trustml.registry import Registry
from trustml.utils.seeding import SeedLike, child

__all__ = ["builtin_names", "export_builtin", "load_builtin"]


@dataclass(frozen=True)
class _Generated:
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None = None
    masks: np.ndarray | None = None


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
    mask_description: str | None = None  # set for datasets with ground-truth masks


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


def _float_option(dataset: str, key: str, value: Any, minimum: float, maximum: float) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(value):
        raise DataError(
            f"builtin dataset {dataset!r}: option {key!r} must be a finite number, got {value!r}"
        )
    if not minimum <= value <= maximum:
        raise DataError(
            f"builtin dataset {dataset!r}: option {key!r} must be >= {minimum} and <= {maximum}, "
            f"got {value}"
        )
    return float(value)


def _bool_option(dataset: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise DataError(
            f"builtin dataset {dataset!r}: option {key!r} must be true or false, got {value!r}"
        )
    return bool(value)


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


# -- climate: tropical cyclones in synthetic climate fields -----------------------------------
def _climate_make(
    name: str, rng: np.random.Generator, *, n: int, size: int, shift: Any
) -> _Generated:
    n = _int_option(name, "n", n, 2)
    size = _int_option(name, "size", size, 16)
    shift = _float_option(name, "shift", shift, -10.0, 10.0)
    x, y, masks, _ = _climate.climate_fields(rng, n, size, shift)
    return _Generated(x, y, masks=masks)


_BUILTINS.register("climate")(
    _Builtin(
        make=_climate_make,
        defaults={"n": 2000, "size": 32, "shift": 0.0},
        description=(
            "Synthetic tropical climate fields, a 1280 km (about 11.5 degree) lat-lon patch on "
            "size x size cells; channels: sea-level pressure anomaly / 10 hPa, wind speed / "
            "20 m/s, (precipitable water - 45 mm) / 10 mm. Smooth Gaussian random backgrounds "
            "(P(k) ~ k^-4) under a 5 m/s trade wind. Label 1 (half the samples): a tropical "
            "cyclone, a Gaussian pressure deficit with cyclostrophic wind V(r) = V_max sqrt(e) "
            "(r/R) exp(-r^2/2R^2) (calm eye, ring of maximum wind at r = R, 80-160 km), V_max "
            "log-uniform 17.5-70 m/s, and a moist core. Distractors: tropical depressions "
            "(V_max 8-17 m/s, below the 17.5 m/s storm threshold) in half of the label-0 samples "
            "and atmospheric rivers (meandering SW-NE moisture bands with a low-level jet) in "
            "30 % of all samples. Option shift: kelvin of warming; water vapour scales by the "
            "Clausius-Clapeyron 7 %/K (background precipitable water mean and variance, moist "
            "cores, rivers) and rivers become more frequent (0.3 + 0.05 shift). Masks: the "
            "cyclone's disk r <= 2R."
        ),
        stream="climate",
        dims=("sample", "channel", "lat", "lon"),
        layout="NCHW",
        target_names=("no_cyclone", "cyclone"),
        target_description="1 when a tropical cyclone (V_max >= 17.5 m/s) is present, else 0",
        mask_description="per-pixel ground truth: True within 2 R of the cyclone's centre",
    )
)


# -- jets: calorimeter images of boosted bosons and QCD jets --------------------------------
def _jets_make(
    name: str, rng: np.random.Generator, *, n: int, size: int, pt_range: Any
) -> _Generated:
    n = _int_option(name, "n", n, 2)
    size = _int_option(name, "size", size, 16)
    lo, hi = _range_option(name, "pt_range", pt_range)
    if lo < 200.0 or hi > 5000.0:
        raise DataError(
            f"builtin dataset {name!r}: option 'pt_range' must lie within [200, 5000] GeV "
            f"(below 200 GeV a W's second prong leaves the image), got {pt_range!r}"
        )
    x, y, masks, _ = _jets.jet_images(rng, n, size, (lo, hi))
    return _Generated(x, y, masks=masks)


_BUILTINS.register("jets")(
    _Builtin(
        make=_jets_make,
        defaults={"n": 2000, "size": 32, "pt_range": (250.0, 500.0)},
        description=(
            "Synthetic calorimeter jet images in (eta, phi), 2.4 x 2.4 around the jet axis on "
            "size x size pixels; channels: electromagnetic calorimeter (photons), hadronic "
            "calorimeter (hadrons), tracks (charged particles > 0.5 GeV), each divided by the "
            "jet pT (drawn uniformly from pt_range, GeV). Label 1: boosted W/Z -> q q' with "
            "two prongs sharing pT as (1 - z, z), z uniform 0.2-0.5, separated by "
            "dR = m / (pT sqrt(z (1 - z))) (about 2 m / pT), m a Breit-Wigner W (80.4 GeV) "
            "or Z (91.2 GeV). Label 0: QCD-like jets, a hard core and a soft collinear emission "
            "(dz/z dtheta/theta). Prongs fragment into 8 collinear particles (65 % charged, 25 % "
            "photons, 10 % neutral hadrons); soft underlying-event particles, Gaussian "
            "calorimeter showers, electronic noise and zero suppression. Masks: the disk of "
            "radius 0.2 around the second prong."
        ),
        stream="jets",
        dims=("sample", "channel", "eta", "phi"),
        layout="NCHW",
        target_names=("qcd", "boson"),
        target_description="1 for a two-prong boosted W/Z jet, 0 for a one-prong QCD-like jet",
        mask_description="per-pixel ground truth: True within dR 0.2 of the second prong",
    )
)


# -- enso: real monthly El Nino sea-surface temperatures ------------------------------------
def _enso_make(
    name: str, rng: np.random.Generator, *, window: int, anomaly: Any, climatology_years: int
) -> _Generated:
    window = _int_option(name, "window", window, 1, 120)
    anomaly = _bool_option(name, "anomaly", anomaly)
    climatology_years = _int_option(name, "climatology_years", climatology_years, 1, 61)
    x, y, groups, _ = _enso.enso_windows(window, anomaly, climatology_years)
    return _Generated(x, y, groups)


_BUILTINS.register("enso")(
    _Builtin(
        make=_enso_make,
        defaults={"window": 12, "anomaly": True, "climatology_years": 30},
        description=(
            "Real data: monthly mean sea-surface temperature (degrees C) of the Nino 1+2 region "
            "(0-10 S, 90-80 W), January 1950 - December 2010 (732 months), NOAA ERSST.V3B via "
            "the NOAA Climate Prediction Center (https://www.cpc.ncep.noaa.gov/data/indices/), "
            "as shipped by statsmodels (statsmodels.datasets.elnino); public domain. Sample i: "
            "months i .. i+window-1 as a sequence (window, 1), target month i+window; samples "
            "are in time order and grouped by the target's year. anomaly=True subtracts the "
            "monthly climatology of the first climatology_years years (default 1950-1979, a "
            "30-year normal), so a temporal split that trains on those years leaks nothing "
            "from later periods into the inputs."
        ),
        stream="enso",
        dims=("sample", "time", "feature"),
        layout="NTF",
        target_names=("sst_next",),
        target_description=(
            "sst_next: sea-surface temperature of the month after the window (degrees C, "
            "an anomaly from the monthly climatology when anomaly=True)"
        ),
    )
)


# -- public API ---------------------------------------------------------------------------
def builtin_names() -> list[str]:
    """Names of the builtin datasets, sorted.

    ``["climate", "cosmology2d", "cosmology3d", "digits", "enso", "jets"]``.
    """
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
        - ``"climate"``: synthetic tropical climate fields, inputs ``(n, 3, size, size)``
          float32 (scaled sea-level pressure anomaly, wind speed, precipitable water), labels
          1 = tropical cyclone present (half the samples), per-pixel masks of the cyclone
          ``(n, 1, size, size)``. Options ``n=2000``, ``size=32``, ``shift=0.0`` (kelvin of
          warming: a moister background and stronger, more frequent atmospheric rivers; -10
          to 10). Physics in :mod:`trustml.data._climate`.
        - ``"jets"``: synthetic calorimeter jet images in (eta, phi), inputs
          ``(n, 3, size, size)`` float32 (electromagnetic, hadronic, tracks; fractions of the
          jet pT), labels 1 = two-prong boosted W/Z, 0 = one-prong QCD-like (half each), masks
          of the second prong ``(n, 1, size, size)``. Options ``n=2000``, ``size=32``,
          ``pt_range=(250.0, 500.0)`` GeV (within 200-5000). Physics in
          :mod:`trustml.data._jets`.
        - ``"enso"``: real monthly Nino 1+2 sea-surface temperatures 1950-2010 (NOAA CPC, via
          statsmodels), inputs ``(732 - window, window, 1)`` float32 sequences (layout
          ``"NTF"``) in time order, targets ``(732 - window, 1)`` = the next month
          (``"sst_next"``), groups = the target's year. Options ``window=12``,
          ``anomaly=True`` (subtract the monthly climatology of the first
          ``climatology_years=30`` years), raw degrees C with ``anomaly=False``. Use
          :func:`temporal_split_indices` (``gap=window``) to split it.

        The cosmology fields follow ``P(k) = A k^-n`` with ``<|rfftn(field)[k]|^2> / V = P(|k|)``
        (``V`` cells, integer wavenumbers, ``P(0) = 0``), so a field's variance scales with ``A``;
        an out-of-range test set is made with other ``log_amplitude``/``index`` ranges.
    seed : int, numpy.random.SeedSequence or None
        Draws come from ``child(child(seed, "data"), <dataset stream>)``.
    **options
        Dataset options as listed above.

    Returns
    -------
    ArrayDataset
        With ``source = "builtin:<name>"``, ``target_names`` set, ``groups`` for ``enso``
        (else None) and ground-truth masks (:meth:`~BaseDataset.read_masks`) for
        ``climate`` and ``jets``.

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
        masks=gen.masks,
    )


def export_builtin(
    name: str,
    path: str | os.PathLike[str],
    *,
    seed: SeedLike,
    overwrite: bool = True,
    **options: Any,
) -> Path:
    """Write a builtin dataset to an HDF5 file that :class:`HDF5Dataset` reads.

    The file holds ``/x`` (inputs; attributes ``dims``, ``layout``, ``description``), ``/y``
    (targets; ``target_names``, ``description``), ``/groups`` when the dataset has groups,
    ``/masks`` (bool, ``(N, *spatial)`` as generated; attributes ``dims``, ``description``)
    when it has ground-truth masks (read them with ``HDF5Dataset(path, masks="/masks")``), and
    file attributes ``builtin``, ``options`` (JSON), ``seed`` and ``description``. It is
    written to a temporary file and renamed, so ``path`` is never left half-written.

    Parameters
    ----------
    name, seed, **options
        As for :func:`load_builtin`.
    path : str or path-like
        Destination file (parent folders are created).
    overwrite : bool, default True
        Replace an existing file at ``path``; with False an existing file is an error.

    Returns
    -------
    pathlib.Path
        ``path``; ``HDF5Dataset(path)`` has the same :meth:`~BaseDataset.fingerprint` as
        ``load_builtin(name, seed=seed, **options)``.

    Raises
    ------
    DataError
        For an invalid name or option (as :func:`load_builtin`), a ``path`` that is a folder
        or whose folder cannot be created, or an existing file with ``overwrite=False``.
    """
    spec, opts = _resolve(name, options)
    check_destination(path)  # before generating: a wrong path fails fast
    if not overwrite and Path(path).exists():
        raise DataError(f"{path}: already exists")
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
        masks=None if ds._m is None else ds._m,
        mask_attrs=(
            None
            if ds._m is None
            else {
                "dims": [spec.dims[0], *spec.dims[len(spec.dims) - (ds._m.ndim - 1) :]],
                "description": spec.mask_description or "ground-truth mask",
            }
        ),
    )
