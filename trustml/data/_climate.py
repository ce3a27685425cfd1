"""Synthetic climate fields with tropical cyclones and atmospheric rivers (builtin ``climate``).

Each sample is a square patch of tropical ocean, ``DOMAIN_KM`` on a side (about 11.5 degrees of
latitude and longitude around 15 N), on a regular ``size x size`` lat-lon grid, with three
channels in physical units before scaling:

0. sea-level pressure anomaly (hPa), 1. 10 m wind speed (m/s), 2. precipitable water (mm).

Background (every sample): smooth Gaussian random fields with a steep power spectrum
(``P(k) ~ k^-4``, most variance at the scale of the domain): SLP anomaly (std 1.5 hPa), the two
wind components (std 3 m/s, added to a 5 m/s easterly trade wind; not in geostrophic balance,
as in the deep tropics where the Coriolis parameter is small) and precipitable water
(45 +- 5 mm).

Tropical cyclone (label 1, half of the samples, exactly balanced): a Gaussian pressure
deficit ``-dp exp(-r^2 / R^2)`` around a centre drawn in the inner 60 % of the domain, with the
tangential wind in cyclostrophic balance ``V^2 = (r / rho) dp/dr`` (the inner core has Rossby
numbers ``V / (f R) ~ 5-20``)::

    V(r) = V_max sqrt(e) (r / R) exp(-r^2 / (2 R^2)),   dp = rho e V_max^2 / 2,

so the wind is zero in the eye and peaks on a ring at the radius of maximum wind ``r = R``,
counter-clockwise (northern hemisphere) and added as a vector to the background wind.
``V_max`` is log-uniform in 17.5-70 m/s (from the WMO threshold of a tropical storm, 34 kt,
to category 5), ``R`` uniform in 80-160 km. A moist core adds
``(8 + 0.3 V_max) exp(-r^2 / (2 (1.5 R)^2))`` mm of precipitable water. The ground-truth mask
is the disk ``r <= 2 R`` (eye, eyewall and the core where the wind exceeds 45 % of ``V_max``).

Distractors in both classes: half of the non-cyclone samples hold a tropical depression, the
same vortex with ``V_max`` uniform in 8-17 m/s (below the storm threshold) and ``R`` in
100-250 km, not masked; 30 % of all samples hold an atmospheric river, a meandering band of
moisture (+10-20 mm, e-folding half-width 100-200 km) oriented south-west to north-east, with a
low-level jet of 8-15 m/s along it.

Climate shift (option ``shift``, kelvin of warming, default 0): Clausius-Clapeyron scaling of
water vapour, 7 % per K, multiplies the background precipitable water (mean and fluctuations,
so its variance grows by ``1.07^(2 shift)``), the moist cores and the atmospheric rivers'
moisture; atmospheric rivers also become more frequent (probability ``0.3 + 0.05 shift``,
clipped to 0-0.8).

The returned inputs are scaled with fixed constants (:data:`CHANNEL_SCALES`; not estimated
from the data, so a shifted climate shows up as shifted inputs): ``slp / 10 hPa``,
``wind / 20 m/s``, ``(pw - 45 mm) / 10 mm``, with white measurement noise of 0.3 hPa, 0.5 m/s
and 0.5 mm added before scaling (to each wind component, then the speed is taken).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from trustml.data._grf import wavenumbers

__all__ = ["CHANNELS", "CHANNEL_SCALES", "DOMAIN_KM", "climate_fields"]

DOMAIN_KM = 1280.0
RHO_AIR = 1.15  # kg m^-3, near-surface air in the tropics
STORM_THRESHOLD = 17.5  # m/s, WMO tropical storm (34 kt)
CC_RATE = 0.07  # Clausius-Clapeyron: fractional increase of water vapour per K
CHANNELS = ("slp_anomaly", "wind_speed", "precipitable_water")
#: ``(offset, scale)`` per channel: input = (physical value - offset) / scale.
CHANNEL_SCALES = {
    "slp_anomaly": (0.0, 10.0),
    "wind_speed": (0.0, 20.0),
    "precipitable_water": (45.0, 10.0),
}

_BG_INDEX = 4.0
_BG_STD = {"slp": 1.5, "wind": 3.0, "pw": 5.0}
_TRADE_WIND = -5.0  # m/s, easterly
_PW_MEAN = 45.0
_NOISE = (0.3, 0.5, 0.5)
_P_DEPRESSION = 0.5
_P_RIVER = 0.3


def _smooth_fields(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` periodic random fields with ``P(k) ~ k^-4``, zero mean, unit variance in expectation.

    float32 throughout (white noise, FFTs), shape ``(n, size, size)``.
    """
    k = wavenumbers(size, 2)
    amp = np.where(k > 0, np.power(np.where(k > 0, k, 1.0), -_BG_INDEX / 2), 0.0)
    # Expected variance sum_k P(|k|) / V over the full (not half) grid of wavenumbers.
    f = np.fft.fftfreq(size, 1.0 / size)
    full = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    amp = amp / math.sqrt(np.sum(np.power(full[full > 0], -_BG_INDEX)) / size**2)
    noise = rng.standard_normal((n, size, size), dtype=np.float32)
    modes = scipy.fft.rfft2(noise)
    modes *= amp.astype(np.float32)
    return scipy.fft.irfft2(modes, s=(size, size))


def _vortex(
    xk: np.ndarray, yk: np.ndarray, cx: np.ndarray, cy: np.ndarray, vmax: np.ndarray, rm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SLP deficit (hPa), wind components (m/s) and ``r / R`` of cyclostrophic Gaussian vortices.

    ``xk, yk``: cell centres (km) of shape ``(size, size)``; the rest ``(m,)``; outputs
    ``(m, size, size)``.
    """
    e = (slice(None), None, None)
    dx, dy = xk[None] - cx[e], yk[None] - cy[e]
    rr = (dx**2 + dy**2) / rm[e] ** 2  # (r / R)^2
    dp_hpa = RHO_AIR * math.e * vmax**2 / 2.0 / 100.0
    slp = -dp_hpa[e] * np.exp(-rr)
    # V(r) / r = V_max sqrt(e) exp(-r^2 / 2R^2) / R; counter-clockwise: (u, v) = V/r (-dy, dx).
    v_over_r = vmax[e] * math.sqrt(math.e) * np.exp(-rr / 2.0) / rm[e]
    return slp, -v_over_r * dy, v_over_r * dx, np.sqrt(rr)


def _draw_rivers(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Parameters of ``n`` river bands (drawn for every sample, used where a river is)."""
    return {
        "angle": np.radians(rng.uniform(20.0, 70.0, n)),
        "x0": rng.uniform(0.25, 0.75, n) * DOMAIN_KM,
        "y0": rng.uniform(0.25, 0.75, n) * DOMAIN_KM,
        "width": rng.uniform(100.0, 200.0, n),
        "meander": rng.uniform(0.0, 100.0, n),
        "wavelength": rng.uniform(800.0, 1600.0, n),
        "phase": rng.uniform(0.0, 2 * math.pi, n),
        "pw": rng.uniform(10.0, 20.0, n),
        "jet": rng.uniform(8.0, 15.0, n),
    }


def _river_bands(xk: np.ndarray, yk: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Band profiles ``(m, size, size)``, 1 on each river's meandering axis."""
    e = (slice(None), None, None)
    ca, sa = np.cos(p["angle"])[e], np.sin(p["angle"])[e]
    dx, dy = xk[None] - p["x0"][e], yk[None] - p["y0"][e]
    along = dx * ca + dy * sa
    across = -dx * sa + dy * ca
    across = across - p["meander"][e] * np.sin(
        2 * math.pi * along / p["wavelength"][e] + p["phase"][e]
    )
    return np.exp(-(across**2) / (2 * p["width"][e] ** 2))


def climate_fields(
    rng: np.random.Generator, n: int, size: int, shift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Generate the ``climate`` builtin (physics in the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
    n, size : int
        Samples and grid cells per side.
    shift : float
        Warming in kelvin (0: the reference climate).

    Returns
    -------
    x : numpy.ndarray of shape (n, 3, size, size), float32
        Scaled SLP anomaly, wind speed, precipitable water.
    y : numpy.ndarray of shape (n,), int64
        1 where a tropical cyclone is present.
    masks : numpy.ndarray of shape (n, size, size), bool
        The cyclone's disk ``r <= 2 R`` (all False without a cyclone).
    info : dict of str to numpy.ndarray of shape (n,)
        ``vmax`` (m/s, 0 without a vortex), ``rmax`` (km, 0 without a vortex), ``cx``,
        ``cy`` (km, the vortex centre, east and north of the south-west corner; drawn for
        every sample), ``river`` (bool), ``depression`` (bool), for tests and figures.
    """
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    cyclone = y == 1
    moist = (1.0 + CC_RATE) ** shift
    # Cell centres in km; row index = latitude (y, northward), column = longitude (x).
    centres = (np.arange(size) + 0.5) * (DOMAIN_KM / size)
    yk, xk = np.meshgrid(centres, centres, indexing="ij")

    # Per-sample parameters first (so that they do not depend on the fields' sizes).
    depression = (~cyclone) & (rng.random(n) < _P_DEPRESSION)
    vortex = cyclone | depression
    vmax = np.where(
        cyclone,
        np.exp(rng.uniform(math.log(STORM_THRESHOLD), math.log(70.0), n)),
        rng.uniform(8.0, 17.0, n),
    )
    rmax = np.where(cyclone, rng.uniform(80.0, 160.0, n), rng.uniform(100.0, 250.0, n))
    cx = rng.uniform(0.2, 0.8, n) * DOMAIN_KM
    cy = rng.uniform(0.2, 0.8, n) * DOMAIN_KM
    vmax, rmax = np.where(vortex, vmax, 0.0), np.where(vortex, rmax, 0.0)
    river = rng.random(n) < float(np.clip(_P_RIVER + 0.05 * shift, 0.0, 0.8))
    rivers = _draw_rivers(rng, n)  # for every sample: the draws do not depend on shift

    bg = _smooth_fields(rng, 4 * n, size).reshape(4, n, size, size)
    fields = np.empty((n, 3, size, size), dtype=np.float32)
    slp, pw = fields[:, 0], fields[:, 2]
    slp[...] = _BG_STD["slp"] * bg[0]
    u = _TRADE_WIND + _BG_STD["wind"] * bg[1]
    v = _BG_STD["wind"] * bg[2]
    pw[...] = (_PW_MEAN + _BG_STD["pw"] * bg[3]) * moist

    # Vortices: cyclones (label 1) and tropical depressions (label 0, some samples).
    masks = np.zeros((n, size, size), dtype=bool)
    iv = np.flatnonzero(vortex)
    if iv.size:
        d_slp, d_u, d_v, r_over_rm = _vortex(xk, yk, cx[iv], cy[iv], vmax[iv], rmax[iv])
        core = (8.0 + 0.3 * vmax[iv])[:, None, None] * moist
        slp[iv] += d_slp
        u[iv] += d_u
        v[iv] += d_v
        pw[iv] += core * np.exp(-(r_over_rm**2) / (2 * 1.5**2))
        masks[iv] = cyclone[iv, None, None] & (r_over_rm <= 2.0)

    # Atmospheric rivers: meandering SW-NE moisture bands with a low-level jet along them.
    ir = np.flatnonzero(river)
    if ir.size:
        p = {k: val[ir] for k, val in rivers.items()}
        band = _river_bands(xk, yk, p)
        e = (slice(None), None, None)
        pw[ir] += (p["pw"] * moist)[e] * band
        u[ir] += (p["jet"] * np.cos(p["angle"]))[e] * band
        v[ir] += (p["jet"] * np.sin(p["angle"]))[e] * band

    noise = rng.standard_normal((n, 4, size, size), dtype=np.float32)
    fields[:, 1] = np.hypot(u + _NOISE[1] * noise[:, 2], v + _NOISE[1] * noise[:, 3])
    fields[:, 0] += _NOISE[0] * noise[:, 0]
    fields[:, 2] += _NOISE[2] * noise[:, 1]
    offsets = np.array([CHANNEL_SCALES[c][0] for c in CHANNELS], dtype=np.float32)
    scales = np.array([CHANNEL_SCALES[c][1] for c in CHANNELS], dtype=np.float32)
    fields -= offsets[None, :, None, None]
    fields /= scales[None, :, None, None]
    info = {
        "vmax": vmax,
        "rmax": rmax,
        "cx": cx,
        "cy": cy,
        "river": river,
        "depression": depression,
    }
    return fields, y, masks, info
