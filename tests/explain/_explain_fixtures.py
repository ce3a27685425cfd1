"""Tiny models, a synthetic localization task and a minimal uncertainty wrapper, shared by the
explain tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trustml.models import build_model

#: One small per-sample shape per input rank the builtin models accept.
SHAPES = {
    "1d": (2, 16),
    "2d": (1, 8, 8),
    "3d": (1, 4, 6, 6),
    "sequence": (10, 3),
}


class Ensemble:
    """The attribution contract and nothing else: ``explain_modules(output=...)``."""

    def __init__(self, modules: list[nn.Module], std_modules: list[nn.Module] | None = None):
        self.modules = modules
        self.std_modules = std_modules

    def explain_modules(self, output: str = "mean") -> list[nn.Module]:
        if output == "std" and self.std_modules is not None:
            return self.std_modules
        if output != "mean":
            raise ValueError(f"output must be 'mean', got {output!r}")
        return self.modules


class UserLSTM(nn.Module):
    """What a scientist writes: ``torch.nn.LSTM`` (cuDNN on a GPU, no vmap rule)."""

    def __init__(self, features: int, out: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, 8, batch_first=True)
        self.head = nn.Linear(8, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.lstm(x)
        return self.head(seq[:, -1])


class GaussianHead(nn.Module):
    """Maps a ``2 * D`` raw output to its std, ``softplus(raw) + 1e-6``."""

    def __init__(self, model: nn.Module, d: int) -> None:
        super().__init__()
        self.model, self.d = model, d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.model(x)[:, self.d :]) + 1e-6


def builtin_members(kind: str, shape: tuple[int, ...], k: int = 2, out: int = 3) -> list[nn.Module]:
    """``k`` builtin models (``cnn`` for grids, ``lstm`` for sequences), seeds 0..k-1."""
    mods = []
    for seed in range(k):
        torch.manual_seed(seed)
        opts = {"channels": (4, 6), "hidden": 8} if kind == "cnn" else {"hidden": 8}
        mods.append(build_model(kind, input_shape=shape, output_dim=out, **opts))
    return mods


def region_task(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """16x16 images of noise; the label is the sign of an offset added to a 5x5 square at a
    fixed place. Returns ``x (N, 1, 16, 16)``, labels ``(N,)`` and the square's mask."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.0, 1.0, size=(n, 1, 16, 16)).astype(np.float32)
    mask = np.zeros((1, 16, 16), dtype=bool)
    mask[0, 2:7, 9:14] = True
    x[:, 0, 2:7, 9:14] += (2.0 * y[:, None, None] - 1.0) * 1.5
    return x, y, mask


def train_classifier(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 30) -> nn.Module:
    """A small builtin CNN trained with Adam on (x, y); a couple of seconds on a CPU."""
    torch.manual_seed(seed)
    net = build_model("cnn", input_shape=x.shape[1:], output_dim=2, channels=(8, 16), hidden=16)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()
