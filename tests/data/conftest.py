"""Shared fixtures of the data-layer tests: small arrays and an HDF5 writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    """40 samples of [1, 6, 5] float32 inputs, [N, 2] float32 targets and 8 integer groups."""
    rng = np.random.default_rng(7)
    return {
        "x": rng.standard_normal((40, 1, 6, 5)).astype(np.float32),
        "y": rng.standard_normal((40, 2)).astype(np.float32),
        "groups": np.repeat(np.arange(8), 5),
    }


@pytest.fixture
def write_h5(tmp_path: Path) -> Callable[..., Path]:
    """``write_h5(name, {key: array}, attrs={key: {...}}, **create_dataset_kwargs) -> path``."""

    def write(
        name: str,
        datasets: dict[str, Any],
        attrs: dict[str, dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Path:
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            for key, value in datasets.items():
                ds = f.create_dataset(key, data=value, **kwargs)
                ds.attrs.update((attrs or {}).get(key, {}))
        return path

    return write
