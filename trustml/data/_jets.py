"""Synthetic calorimeter jet images: boosted W/Z bosons against QCD jets (builtin ``jets``).

Each sample is a jet image in the ``(eta, phi)`` plane around the jet axis (the pT-weighted
centroid of its prongs), ``2 * HALF_WIDTH`` = 2.4 units on a side (a large-radius jet,
``R ~ 1``), on ``size x size`` pixels, with three channels:

0. electromagnetic calorimeter (photons), 1. hadronic calorimeter (charged and neutral
hadrons), 2. tracks (charged particles above 0.5 GeV, at their exact position).

Both classes draw the jet's transverse momentum ``pT`` uniformly from ``pt_range`` (GeV), so
that ``pT`` alone tells nothing, and are made of two prongs (quark-initiated subjets) sharing
``pT`` as ``(1 - z, z)``, ``z`` the softer prong's fraction, separated by ``dR`` along a random
direction, the harder prong at ``-z dR`` and the softer at ``(1 - z) dR`` from the axis:

- class 1, boosted boson -> q q': the mass ``m`` is a W (80.4 GeV, width 2.1) or a Z
  (91.2 GeV, width 2.5) with equal odds, Breit-Wigner, truncated to +-5 GeV; ``z`` uniform in
  0.2-0.5; the two-body decay fixes the opening angle at leading order,
  ``m^2 = z (1 - z) pT^2 dR^2``, so ``dR = m / (pT sqrt(z (1 - z)))`` (``= 2 m / pT`` at
  ``z = 1/2``).
- class 0, QCD-like one-prong jet: one hard core and a soft collinear emission with the QCD
  splitting spectrum ``dP ~ dz / z  dtheta / theta`` (log-uniform ``z`` in 0.01-0.5 and
  ``dR`` in 0.05-1.0), so the emission is mostly soft and close to the core, and a jet mass
  ``pT dR sqrt(z (1 - z))`` mostly far below the bosons'.

Each prong fragments into 8 particles sharing its ``pT`` (Dirichlet, concentration 0.7) at
log-uniform angles 0.002-0.15 from the prong axis (collinear radiation); the underlying event
and pile-up add Poisson(20) soft particles with exponential ``pT`` (mean 1 GeV) uniformly over
the image. Particles are charged (65 %), photons (25 %) or neutral hadrons (10 %). The
calorimeters smear deposits with Gaussian showers (0.03 electromagnetic, 0.08 hadronic, in
``eta-phi`` units), add electronic noise (0.2 and 0.5 GeV per pixel) and zero-suppress pixels
below twice the noise. Every channel is divided by the jet's ``pT``: pixel values are fractions
of the jet's momentum (the calorimeter channels sum to about 1).

The ground-truth mask (class 1 only) is the disk of radius ``MASK_RADIUS`` = 0.2 around the
softer prong: where the second prong, the signature of a two-body decay, lies.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["CHANNELS", "HALF_WIDTH", "MASK_RADIUS", "jet_images"]

HALF_WIDTH = 1.2
MASK_RADIUS = 0.2
CHANNELS = ("electromagnetic", "hadronic", "tracks")
_BOSONS = ((80.4, 2.1), (91.2, 2.5))  # W, Z: mass and width (GeV)
_Z_SIGNAL = (0.2, 0.5)
_Z_QCD = (0.01, 0.5)
_DR_QCD = (0.05, 1.0)
_PER_PRONG = 8
_DIRICHLET = 0.7
_SPREAD = (0.002, 0.15)
_UE_MEAN, _UE_MAX, _UE_PT = 20, 48, 1.0
_TYPES = (0.65, 0.25, 0.10)  # charged, photon, neutral hadron
_SHOWER = (0.03, 0.08)  # EM, hadronic: Gaussian sigma in eta-phi units
_NOISE = (0.2, 0.5)  # GeV per pixel, EM and hadronic
_TRACK_MIN_PT = 0.5


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def jet_images(
    rng: np.random.Generator, n: int, size: int, pt_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Generate the ``jets`` builtin (physics in the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
    n, size : int
        Jets and pixels per side.
    pt_range : (float, float)
        Range of the jets' transverse momentum (GeV).

    Returns
    -------
    x : numpy.ndarray of shape (n, 3, size, size), float32
        Electromagnetic, hadronic and track images, in fractions of the jet's pT.
    y : numpy.ndarray of shape (n,), int64
        1 for a two-prong boson jet, 0 for a QCD-like jet (exactly balanced).
    masks : numpy.ndarray of shape (n, size, size), bool
        The disk of radius ``MASK_RADIUS`` around the second prong (all False for class 0).
    info : dict of str to numpy.ndarray of shape (n,)
        ``pt`` (GeV), ``mass`` (GeV; the boson mass, or the QCD jet's two-prong mass),
        ``z``, ``delta_r`` and the prongs' positions ``eta1, phi1, eta2, phi2``.
    """
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    signal = y == 1
    pt = rng.uniform(pt_range[0], pt_range[1], n)

    # Two-body kinematics: signal z and mass, QCD splitting z and angle.
    which = rng.integers(0, 2, n)
    m0 = np.array([b[0] for b in _BOSONS])[which]
    width = np.array([b[1] for b in _BOSONS])[which]
    # Breit-Wigner truncated to +-5 GeV by inverting its CDF on the truncated range.
    lo_c, hi_c = np.arctan(-5.0 / (width / 2)), np.arctan(5.0 / (width / 2))
    mass_bw = m0 + (width / 2) * np.tan(rng.uniform(lo_c, hi_c))
    z_sig = rng.uniform(*_Z_SIGNAL, n)
    z_qcd = _log_uniform(rng, *_Z_QCD, n)
    dr_qcd = _log_uniform(rng, *_DR_QCD, n)
    z = np.where(signal, z_sig, z_qcd)
    delta_r = np.where(signal, mass_bw / (pt * np.sqrt(z_sig * (1 - z_sig))), dr_qcd)
    mass = np.where(signal, mass_bw, pt * delta_r * np.sqrt(z * (1 - z)))
    direction = rng.uniform(0.0, 2 * math.pi, n)
    ce, cp = np.cos(direction), np.sin(direction)
    eta1, phi1 = -z * delta_r * ce, -z * delta_r * cp
    eta2, phi2 = (1 - z) * delta_r * ce, (1 - z) * delta_r * cp

    # Fragmentation of each prong into collinear particles.
    prong_pt = np.stack([(1 - z) * pt, z * pt], axis=1)  # (n, 2)
    shares = rng.gamma(_DIRICHLET, size=(n, 2, _PER_PRONG))
    shares /= shares.sum(axis=2, keepdims=True)
    spread = np.exp(rng.uniform(math.log(_SPREAD[0]), math.log(_SPREAD[1]), (n, 2, _PER_PRONG)))
    angle = rng.uniform(0.0, 2 * math.pi, (n, 2, _PER_PRONG))
    p_eta = np.stack([eta1, eta2], axis=1)[:, :, None] + spread * np.cos(angle)
    p_phi = np.stack([phi1, phi2], axis=1)[:, :, None] + spread * np.sin(angle)
    p_pt = prong_pt[:, :, None] * shares

    # Underlying event and pile-up: soft particles anywhere.
    n_ue = np.minimum(rng.poisson(_UE_MEAN, n), _UE_MAX)
    u_eta = rng.uniform(-HALF_WIDTH, HALF_WIDTH, (n, _UE_MAX))
    u_phi = rng.uniform(-HALF_WIDTH, HALF_WIDTH, (n, _UE_MAX))
    u_pt = rng.exponential(_UE_PT, (n, _UE_MAX)) * (np.arange(_UE_MAX)[None] < n_ue[:, None])

    eta = np.concatenate([p_eta.reshape(n, -1), u_eta], axis=1)
    phi = np.concatenate([p_phi.reshape(n, -1), u_phi], axis=1)
    ppt = np.concatenate([p_pt.reshape(n, -1), u_pt], axis=1)
    kind = rng.choice(3, size=eta.shape, p=_TYPES)  # 0 charged, 1 photon, 2 neutral hadron

    pix = 2 * HALF_WIDTH / size
    ix = np.floor((eta + HALF_WIDTH) / pix).astype(np.int64)
    iy = np.floor((phi + HALF_WIDTH) / pix).astype(np.int64)
    inside = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    jet = np.broadcast_to(np.arange(n)[:, None], eta.shape)
    # Rows are eta, columns phi: image[jet, channel, ieta, iphi].
    channel = np.where(kind == 1, 0, 1)
    deposits = np.zeros(n * 3 * size * size)
    for target, keep in (
        (channel, inside),
        (np.full_like(kind, 2), inside & (kind == 0) & (ppt >= _TRACK_MIN_PT)),
    ):
        flat = ((jet * 3 + target) * size + ix) * size + iy
        deposits += np.bincount(flat[keep], weights=ppt[keep], minlength=deposits.size)
    images = deposits.reshape(n, 3, size, size)

    noise = rng.standard_normal((n, 2, size, size))
    for ch in (0, 1):
        cal = gaussian_filter(
            images[:, ch], sigma=(0, _SHOWER[ch] / pix, _SHOWER[ch] / pix), mode="constant"
        )
        cal += _NOISE[ch] * noise[:, ch]
        cal[cal < 2 * _NOISE[ch]] = 0.0
        images[:, ch] = cal
    x = (images / pt[:, None, None, None]).astype(np.float32)

    centres = -HALF_WIDTH + (np.arange(size) + 0.5) * pix
    d2 = (centres[None, :, None] - eta2[:, None, None]) ** 2 + (
        centres[None, None, :] - phi2[:, None, None]
    ) ** 2
    masks = (d2 <= MASK_RADIUS**2) & signal[:, None, None]
    info = {
        "pt": pt,
        "mass": mass,
        "z": z,
        "delta_r": delta_r,
        "eta1": eta1,
        "phi1": phi1,
        "eta2": eta2,
        "phi2": phi2,
    }
    return x, y, masks, info
