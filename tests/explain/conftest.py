"""Fixtures of the explain tests: a trained two-member ensemble on the localization task."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _explain_fixtures import Ensemble, region_task, train_classifier  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_torch_state():
    """Each test starts from the same torch RNG state, on one thread.

    The models here are tiny: one thread is faster than two, and immune to a shared machine's
    other processes stalling every parallel region of the second thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def region_ensemble() -> tuple[Ensemble, np.ndarray, np.ndarray, np.ndarray]:
    """Two CNNs trained on :func:`region_task`, with held-out images, labels and the mask."""
    x, y, mask = region_task(640, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        members = [train_classifier(x[:512], y[:512], seed=s, epochs=15) for s in (0, 1)]
    finally:
        torch.set_num_threads(threads)
    acc = [
        float((m(torch.as_tensor(x[512:])).argmax(1).numpy() == y[512:]).mean()) for m in members
    ]
    assert min(acc) > 0.9, f"the fixture's networks did not learn the task: accuracy {acc}"
    return Ensemble(members), x[512:576], y[512:576], mask
