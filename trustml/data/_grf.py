"""Gaussian random fields with a power-law power spectrum, generated with numpy FFTs.

Convention (periodic box of ``size`` cells per side, ``V = size**ndim`` cells, integer
wavenumbers ``k_i = 0, ±1, ..., ±size/2`` in units of the fundamental mode ``2*pi/size``)::

    delta = irfftn(sqrt(P(|k|)) * rfftn(w)),   w ~ N(0, 1) white noise per cell,
    P(k) = A * k**(-n),   P(0) = 0.

Then ``<|rfftn(delta)[k]|**2> / V = P(|k|)`` exactly, every field has zero mean, and its
variance is ``sum_k P(|k|) / V``: proportional to ``A``, so ``A`` keeps its physical meaning
as the fluctuation amplitude at the fundamental mode (``P(1) = A``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["power_law_fields", "wavenumbers"]

#: Cells generated per block: bounds the float64/complex128 workspace to a few tens of MB.
_BLOCK_CELLS = 1 << 21


def wavenumbers(size: int, ndim: int) -> np.ndarray:
    """``|k|`` on the ``rfftn`` grid of a ``size**ndim`` box, shape ``(size,)*(ndim-1) + (size//2+1,)``."""
    full = np.fft.fftfreq(size, d=1.0 / size)
    half = np.fft.rfftfreq(size, d=1.0 / size)
    axes = [full] * (ndim - 1) + [half]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def power_law_fields(
    rng: np.random.Generator, log_amplitude: np.ndarray, index: np.ndarray, size: int, ndim: int
) -> np.ndarray:
    """Fields with ``P(k) = exp(log_amplitude) * k**(-index)``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the white noise, block by block (blocks of a fixed size, so the result depends
        only on the generator's state).
    log_amplitude, index : arrays of shape (N,)
        Natural log of ``A`` and the spectral index ``n`` of each field.
    size, ndim : int
        Cells per side and number of spatial dimensions.

    Returns
    -------
    numpy.ndarray of shape (N, size, ..., size), float32
    """
    n_fields = len(log_amplitude)
    shape = (size,) * ndim
    axes = tuple(range(1, ndim + 1))
    k = wavenumbers(size, ndim)
    log_k = np.log(np.where(k > 0, k, 1.0))
    out = np.empty((n_fields, *shape), dtype=np.float32)
    per_block = max(1, _BLOCK_CELLS // size**ndim)
    for start in range(0, n_fields, per_block):
        stop = min(start + per_block, n_fields)
        noise = rng.standard_normal((stop - start, *shape))
        modes = np.fft.rfftn(noise, axes=axes)
        expand = (slice(start, stop),) + (None,) * ndim
        # sqrt(A k^-n) = exp((log A - n log k) / 2); the k = 0 mode is set to zero.
        amp = np.exp(0.5 * (log_amplitude[expand] - index[expand] * log_k))
        amp[(slice(None),) + (0,) * ndim] = 0.0
        out[start:stop] = np.fft.irfftn(modes * amp, s=shape, axes=axes)
    return out
