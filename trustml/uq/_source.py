"""Training and prediction data of every uncertainty method, read batch by batch.

Deep ensembles read stacked member minibatches; the single-network methods (MC dropout,
Bayesian networks) read one minibatch per step (:func:`minibatches`) after :func:`prepare`
has standardised the targets and checked the model's output width.

Whatever comes in (arrays, a ``trustml.data`` dataset with ``read(indices)``, a torch map-style
``Dataset`` of ``(x, y)`` pairs or a ``DataLoader``), training reads one ``(L, b, ...)`` block
per step: row ``l`` holds the minibatch of lane ``l`` (one member). In-memory arrays are
gathered with one tensor index; datasets are read once per step for all members (they sort
and de-duplicate the indices), so nothing beyond a step's batches is ever held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trustml.uq._heads import HeadSpec

__all__ = ["Prepared", "Source", "as_source", "first_inputs", "minibatches", "prepare"]

_MOMENT_CHUNK = 4096


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _stack(items: list[Any]) -> np.ndarray:
    return np.stack([_to_numpy(a) for a in items])


class Source:
    """Uniform batched access to training or prediction data.

    Parameters
    ----------
    x : array, tensor, dataset or DataLoader
    y : array or tensor, optional
        Targets when ``x`` is an array; ``None`` for datasets (and for prediction inputs).
    name : str
        What the data is called in error messages (``"x"``).
    """

    def __init__(self, x: Any, y: Any = None, *, name: str = "x") -> None:
        self._x_t: torch.Tensor | None = None
        self._y: np.ndarray | None = None
        self._ds: Any = None
        self.loader: DataLoader | None = None
        if isinstance(x, DataLoader):
            if y is not None:
                raise TypeError("Expected y=None with a DataLoader (it yields (x, y) batches)")
            self.loader = x
            self.n = len(x.dataset) if hasattr(x.dataset, "__len__") else -1  # type: ignore[arg-type]
            self.kind = "loader"
        elif hasattr(x, "read") or isinstance(x, Dataset):
            if y is not None:
                raise TypeError(
                    f"Expected y=None with a dataset (it holds the targets), got {type(y).__name__}"
                )
            self._ds = x
            self.n = len(x)
            self.kind = "dataset" if hasattr(x, "read") else "torch"
        else:
            xt = torch.as_tensor(_to_numpy(x), dtype=torch.float32)
            if xt.dim() < 2:
                raise ValueError(
                    f"Expected {name} of shape (N, *input_shape), got shape {tuple(xt.shape)}"
                )
            if y is not None:
                ya = _to_numpy(y)
                if len(ya) != len(xt):
                    raise ValueError(f"x and y differ in length: {len(xt)} != {len(ya)}")
                self._y = ya
            self._x_t = xt
            self.n = len(xt)
            self.kind = "arrays"
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.task = "regression"

    # -- targets --------------------------------------------------------------------------
    def read(self, idx: np.ndarray) -> tuple[np.ndarray | torch.Tensor, np.ndarray | None]:
        """Samples ``idx`` as ``(x, y)``; ``y`` is None for inputs without targets."""
        if self._x_t is not None:  # kind "arrays"
            return self._x_t[torch.from_numpy(idx)], (None if self._y is None else self._y[idx])
        if self.kind == "dataset":
            return self._ds.read(idx)
        getitems = getattr(self._ds, "__getitems__", None)
        items = getitems(idx.tolist()) if getitems else [self._ds[int(i)] for i in idx]
        if isinstance(items[0], tuple | list):
            return _stack([a for a, *_ in items]), _stack([b for _, b, *_ in items])
        return _stack(items), None

    def target_moments(self, idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the regression targets (over ``idx``), streamed, float64 ``(D,)``."""
        total: Any = 0.0
        total_sq: Any = 0.0
        count = 0
        for yb in self._target_chunks(idx):
            yb = np.asarray(yb, dtype=np.float64).reshape(len(yb), -1)
            total, total_sq, count = total + yb.sum(0), total_sq + (yb**2).sum(0), count + len(yb)
        if count == 0:
            raise ValueError("Expected at least one training sample, got 0")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        return mean, std

    def fit_scaling(self, idx: np.ndarray | None, standardize: bool) -> None:
        """Set ``shift``/``scale`` (``(D,)``) from the targets over ``idx`` (identity if not
        ``standardize``; the targets' dimension ``D`` is known either way)."""
        mean, std = self.target_moments(idx)
        self.shift = mean if standardize else np.zeros_like(mean)
        self.scale = np.where(std > 0, std, 1.0) if standardize else np.ones_like(mean)

    def _target_chunks(self, idx: np.ndarray | None) -> Iterator[np.ndarray]:
        if self.kind == "loader":
            for batch in self.loader:  # type: ignore[union-attr]
                yield _to_numpy(batch[1])
            return
        if self.kind == "arrays":
            if self._y is None:
                raise TypeError("Expected targets y with array inputs, got y=None")
            yield self._y if idx is None else self._y[idx]
            return
        idx = np.arange(self.n) if idx is None else idx
        for start in range(0, len(idx), _MOMENT_CHUNK):
            yb = self.read(idx[start : start + _MOMENT_CHUNK])[1]
            if yb is None:
                raise TypeError("Expected a dataset that yields targets, got inputs only")
            yield yb

    def check_labels(self, n_classes: int) -> None:
        """Class labels of in-memory targets lie in ``0..n_classes-1``."""
        if self.kind != "arrays" or self._y is None:
            return
        y = self._y
        if y.ndim != 1 or (y.size and (not np.all(np.mod(y, 1) == 0))):
            raise ValueError(f"Expected integer class labels of shape (N,), got shape {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(
                f"Expected class labels in 0..{n_classes - 1} (the model outputs {n_classes} "
                f"logits), got labels from {int(y.min())} to {int(y.max())}"
            )

    # -- tensors --------------------------------------------------------------------------
    def tensors(
        self, x: Any, y: Any, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` as float32 on ``device``; ``y`` standardized float32 ``(..., D)`` or int64."""
        xt = torch.as_tensor(_to_numpy(x) if not isinstance(x, torch.Tensor) else x)
        xt = xt.to(device=device, dtype=torch.float32)
        if y is None:
            return xt, None
        if self.task == "classification":
            return xt, torch.as_tensor(_to_numpy(y)).to(device=device, dtype=torch.long)
        if self.shift is None or self.scale is None:
            raise RuntimeError("fit_scaling must run before regression targets are read")
        ya = np.asarray(_to_numpy(y), dtype=np.float64)
        ya = (ya.reshape(len(ya), -1) - self.shift) / self.scale
        return xt, torch.as_tensor(ya, dtype=torch.float32, device=device)

    def labelled(self, x: Any, y: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`tensors` of training data, whose targets must be there."""
        xt, yt = self.tensors(x, y, device)
        if yt is None:
            raise TypeError(f"Expected training targets, got inputs only (from {self.kind})")
        return xt, yt

    def gather(
        self, idx: np.ndarray, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stacked lane minibatches: ``idx`` of shape ``(L, b)`` -> ``x (L, b, ...)``, ``y``."""
        lanes, b = idx.shape
        x, y = self.read(idx.reshape(-1))
        xt, yt = self.tensors(x, y, device)
        xt = xt.reshape(lanes, b, *xt.shape[1:])
        if yt is not None:
            yt = yt.reshape(lanes, b, *yt.shape[1:])
        return xt, yt

    def loader_batches(
        self, lanes: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loader's own batches, the same for every lane: ``(L, b, ...)`` views."""
        for batch in self.loader:  # type: ignore[union-attr]
            xt, yt = self.labelled(batch[0], batch[1], device)
            yield (
                xt.unsqueeze(0).expand(lanes, *xt.shape),
                yt.unsqueeze(0).expand(lanes, *yt.shape),
            )

    def input_batches(self, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Inputs in order, ``batch_size`` at a time (targets ignored), float32 on ``device``."""
        if self.kind == "loader":
            for batch in self.loader:  # type: ignore[union-attr]
                first = batch[0] if isinstance(batch, tuple | list) else batch
                yield self.tensors(first, None, device)[0]
            return
        for start in range(0, self.n, batch_size):
            x, _ = self.read(np.arange(start, min(start + batch_size, self.n)))
            yield self.tensors(x, None, device)[0]

    def probe(self, device: torch.device) -> torch.Tensor:
        """Two samples (or one) to try the model on."""
        if self.kind == "loader":
            return next(self.input_batches(2, device))[:2]
        return self.tensors(self.read(np.arange(min(2, self.n)))[0], None, device)[0]


def as_source(x: Any, y: Any = None, *, name: str = "x") -> Source:
    """Wrap ``x`` (and ``y``) as a :class:`Source`."""
    return Source(x, y, name=name)


# -- single-network fits ----------------------------------------------------------------------
@dataclass
class Prepared:
    """Training data of a fit: the source, the target scaling ``(D,)`` (regression; None for
    classification) and the output width ``d`` (``D`` targets or ``C`` classes)."""

    source: Source
    shift: np.ndarray | None
    scale: np.ndarray | None
    d: int


def prepare(x: Any, y: Any, task: str, model: nn.Module, device: torch.device) -> Prepared:
    """Wrap the data, standardise regression targets and check the model's output width.

    Parameters
    ----------
    x, y
        As for ``fit``: arrays ``(N, *input_shape)`` and ``(N, D)`` or ``(N,)``, a dataset or
        a DataLoader (with ``y=None``).
    task : {"regression", "classification"}
    model : nn.Module
        Must map inputs to ``(N, 2 * D)`` (D means, then D raw scales) or ``(N, C)`` logits.
    device : torch.device

    Returns
    -------
    Prepared
        Regression targets standardised with the training mean and std (like
        ``DeepEnsemble``).
    """
    source = Source(x, y)
    source.task = task
    if source.n == 0:
        raise ValueError("Expected at least one training sample, got 0")
    shift = scale = None
    d = 0
    if task == "regression":
        mean, std = source.target_moments(None)
        shift, scale = mean, np.where(std > 0, std, 1.0)
        source.shift, source.scale = shift, scale
        d = len(shift)
    probe = source.probe(device)
    with torch.no_grad():
        out = model.to(device).eval()(probe)
    if out.dim() != 2 or out.shape[0] != len(probe):
        raise ValueError(
            f"The model must map inputs of shape {tuple(probe.shape)} to (N, outputs), "
            f"got {tuple(out.shape)}"
        )
    if task == "classification":
        d = int(out.shape[1])
        source.check_labels(d)
    else:
        HeadSpec(task, d, True).check_output(int(out.shape[1]))
    return Prepared(source, shift, scale, d)


def first_inputs(source: Source, k: int, device: torch.device) -> torch.Tensor:
    """The first ``k`` inputs ``(k, *input_shape)`` (fewer when there are fewer), float32 on
    ``device``."""
    if source.kind == "loader":
        return next(source.input_batches(k, device))[:k]
    return source.tensors(source.read(np.arange(min(k, source.n)))[0], None, device)[0]


def minibatches(
    source: Source, rng: np.random.Generator, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of ``(x, y, idx)`` minibatches in an order drawn from ``rng``; ``idx`` holds
    the samples' indices (sorted within a batch: datasets read faster)."""
    if source.kind == "loader":
        for batch in source.loader:  # type: ignore[union-attr]
            xb, yb = source.labelled(batch[0], batch[1], device)
            yield xb, yb, torch.arange(len(xb), device=device)
        return
    order = rng.permutation(source.n)
    for start in range(0, source.n, batch_size):
        idx = np.sort(order[start : start + batch_size])
        xb, yb = source.labelled(*source.read(idx), device)
        yield xb, yb, torch.as_tensor(idx, device=device)
