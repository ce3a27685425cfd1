"""Monthly El Nino sea-surface temperatures, 1950-2010 (builtin ``enso``; real data).

The series is the one statsmodels ships as ``statsmodels.datasets.elnino``: monthly mean sea
surface temperature (degrees Celsius) of the Nino 1+2 region of the eastern tropical Pacific
(0-10 S, 90-80 W), January 1950 to December 2010, 732 months, from NOAA's ERSST.V3B
reconstruction as distributed by the NOAA Climate Prediction Center
(https://www.cpc.ncep.noaa.gov/data/indices/); public domain.
"""

from __future__ import annotations

import functools

import numpy as np

from trustml.exceptions import DataError

__all__ = ["FIRST_YEAR", "N_MONTHS", "enso_windows", "sst_series"]

FIRST_YEAR = 1950
N_YEARS = 61
N_MONTHS = 12 * N_YEARS
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@functools.lru_cache(maxsize=1)
def _load() -> np.ndarray:
    try:
        from statsmodels.datasets import elnino
    except ImportError as exc:  # a dependency; only a broken install gets here
        raise DataError(
            f"builtin dataset 'enso' needs statsmodels, which ships the data ({exc}); "
            "install it with: pip install statsmodels"
        ) from None
    table = elnino.load_pandas().data
    years = table["YEAR"].to_numpy()
    if len(table) != N_YEARS or years[0] != FIRST_YEAR or np.any(np.diff(years) != 1):
        raise DataError(
            f"builtin dataset 'enso': statsmodels' elnino table has {len(table)} rows from "
            f"{years[0]:.0f}; expected {N_YEARS} consecutive years from {FIRST_YEAR}"
        )
    series = table[list(_MONTHS)].to_numpy(dtype=np.float64).reshape(-1)
    series.setflags(write=False)
    return series


def sst_series() -> np.ndarray:
    """The 732 monthly SSTs (degrees C) in time order, Jan 1950 first; read-only float64."""
    return _load()


def enso_windows(
    window: int, anomaly: bool, climatology_years: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sliding windows of the SST series and the next month as target.

    Parameters
    ----------
    window : int
        Months per input sequence.
    anomaly : bool
        Subtract the monthly climatology (the mean of each calendar month over the first
        ``climatology_years`` years) from inputs and targets.
    climatology_years : int
        Years (from 1950) that the climatology averages.

    Returns
    -------
    x : numpy.ndarray of shape (732 - window, window, 1), float32
        Sample ``i`` holds months ``i .. i + window - 1`` (month 0 = January 1950).
    y : numpy.ndarray of shape (732 - window, 1), float32
        Month ``i + window``.
    groups : numpy.ndarray of shape (732 - window,), int64
        The target's year.
    climatology : numpy.ndarray of shape (12,), float64
        The subtracted monthly means (zeros when ``anomaly`` is False).
    """
    sst = sst_series()
    clim = np.zeros(12)
    if anomaly:
        clim = sst[: 12 * climatology_years].reshape(climatology_years, 12).mean(axis=0)
    values = sst - np.tile(clim, N_YEARS)
    n = N_MONTHS - window
    rows = np.arange(n)[:, None] + np.arange(window)[None, :]
    x = values[rows][:, :, None].astype(np.float32)
    target = np.arange(window, N_MONTHS)
    y = values[target][:, None].astype(np.float32)
    groups = (FIRST_YEAR + target // 12).astype(np.int64)
    return x, y, groups, clim
