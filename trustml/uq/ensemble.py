"""Deep ensembles (Lakshminarayanan et al. 2017) around a scientist's own PyTorch model."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trustml.uq._constraints import (
    BOOLEAN,
    DEVICE,
    SEED,
    Constraint,
    Interval,
    IsCallable,
    Options,
)
from trustml.uq._ensemble_io import load_weights, read_ensemble, write_ensemble
from trustml.uq._fit_loop import (
    BatchOrder,
    GradientGroup,
    split_validation,
    train_members,
)
from trustml.uq._heads import HeadSpec, Homoscedastic, build_member, explain_head, member_outputs
from trustml.uq._lanes import split_lanes
from trustml.uq._member_parts import merge_parts
from trustml.uq._source import Source
from trustml.uq._vectorized import build_engine
from trustml.uq.base import TASKS, UncertaintyEstimator
from trustml.uq.predictive import Predictive
from trustml.utils.seeding import SeedLike, as_seed_sequence, member_seed_sequences

__all__ = ["DeepEnsemble"]

_BATCH: list[Constraint | None] = [Interval(int, 1, None)]


class DeepEnsemble(UncertaintyEstimator):
    """An ensemble of K independently initialised and trained copies of a model.

    Members are trained and evaluated together on one device (``vectorize="auto"``): models
    built from standard layers, or whose class implements
    :class:`trustml.models.GroupedModule` (the builtin ``cnn`` and ``mlp`` do), run as one
    grouped network; other models under ``torch.func.vmap``; models ``vmap`` cannot run
    (checked on a probe batch) train member by member, with a log line saying why. Every path
    gives the same numbers up to float rounding.

    Parameters
    ----------
    make_model : callable or nn.Module
        A zero-argument callable returning a fresh ``nn.Module``, or a module (deep-copied and
        re-initialised for every member). Regression members output ``2 * D`` numbers per sample
        (``D`` means, then ``D`` raw scales mapped by ``softplus(raw) + 1e-6``), or ``D`` means
        when ``heteroscedastic=False``; classification members output ``C`` logits.
    members : int, default 5
        Number of members K.
    task : {"regression", "classification"}
        Gaussian negative log-likelihood or cross-entropy.
    seed : int or SeedSequence, optional
        Member ``k`` is initialised, shuffles its data and draws its dropout masks from child
        ``k`` of ``numpy.random.SeedSequence(seed)`` only: its result does not depend on how
        many members there are or which train beside it (distributed runs need a seed).
    heteroscedastic : bool, default True
        Regression: members predict a noise level per sample. ``False``: the model outputs
        ``D`` means and each member learns one log-std per target dimension.
    standardize_targets : bool, default True
        Regression: train on targets standardised with the training mean and std; predictions
        are mapped back to data units.
    device : str or torch.device, default "cpu"
    vectorize : {"auto", True, False}, default "auto"
        ``False`` trains members one by one; ``True`` raises if the model cannot be vectorized.

    Attributes
    ----------
    members_ : list of nn.Module
        The K trained members (eval mode). With ``heteroscedastic=False`` each wraps the model
        and holds its ``log_std``.
    history_ : dict
        ``{"loss": [[per epoch] per member], "val_loss": ...}`` (``val_loss`` with validation).
    target_shift_, target_scale_ : ndarray of shape (D,) or None
        Target standardisation (regression).
    validation_indices_ : ndarray of int or None
        Samples held out for validation.
    n_outputs_ : int
        Number of targets ``D`` (regression) or classes ``C``.
    training_engine_ : str
        ``"grouped"``, ``"vmap"`` or ``"loop"``.

    Notes
    -----
    Distributed training (``trustml.distributed``): ``part = ens._fit_members(indices, x, y,
    **fit_options)`` trains only the members ``indices`` and returns plain, picklable data;
    ``ens._assemble(parts)`` installs parts covering ``0..K-1``. ``fit`` is
    ``_assemble([_fit_members(range(K), ...)])``. With a ``DataLoader``, member order comes
    from the loader. Vectorized and looped training agree to float rounding (grouped kernels
    sum in another order); member k's numbers do not depend on the other members either way.

    Examples
    --------
    >>> import torch.nn as nn
    >>> ens = DeepEnsemble(lambda: nn.Linear(3, 2), members=3, task="regression", seed=0)
    >>> ens.fit(np.random.rand(64, 3), np.random.rand(64, 1), epochs=2, progress=False)  # doctest: +ELLIPSIS
    <...DeepEnsemble...>
    >>> ens.predict(np.random.rand(5, 3)).mean.shape
    (5, 1)
    """

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "make_model": [IsCallable("a callable returning an nn.Module, or an nn.Module")],
        "members": [Interval(int, 1, None)],
        "task": [Options(TASKS)],
        "seed": [None, SEED],
        "heteroscedastic": [BOOLEAN],
        "standardize_targets": [BOOLEAN],
        "device": [DEVICE],
        "vectorize": [Options(("auto", True, False))],
    }

    def __init__(
        self,
        make_model: Callable[[], nn.Module] | nn.Module,
        *,
        members: int = 5,
        task: str = "regression",
        seed: SeedLike = None,
        heteroscedastic: bool = True,
        standardize_targets: bool = True,
        device: str | torch.device = "cpu",
        vectorize: bool | str = "auto",
    ) -> None:
        self.make_model = make_model
        self.members = members
        self.task = task
        self.seed = seed
        self.heteroscedastic = heteroscedastic
        self.standardize_targets = standardize_targets
        self.device = device
        self.vectorize = vectorize

    def _head(self, n_outputs: int) -> HeadSpec:
        return HeadSpec(self.task, n_outputs, self.heteroscedastic)

    # -- construction ---------------------------------------------------------------------
    def _new_member(self, seed: int, d: int, device: torch.device) -> nn.Module:
        model = build_member(self.make_model, seed)
        if self.task == "regression" and not self.heteroscedastic:
            model = Homoscedastic(model, d)
        return model.to(device)

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
        validation: float = 0.0,
        patience: int | None = None,
        progress: bool | None = None,
    ) -> DeepEnsemble:
        """Train every member on ``(x, y)``.

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader
            Arrays or tensors (with ``y``); anything with ``read(indices) -> (x, y)``
            (``trustml.data`` datasets, HDF5-backed ones read batch by batch); a torch
            map-style ``Dataset`` of ``(x, y)`` pairs; or a ``DataLoader`` of ``(x, y)`` batches,
            whose own batching and order then serve every member (member k's data order comes
            from the loader, not from its seed).
        y : array of shape (N, D) or (N,), optional
            Regression targets (float) or class labels (int), with array inputs only.
        epochs, batch_size, lr, weight_decay
            Adam settings shared by all members; each member draws its own minibatches.
        validation : float in [0, 1), default 0
            Fraction of the samples held out (the same for every member, drawn from the seed)
            to record ``history_["val_loss"]`` (mean NLL in standardised units).
        patience : int, optional
            Early stopping: member k stops after ``patience`` epochs without a lower validation
            loss and keeps its best weights. Needs ``validation > 0``.
        progress : bool, optional
            A progress bar over epochs; default: only when stderr is a terminal.

        Returns
        -------
        self
        """
        part = self._fit_members(
            range(self.members),
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            validation=validation,
            patience=patience,
            progress=progress,
        )
        return self._assemble([part])

    def _fit_members(
        self,
        member_indices: Iterable[int],
        x: Any,
        y: Any = None,
        *,
        epochs: int = 20,
        batch_size: int = 64,
        lr: float | Sequence[float] = 1e-3,
        weight_decay: float | Sequence[float] = 0.0,
        validation: float = 0.0,
        patience: int | None = None,
        progress: bool | None = None,
        nonfinite: str = "raise",
        order: BatchOrder | None = None,
        group: GradientGroup | None = None,
    ) -> dict[str, Any]:
        """Train only the members ``member_indices`` (for distributed runs).

        Parameters
        ----------
        member_indices : iterable of int
            Distinct indices in ``0..members-1``.
        x, y, **options
            As for :meth:`fit`; ``lr`` and ``weight_decay`` may also give one value per member
            of ``member_indices`` (a hyper-parameter search trains trials as lanes).
        nonfinite : {"raise", "stop"}, default "raise"
            A member whose training loss becomes non-finite raises, or (``"stop"``) stops
            with its weights as they are while the others train on.
        order : BatchOrder, optional
            How each epoch's minibatches are drawn and read (default: a per-member random
            permutation, :class:`trustml.uq._fit_loop.RandomOrder`).
        group : GradientGroup, optional
            The ranks that train these same members on shares of every batch (data
            parallelism inside a member); ``None``: this rank alone.

        Returns
        -------
        dict
            A part (plain, picklable data; see :mod:`trustml.uq._member_parts`):
            ``member_indices``, ``state_dicts`` (CPU tensors), ``history``, ``target_shift``,
            ``target_scale``, ``n_outputs``, ``validation_indices``, ``engine``.
        """
        self._validate_params()
        device = self._device()
        ids = [int(k) for k in member_indices]
        if not ids or len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) >= self.members:
            raise ValueError(
                f"Expected distinct member indices in 0..{self.members - 1}, got {ids}"
            )
        self._check_argument("_fit_members", "nonfinite", nonfinite, [Options(("raise", "stop"))])
        lr, weight_decay, lanes = split_lanes(
            f"{type(self).__name__}.fit", len(ids), lr, weight_decay
        )
        settings = self._train_settings(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            validation=validation,
            patience=patience,
            progress=progress,
        )
        source = Source(x, y)
        source.task = self.task
        ss = as_seed_sequence(self.seed)  # once: seed=None must not differ between members
        train_idx, val_idx = split_validation(source, settings.validation, settings.patience, ss)
        if self.task == "regression":
            source.fit_scaling(train_idx if val_idx is not None else None, self.standardize_targets)
        shift, scale = source.shift, source.scale
        probe = source.probe(device)
        seeds = member_seed_sequences(ss, self.members)
        children = [seeds[k].spawn(3) for k in ids]  # (init, data order, dropout/noise)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            n_out = len(shift) if shift is not None else 0
            inits = [int(c[0].generate_state(1, dtype=np.uint32)[0]) for c in children]
            modules = [self._new_member(s, n_out, device) for s in inits]
            n_out = member_outputs(modules[0], probe, self._head(n_out))
            if self.task == "classification":
                source.check_labels(n_out)
            head = self._head(n_out)
            noise = [c[2].generate_state(2, dtype=np.uint32) for c in children]
            engine = build_engine(
                modules,
                head,
                probe,
                vectorize=self.vectorize,
                train=True,
                keys=[int(s[0]) for s in noise],
                rng_seeds=[int(s[1]) for s in noise],
            )
            history = train_members(
                engine,
                head,
                source,
                data_seeds=[c[1] for c in children],
                train_idx=train_idx,
                val_idx=val_idx,
                settings=settings,
                device=device,
                labels=ids,
                lanes=lanes,
                nonfinite=nonfinite,
                order=order,
                group=group,
            )
            engine.write_back(modules)
        return {
            "member_indices": ids,
            "state_dicts": [
                {n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for m in modules
            ],
            "history": history,
            "target_shift": shift,
            "target_scale": scale,
            "n_outputs": n_out,
            "validation_indices": val_idx,
            "engine": engine.kind,
        }

    def _assemble(self, parts: Sequence[Mapping[str, Any]]) -> DeepEnsemble:
        """Install members trained by :meth:`_fit_members` calls, e.g. on several ranks.

        Parameters
        ----------
        parts : sequence of dict
            Results of :meth:`_fit_members` (same data and settings) covering every member
            index ``0..members-1`` exactly once, in any order.

        Returns
        -------
        self
        """
        merged = merge_parts(parts, self.members)
        first = merged.shared
        self._install(
            merged.state_dicts,
            merged.history,
            first["target_shift"],
            first["target_scale"],
            int(first["n_outputs"]),
        )
        val = first["validation_indices"]
        self.validation_indices_ = None if val is None else np.asarray(val)
        self.training_engine_ = str(first["engine"])
        return self

    def _install(
        self,
        state_dicts: Sequence[Mapping[str, torch.Tensor]],
        history: dict[str, list[list[float]]],
        shift: np.ndarray | None,
        scale: np.ndarray | None,
        n_outputs: int,
    ) -> None:
        self._validate_params()
        device = self._device()
        built = []
        for k, state in enumerate(state_dicts):
            model = self._new_member(0, n_outputs, device)
            load_weights(model, state, k)
            built.append(model.eval())
        self.members_: list[nn.Module] = built
        self.history_ = history
        self.target_shift_ = None if shift is None else np.asarray(shift, dtype=np.float64)
        self.target_scale_ = None if scale is None else np.asarray(scale, dtype=np.float64)
        self.n_outputs_ = n_outputs

    # -- prediction -----------------------------------------------------------------------
    def predict(self, x: Any, *, batch_size: int = 256) -> Predictive:
        """Predict in batches, all members at once.

        Parameters
        ----------
        x : array of shape (N, *input_shape), a dataset or a DataLoader (targets are ignored)
        batch_size : int, default 256
            Samples per batch (a DataLoader keeps its own).

        Returns
        -------
        Predictive
            Regression: member means and stds ``(K, N, D)`` in data units. Classification:
            member probabilities ``(K, N, C)``.
        """
        self._check_fitted()
        self._check_argument("predict", "batch_size", batch_size, _BATCH)
        head = self._head(self.n_outputs_)
        with torch.no_grad():
            parts = [
                head.to_data_units(out, self.target_shift_, self.target_scale_)
                for out in self._outputs(x, batch_size, head)
            ]
        if not parts:
            raise ValueError("Expected at least one sample to predict, got 0")
        first = np.concatenate([a for a, _ in parts], axis=1)
        if self.task == "classification":
            return Predictive.classification(first)
        return Predictive.regression(first, np.concatenate([b for _, b in parts], axis=1))

    def _outputs(self, x: Any, batch_size: int, head: HeadSpec) -> Iterator[torch.Tensor]:
        """Raw member outputs ``(K, b, O)``, batch by batch, all members at once."""
        device = self._device()
        engine = None
        for xb in Source(x).input_batches(batch_size, device):
            if engine is None:
                # fit already said why it fell back; a loaded ensemble says it here
                quiet = getattr(self, "training_engine_", None) == "loop"
                engine = build_engine(
                    self.members_,
                    head,
                    xb[:2],
                    vectorize=self.vectorize,
                    train=False,
                    log_level=logging.DEBUG if quiet else logging.INFO,
                )
            yield engine.forward(xb)

    def _explain_modules(self, output: str, samples: int | None) -> list[nn.Module]:
        """Members ``0..samples-1`` (default: all K) for attribution; see
        :meth:`UncertaintyEstimator.explain_modules`."""
        k = len(self.members_)
        if samples is not None and samples > k:
            raise ValueError(
                f"Expected samples <= {k} (the members of this ensemble), got {samples}"
            )
        return [
            self.member_module(j, output=output) for j in range(k if samples is None else samples)
        ]

    def member_module(self, k: int, output: str = "mean") -> nn.Module:
        """Member ``k`` as a module for attribution, in eval mode.

        Parameters
        ----------
        k : int
            Member index in ``0..K-1``.
        output : {"mean", "std"}, default "mean"
            Map inputs ``(N, *input_shape)`` to the member's predicted mean in data units
            ``(N, D)`` (regression) or its logits ``(N, C)`` (classification); ``"std"``: its
            predicted std in data units ``(N, D)`` (regression).

        Returns
        -------
        nn.Module
        """
        self._check_fitted()
        return explain_head(
            self.members_[k],
            self.task,
            self.target_shift_,
            self.target_scale_,
            output,
            heteroscedastic=self.heteroscedastic,
        )

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write weights, configuration and target scaling to one file (atomically).

        The file holds only tensors, numbers, strings, lists and dicts (``torch.save``), so
        :meth:`load` reads it with ``torch.load(weights_only=True)``.

        Returns
        -------
        pathlib.Path
        """
        self._check_fitted()
        # the architecture comes from load()'s make_model, the device from its caller
        config = {k: v for k, v in self.get_params().items() if k not in ("make_model", "device")}
        fitted = {
            "n_outputs": self.n_outputs_,
            "target_shift": self.target_shift_,
            "target_scale": self.target_scale_,
            "validation_indices": self.validation_indices_,
            "training_engine": self.training_engine_,
            "history": self.history_,
        }
        return write_ensemble(path, config, fitted, self.members_)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        make_model: Callable[[], nn.Module] | nn.Module,
        *,
        device: str | torch.device = "cpu",
    ) -> DeepEnsemble:
        """Read an ensemble written by :meth:`save`; ``make_model`` rebuilds the architecture.

        Parameters
        ----------
        path : path-like
        make_model : callable or nn.Module
            As for the constructor; it must build the architecture the members were trained
            with.
        device : str or torch.device, default "cpu"

        Raises
        ------
        ValueError
            The file is not a saved DeepEnsemble, or ``make_model`` builds a different
            architecture (the message names the member and the first mismatching weight).
        """
        config, fitted, state_dicts = read_ensemble(path)
        ens = cls(make_model, device=device, **config)
        try:
            ens._install(
                state_dicts,
                fitted["history"],
                fitted["target_shift"],
                fitted["target_scale"],
                int(fitted["n_outputs"]),
            )
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        ens.validation_indices_ = fitted["validation_indices"]
        ens.training_engine_ = fitted["training_engine"]
        return ens
