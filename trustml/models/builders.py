"""The builtin reference models by name: ``cnn``, ``lstm``, ``mlp``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from trustml.exceptions import TrustmlInputError
from trustml.models.cnn import build_cnn
from trustml.models.lstm import build_lstm
from trustml.models.mlp import build_mlp
from trustml.registry import Registry

__all__ = ["MODELS", "build_model", "model_names"]

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")
MODELS.register("cnn")(build_cnn)
MODELS.register("lstm")(build_lstm)
MODELS.register("mlp")(build_mlp)


def model_names() -> list[str]:
    """Names of the builtin models, sorted: ``["cnn", "lstm", "mlp"]``."""
    return MODELS.names()


def build_model(
    name: str, *, input_shape: tuple[int, ...], output_dim: int, **options: Any
) -> nn.Module:
    """Build a builtin reference model.

    Every builtin model maps ``(N, *input_shape)`` to ``(N, output_dim)``, has no BatchNorm, no
    in-place ops on its input and no data-dependent control flow, so members can be stacked with
    ``torch.func.stack_module_state`` and evaluated under ``torch.func.vmap``. Parameters use the
    default PyTorch initialisation and are therefore reproducible under ``torch.manual_seed``.

    Parameters
    ----------
    name : {"cnn", "lstm", "mlp"}
        Which model.
    input_shape : tuple of int
        Shape of one sample, without the batch dimension ``N``.

        - ``cnn``: ``(C, L)``, ``(C, H, W)``, ``(C, D, H, W)`` -> Conv1d/2d/3d; ``(C, T, D, H, W)``
          folds ``T`` into channels (``C*T``) and uses Conv3d.
        - ``mlp``: any shape; the sample is flattened.
        - ``lstm``: ``(T, F)``, a sequence of ``T`` steps with ``F`` features.
    output_dim : int
        Size of the output per sample (regression targets, or class logits).
    **options
        Model options; an unknown name raises :class:`~trustml.exceptions.TrustmlInputError`
        listing the valid ones.

        - ``cnn``: ``channels=(16, 32)`` (one block per entry: conv with ``kernel_size`` and
          "same" padding, activation, 2x max-pool along every spatial axis still >= 2),
          ``kernel_size=3`` (odd), ``hidden=64``, ``dropout=0.0``, ``activation="relu"``.
          Blocks -> global average pool -> Linear(hidden) -> activation -> Dropout -> Linear.
        - ``mlp``: ``hidden=(64, 64)`` (may be empty: a linear model), ``dropout=0.0`` (after each
          hidden activation), ``activation="relu"``.
        - ``lstm``: ``hidden=64``, ``layers=1``, ``bidirectional=False``, ``dropout=0.0``
          (between stacked layers and before the Linear head). The head reads the final hidden
          state of the top layer (the last time step; for a bidirectional LSTM concatenated with
          the backward direction's state after the first step).

        ``activation`` is one of ``"gelu"``, ``"relu"``, ``"silu"``, ``"tanh"``.

    Returns
    -------
    torch.nn.Module
        Maps a tensor ``(N, *input_shape)`` to ``(N, output_dim)``.

    Raises
    ------
    TrustmlInputError
        Unknown model or option, or a bad value (the message names the option and what was
        expected).

    Examples
    --------
    >>> import torch
    >>> net = build_model("cnn", input_shape=(1, 32, 32), output_dim=2, channels=(8, 16))
    >>> net(torch.zeros(4, 1, 32, 32)).shape
    torch.Size([4, 2])
    """
    try:
        builder = MODELS.get(name)
    except KeyError as err:
        raise TrustmlInputError(err.args[0]) from None
    return builder(input_shape, output_dim, **options)
