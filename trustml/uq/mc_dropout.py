"""Monte Carlo dropout (Gal & Ghahramani 2016): dropout kept on at prediction time."""

from __future__ import annotations

import copy
import sys
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trustml.models import CHANNELWISE_DROPOUT_TYPES, DROPOUT_TYPES, dropout_rates
from trustml.uq._constraints import DEVICE, SEED, Constraint, InstanceOf, Interval, Options
from trustml.uq._heads import HeadSpec, explain_head, to_predictive
from trustml.uq._rng import reinitialize, seed_int, seeded_rng
from trustml.uq._source import Source, minibatches, prepare
from trustml.uq.base import TASKS, UncertaintyEstimator
from trustml.uq.predictive import Predictive
from trustml.utils.seeding import SeedLike, as_seed_sequence, child

__all__ = ["MCDropout"]

_POSITIVE: list[Constraint | None] = [Interval(int, 1, None)]
_EXPLAIN_DRAWS = 20  # default modules for attribution (it runs once per module)
_MAX_ROWS = 4096  # rows per forward when draws are stacked along the batch


class _Draws:
    """Which draws a forward computes (stacked along the batch), and their mask seeds."""

    def __init__(self, seed: np.random.SeedSequence, draws: list[int]) -> None:
        self.seed, self.draws = seed, draws

    def mask_seed(self, draw: int, layer: int) -> int:
        ss = np.random.SeedSequence(
            self.seed.entropy, spawn_key=(*self.seed.spawn_key, draw, layer)
        )
        return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class _DrawDropout(nn.Module):
    """Dropout with one fixed mask per draw, shared by every input row.

    Draw ``k`` is one thinned network (the weight-sample view of MC dropout): its mask does
    not depend on the batch, its size or order, so predictions are the same for any
    ``batch_size`` and attribution sees a fixed function. A forward over ``k * b`` rows
    computes draws ``draws[0..k-1]`` on ``b`` inputs each.
    """

    def __init__(self, p: float, channelwise: bool, layer: int, state: _Draws) -> None:
        super().__init__()
        self.p, self.channelwise, self.layer, self.state = float(p), channelwise, layer, state

    def _mask(self, draw: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.state.mask_seed(draw, self.layer))
        keep = torch.rand(shape, generator=g) >= self.p
        return keep.to(device=device, dtype=torch.float32) / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self.p >= 1.0:
            return torch.zeros_like(x)
        feat = tuple(x.shape[1:])
        shape = (feat[0], *[1] * (len(feat) - 1)) if self.channelwise else feat
        draws = self.state.draws
        masks = torch.stack([self._mask(d, shape, x.device) for d in draws]).to(x.dtype)
        stacked = x.reshape(len(draws), -1, *feat) * masks.unsqueeze(1)
        return stacked.reshape(x.shape)


def _with_draw_dropout(model: nn.Module, state: _Draws) -> nn.Module:
    """A copy of ``model`` whose dropout layers are :class:`_DrawDropout` (eval mode)."""
    model = copy.deepcopy(model)
    layer = 0
    for parent in list(model.modules()):
        for name, sub in list(parent.named_children()):
            if isinstance(sub, DROPOUT_TYPES):
                channelwise = isinstance(sub, CHANNELWISE_DROPOUT_TYPES)
                setattr(parent, name, _DrawDropout(cast(float, sub.p), channelwise, layer, state))
                layer += 1
    return model.eval()


class MCDropout(UncertaintyEstimator):
    """Monte Carlo dropout around a model that has dropout layers.

    The model is trained once, as usual (Gaussian NLL or cross-entropy, dropout on); at
    prediction every posterior draw keeps dropout on with its own masks. Same output
    convention, target standardisation and ``fit``/``predict``/``explain_modules`` contract
    as :class:`~trustml.uq.DeepEnsemble` and :class:`~trustml.uq.BayesianNN`.

    Parameters
    ----------
    module : nn.Module
        Maps ``(N, *input_shape)`` to ``(N, 2 * D)`` (regression: D means, then D raw scales)
        or ``(N, C)`` logits; must contain ``nn.Dropout`` (or ``Dropout1d/2d/3d``) layers
        with ``p > 0``. Deep-copied and re-initialised from ``seed``; not modified.
    samples : int, default 50
        Draws S per prediction (the members of the returned ``Predictive``).
    task : {"regression", "classification"}
    seed : int or SeedSequence, optional
        Initialisation, data order, training dropout and the prediction masks each come from
        a named child of ``numpy.random.SeedSequence(seed)``.
    device : str or torch.device, default "cpu"

    Notes
    -----
    Draw ``k`` drops the same units for every input (one thinned network per draw), with a
    mask seeded by ``(seed, k, layer)`` only: predictions are deterministic given the seed
    and independent of the batch size, and draw ``k``'s attribution module is a fixed
    function.

    Examples
    --------
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 2))
    >>> mc = MCDropout(net, samples=20, seed=0)
    >>> mc.fit(np.random.rand(64, 3), np.random.rand(64, 1), epochs=2, progress=False).predict(
    ...     np.random.rand(5, 3)).member_means.shape
    (20, 5, 1)
    """

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "module": [InstanceOf(nn.Module, "an nn.Module")],
        "samples": _POSITIVE,
        "task": [Options(TASKS)],
        "seed": [None, SEED],
        "device": [DEVICE],
    }

    def __init__(
        self,
        module: nn.Module,
        *,
        samples: int = 50,
        task: str = "regression",
        seed: SeedLike = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.module = module
        self.samples = samples
        self.task = task
        self.seed = seed
        self.device = device

    def _check_param_combinations(self) -> None:
        rates = dropout_rates(self.module)
        if not any(p > 0 for p in rates):
            found = f"its {len(rates)} dropout layer(s) have p = 0" if rates else "it has none"
            raise ValueError(
                "MCDropout needs a module with dropout layers (nn.Dropout, Dropout1d/2d/3d) "
                f"with p > 0; {found}. Build the model with dropout, e.g. "
                "build_model('mlp', ..., dropout=0.1)"
            )

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
    ) -> MCDropout:
        """Train the model with dropout on (Adam).

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader
        y : array of shape (N, D) or (N,), optional
            Regression targets or class labels, with array inputs only.
        epochs, batch_size, lr, weight_decay
            Adam settings; ``weight_decay`` is the L2 term of Gal's dropout objective.
        progress : bool, optional
            Progress bar over epochs; default: only when stderr is a terminal.

        Returns
        -------
        self
        """
        self._validate_params()
        device = self._device()
        settings = self._train_settings(
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            progress=progress,
        )  # fmt: skip
        epochs, batch_size = settings.epochs, settings.batch_size
        ss = as_seed_sequence(self.seed)
        self._ss = ss
        model = reinitialize(self.module, seed_int(child(ss, "init"))).to(device)
        data = prepare(x, y, self.task, model, device)
        head = HeadSpec(self.task, data.d, True)
        optim = torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        rng = np.random.default_rng(child(ss, "data"))
        show = sys.stderr.isatty() if settings.progress is None else settings.progress
        history: list[float] = []
        model.train()
        with (
            seeded_rng(device, seed_int(child(ss, "dropout"))),
            tqdm(total=epochs, disable=not show, desc="MC dropout", unit="epoch") as bar,
        ):
            for epoch in range(epochs):
                total = torch.zeros((), dtype=torch.float64, device=device)
                for xb, yb, _ in minibatches(data.source, rng, batch_size, device):
                    loss = head.loss_sums(model(xb)[None], yb[None])[0]
                    optim.zero_grad(set_to_none=True)
                    (loss / len(xb)).backward()
                    optim.step()
                    total += loss.detach().double()
                value = float(total) / data.source.n
                if not np.isfinite(value):
                    raise FloatingPointError(
                        f"the training loss became non-finite in epoch {epoch + 1}; lower the "
                        "learning rate or check the data"
                    )
                history.append(value)
                bar.set_postfix(loss=f"{value:.4f}")
                bar.update()
        self.model_ = model.eval()
        self.history_ = {"loss": history}
        self.target_shift_, self.target_scale_ = data.shift, data.scale
        self.n_outputs_ = data.d
        return self

    def _n_draws(self, method: str, samples: int | None) -> int:
        if samples is None:
            return self.samples
        return self._check_argument(method, "samples", samples, _POSITIVE)

    @torch.no_grad()
    def predict(self, x: Any, *, samples: int | None = None, batch_size: int = 256) -> Predictive:
        """``S`` dropout draws at ``x``.

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader (targets are ignored)
        samples : int, optional
            Draws S; default the ``samples`` given at construction.
        batch_size : int, default 256

        Returns
        -------
        Predictive
            Regression: member means and stds ``(S, N, D)`` in data units. Classification:
            member logits and probabilities ``(S, N, C)``.
        """
        self._check_fitted()
        k = self._n_draws("predict", samples)
        self._check_argument("predict", "batch_size", batch_size, _POSITIVE)
        state = _Draws(child(self._ss, "masks"), [])
        net = _with_draw_dropout(self.model_, state)
        outs = []
        for xb in Source(x).input_batches(batch_size, self._device()):
            step = max(1, _MAX_ROWS // len(xb))
            parts = []
            for start in range(0, k, step):
                state.draws = list(range(start, min(k, start + step)))
                tiled = xb.repeat(len(state.draws), *[1] * (xb.dim() - 1))
                parts.append(net(tiled).reshape(len(state.draws), len(xb), -1))
            outs.append(torch.cat(parts))
        if not outs:
            raise ValueError("Expected at least one sample to predict, got 0")
        out = torch.cat(outs, dim=1)
        return to_predictive(
            self.task, self.n_outputs_, out, self.target_shift_, self.target_scale_
        )

    def _explain_modules(self, output: str, samples: int | None) -> list[nn.Module]:
        """One module per draw (its masks fixed); draw ``k`` is the same as in
        :meth:`predict`. ``samples`` defaults to the smaller of 20 and the ``samples`` given
        at construction (attribution runs once per module)."""
        count = min(_EXPLAIN_DRAWS, self.samples) if samples is None else samples
        modules = []
        for k in range(count):
            net = _with_draw_dropout(self.model_, _Draws(child(self._ss, "masks"), [k]))
            modules.append(
                explain_head(net, self.task, self.target_shift_, self.target_scale_, output)
            )
        return modules
