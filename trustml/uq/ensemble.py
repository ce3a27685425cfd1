"""Deep ensembles (Lakshminarayanan et al. 2017) around a scientist's own PyTorch model."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from trustml.exceptions import NotFittedError
from trustml.uq.predictive import Predictive
from trustml.utils.seeding import SeedLike, as_seed_sequence, member_seed_sequences
from trustml.utils.validation import check_in, check_positive_int

__all__ = ["DeepEnsemble"]

log = logging.getLogger("trustml")

_EPS = 1e-6


class _BatchSource:
    """Uniform batched access to arrays or a dataset with ``read(indices)``."""

    def __init__(self, x: Any, y: Any = None) -> None:
        if y is None:
            if not hasattr(x, "read") and not isinstance(x, torch.utils.data.Dataset):
                raise TypeError("Expected arrays (x, y) or a dataset, got a single array")
            self._ds = x
            self.n = len(x)
        else:
            xa, ya = np.asarray(x), np.asarray(y)
            if len(xa) != len(ya):
                raise ValueError(f"x and y differ in length: {len(xa)} != {len(ya)}")
            self._x, self._y, self._ds = xa, ya, None
            self.n = len(xa)

    def read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self._ds is None:
            return self._x[idx], self._y[idx]
        if hasattr(self._ds, "read"):
            return self._ds.read(idx)
        items = [self._ds[int(i)] for i in idx]
        return (
            np.stack([np.asarray(a) for a, _ in items]),
            np.stack([np.asarray(b) for _, b in items]),
        )


def _as_inputs(x: Any) -> tuple[_BatchSource, int]:
    if hasattr(x, "read") or isinstance(x, torch.utils.data.Dataset):
        src = _BatchSource(x)
    else:
        xa = np.asarray(x)
        src = _BatchSource(xa, np.zeros(len(xa)))
    return src, src.n


class DeepEnsemble:
    """An ensemble of K independently initialised and trained copies of a model.

    Parameters
    ----------
    make_model : callable or nn.Module
        A zero-argument callable returning a fresh ``nn.Module``, or a module (deep-copied and
        re-initialised for every member). Regression models output ``2 * D`` numbers per sample
        (``D`` means, then ``D`` raw scales mapped by ``softplus(raw) + 1e-6``); classification
        models output ``C`` logits.
    members : int, default 5
        Number of members K.
    task : {"regression", "classification"}
    seed : int or SeedSequence, optional
        Member ``k`` is initialised and shuffles its data from child ``k`` of
        ``numpy.random.SeedSequence(seed)``.
    standardize_targets : bool, default True
        Regression only: train on targets standardised with the training mean and std, and map
        predictions back to data units.
    device : str or torch.device, default "cpu"

    Examples
    --------
    >>> import torch.nn as nn
    >>> ens = DeepEnsemble(lambda: nn.Linear(3, 2), members=3, task="regression", seed=0)
    >>> ens.fit(np.random.rand(64, 3), np.random.rand(64, 1), epochs=2, progress=False)  # doctest: +ELLIPSIS
    <...DeepEnsemble...>
    >>> ens.predict(np.random.rand(5, 3)).mean.shape
    (5, 1)
    """

    def __init__(
        self,
        make_model: Callable[[], nn.Module] | nn.Module,
        *,
        members: int = 5,
        task: str = "regression",
        seed: SeedLike = None,
        standardize_targets: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.make_model = make_model
        self.members = members
        self.task = task
        self.seed = seed
        self.standardize_targets = standardize_targets
        self.device = device

    # -- construction ---------------------------------------------------------------------
    def _new_member(self, ss: np.random.SeedSequence) -> nn.Module:
        torch.manual_seed(int(ss.generate_state(1, dtype=np.uint32)[0]))
        if isinstance(self.make_model, nn.Module):
            model = copy.deepcopy(self.make_model)
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        elif callable(self.make_model):
            model = self.make_model()
            if not isinstance(model, nn.Module):
                raise TypeError(
                    f"make_model() must return an nn.Module, got {type(model).__name__}"
                )
        else:
            raise TypeError("make_model must be a callable returning an nn.Module, or an nn.Module")
        return model.to(self.device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' before using it."
            )

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        progress: bool | None = None,
    ) -> DeepEnsemble:
        """Train every member on ``(x, y)``.

        Parameters
        ----------
        x : array of shape (N, *input_shape), or a dataset
            A dataset is anything with ``read(indices) -> (x, y)`` (``trustml.data`` datasets,
            HDF5-backed ones included, are read batch by batch) or a ``torch`` map-style
            ``Dataset`` returning ``(x, y)`` pairs; then ``y`` is omitted.
        y : array of shape (N, D) or (N,), optional
            Regression targets (float) or class labels (int).
        epochs, batch_size, lr, weight_decay
            Adam settings shared by all members.
        progress : bool, optional
            Show a progress bar; default: only when stderr is a terminal.

        Returns
        -------
        self
        """
        check_in(
            self.task, ("regression", "classification"), name="task", owner=type(self).__name__
        )
        check_positive_int(self.members, name="members")
        check_positive_int(epochs, name="epochs")
        check_positive_int(batch_size, name="batch_size")
        src = _BatchSource(x, y)
        if src.n == 0:
            raise ValueError("Expected at least one training sample, got 0")
        self._fit_target_scaling(src)
        show = sys.stderr.isatty() if progress is None else progress
        seeds = member_seed_sequences(as_seed_sequence(self.seed), self.members)
        self.members_: list[nn.Module] = []
        self.history_: dict[str, list[list[float]]] = {"loss": []}
        bar = tqdm(
            total=self.members * epochs, disable=not show, desc="deep ensemble", unit="epoch"
        )
        for k, ss in enumerate(seeds):
            init_ss, data_ss = ss.spawn(2)
            model = self._new_member(init_ss)
            rng = np.random.default_rng(data_ss)
            opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
            losses: list[float] = []
            for _ in range(epochs):
                losses.append(self._train_epoch(model, opt, src, rng, batch_size))
                bar.set_postfix(member=f"{k + 1}/{self.members}", loss=f"{losses[-1]:.4f}")
                bar.update()
            model.eval()
            self.members_.append(model)
            self.history_["loss"].append(losses)
        bar.close()
        return self

    def _fit_target_scaling(self, src: _BatchSource) -> None:
        if self.task != "regression":
            self.target_shift_ = self.target_scale_ = None
            return
        # Streamed first and second moments: memory does not grow with N.
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, src.n, 4096):
            _, yb = src.read(np.arange(start, min(start + 4096, src.n)))
            yb = np.asarray(yb, dtype=np.float64).reshape(len(yb), -1)
            total, total_sq, count = total + yb.sum(0), total_sq + (yb**2).sum(0), count + len(yb)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        if not self.standardize_targets:
            mean, std = np.zeros_like(mean), np.ones_like(mean)
        self.target_shift_ = mean
        self.target_scale_ = np.where(std > 0, std, 1.0)

    def _loss(self, out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(out, yb.long())
        mean, std = self._split_head(out, yb.shape[1])
        return F.gaussian_nll_loss(mean, yb, std**2, full=True)

    @staticmethod
    def _split_head(out: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        if out.shape[1] != 2 * d:
            raise ValueError(
                f"A regression member must output 2*D = {2 * d} numbers per sample "
                f"(D means, then D raw scales), got {out.shape[1]}"
            )
        return out[:, :d], F.softplus(out[:, d:]) + _EPS

    def _train_epoch(self, model, opt, src: _BatchSource, rng, batch_size: int) -> float:
        model.train()
        order = rng.permutation(src.n)
        total, count = 0.0, 0
        for start in range(0, src.n, batch_size):
            idx = np.sort(order[start : start + batch_size])
            xb, yb = self._tensors(*src.read(idx))
            opt.zero_grad(set_to_none=True)
            loss = self._loss(model(xb), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    "training loss became non-finite; lower the learning rate or check the data"
                )
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        return total / count

    def _tensors(
        self, xb: np.ndarray, yb: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        xt = torch.as_tensor(np.asarray(xb), dtype=torch.float32, device=self.device)
        if yb is None:
            return xt, None
        if self.task == "classification":
            return xt, torch.as_tensor(np.asarray(yb), dtype=torch.long, device=self.device)
        ya = np.asarray(yb, dtype=np.float64).reshape(len(yb), -1)
        ya = (ya - self.target_shift_) / self.target_scale_
        return xt, torch.as_tensor(ya, dtype=torch.float32, device=self.device)

    # -- prediction -----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: Any, *, batch_size: int = 256) -> Predictive:
        """Predict in batches.

        Parameters
        ----------
        x : array of shape (N, *input_shape), or a dataset (its targets are ignored)

        Returns
        -------
        Predictive
            Regression: member means and stds ``(K, N, D)`` in data units. Classification:
            member probabilities ``(K, N, C)``.
        """
        self._check_fitted()
        src, n = _as_inputs(x)
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, batch_size):
            xb, _ = self._tensors(src.read(np.arange(start, min(start + batch_size, n)))[0], None)
            chunks.append([self._member_output(m, xb) for m in self.members_])
        per_member = [np.concatenate([c[k] for c in chunks]) for k in range(len(self.members_))]
        stacked = np.stack(per_member)
        if self.task == "classification":
            return Predictive.classification(stacked)
        d = stacked.shape[-1] // 2
        return Predictive.regression(stacked[..., :d], stacked[..., d:])

    def _member_output(self, model: nn.Module, xb: torch.Tensor) -> np.ndarray:
        out = model(xb)
        if self.task == "classification":
            return torch.softmax(out, dim=-1).double().cpu().numpy()
        d = len(self.target_shift_)
        mean, std = self._split_head(out, d)
        shift = torch.as_tensor(self.target_shift_, device=out.device)
        scale = torch.as_tensor(self.target_scale_, device=out.device)
        return torch.cat([mean.double() * scale + shift, std.double() * scale], dim=1).cpu().numpy()

    def explain_modules(self) -> list[nn.Module]:
        """One module per member mapping inputs ``(N, *input_shape)`` to the predicted mean in
        data units ``(N, D)`` (regression) or logits ``(N, C)`` (classification).

        Every uncertainty wrapper of trustml has this method; attribution uses it to explain
        the model member by member (or posterior sample by posterior sample).
        """
        self._check_fitted()
        return [self.member_module(k) for k in range(len(self.members_))]

    def member_module(self, k: int, output: str = "mean") -> nn.Module:
        """Member ``k`` as a module mapping inputs to its predicted mean in data units
        ``(N, D)`` (regression) or its logits ``(N, C)`` (classification); for attribution."""
        self._check_fitted()
        check_in(output, ("mean",), name="output")
        if self.task == "classification":
            return self.members_[k]
        return _MeanHead(self.members_[k], self.target_shift_, self.target_scale_)


class _MeanHead(nn.Module):
    """Maps a Gaussian-head member's output to its mean in data units."""

    def __init__(self, model: nn.Module, shift: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.shift.shape[0]
        return self.model(x)[:, :d] * self.scale + self.shift
