"""Tiny data, models and searches shared by the search tests."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import trustml.models as tmm
from trustml.data import load_builtin

SPACE = {
    "lr": {"log_uniform": [1e-3, 3e-2]},
    "weight_decay": {"log_uniform": [1e-6, 1e-3]},
    "hidden": {"choice": [8, 16]},
}
OPTIONS: dict[str, Any] = {
    "members": 3,
    "trials": 6,
    "seed": 11,
    "generation": 3,
    "training": {"epochs": 2, "batch_size": 32},
    "progress": False,
}


def make_build(ds):
    d = ds.target_shape[0]
    return functools.partial(
        tmm.build_model,
        "cnn",
        input_shape=tuple(ds.input_shape),
        output_dim=2 * d,
        channels=(4,),
        hidden=8,
    )


@pytest.fixture(scope="session")
def cosmo():
    """(train, validation, test) of a tiny cosmology2d."""
    ds = load_builtin("cosmology2d", n=120, size=8, seed=0)
    return ds.subset(range(72)), ds.subset(range(72, 104)), ds.subset(range(104, 120))


def strip_times(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its wall-clock times (the only field allowed to differ)."""
    return {
        **record,
        "trials": [{k: v for k, v in t.items() if k != "time_s"} for t in record["trials"]],
    }
