"""LSTM over sequences ``(N, T, F)``, written with plain tensor ops so ``vmap`` can batch it.

``torch.nn.LSTM`` has no ``vmap`` batching rule (``aten::lstm``), so vectorized ensembles could
not train it. :class:`_LSTMStack` uses the same parameter names, shapes, gate order (i, f, g, o)
and initialisation as ``nn.LSTM``, so a ``state_dict`` moves between the two unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trustml.exceptions import TrustmlInputError
from trustml.models._options import (
    check_dropout,
    check_input_shape,
    check_output_dim,
    check_positive,
    resolve_options,
)

__all__ = ["LSTM_DEFAULTS", "build_lstm"]

LSTM_DEFAULTS: dict[str, Any] = {"hidden": 64, "layers": 1, "bidirectional": False, "dropout": 0.0}


class _LSTMStack(nn.Module):
    """Stacked (optionally bidirectional) LSTM, ``batch_first``, zero initial state.

    ``forward`` returns the final hidden state of the top layer, ``(N, hidden * directions)``:
    the forward direction after step ``T-1`` and the backward direction after step ``0``.
    """

    def __init__(
        self, input_size: int, hidden: int, layers: int, bidirectional: bool, dropout: float
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.layers = layers
        self.directions = 2 if bidirectional else 1
        self.between = nn.Dropout(dropout)
        # Registration order matches nn.LSTM so reset_parameters draws the same numbers.
        for layer in range(layers):
            width = input_size if layer == 0 else hidden * self.directions
            for sfx in self._suffixes():
                name = f"l{layer}{sfx}"
                self.register_parameter(
                    f"weight_ih_{name}", nn.Parameter(torch.empty(4 * hidden, width))
                )
                self.register_parameter(
                    f"weight_hh_{name}", nn.Parameter(torch.empty(4 * hidden, hidden))
                )
                self.register_parameter(f"bias_ih_{name}", nn.Parameter(torch.empty(4 * hidden)))
                self.register_parameter(f"bias_hh_{name}", nn.Parameter(torch.empty(4 * hidden)))
        self.reset_parameters()

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[: self.directions]

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _direction(
        self, x: torch.Tensor, name: str, reverse: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w_hh = getattr(self, f"weight_hh_{name}")
        # Input projections of all steps at once; only the recurrence is sequential.
        xi = (
            x @ getattr(self, f"weight_ih_{name}").T
            + getattr(self, f"bias_ih_{name}")
            + getattr(self, f"bias_hh_{name}")
        )
        h = xi.new_zeros(x.shape[0], self.hidden)
        c = h
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        outputs: list[torch.Tensor] = [h] * x.shape[1]
        for t in steps:
            i, f, g, o = (xi[:, t] + h @ w_hh.T).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs[t] = h
        return torch.stack(outputs, dim=1), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        finals: list[torch.Tensor] = []
        for layer in range(self.layers):
            if layer > 0:
                x = self.between(x)
            runs = [
                self._direction(x, f"l{layer}{sfx}", reverse=sfx == "_reverse")
                for sfx in self._suffixes()
            ]
            x = torch.cat([seq for seq, _ in runs], dim=-1)
            finals = [last for _, last in runs]
        return torch.cat(finals, dim=-1)


class _RecurrentNet(nn.Module):
    def __init__(
        self, input_shape: tuple[int, ...], lstm: _LSTMStack, dropout: float, head: nn.Linear
    ) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.lstm = lstm
        self.dropout = nn.Dropout(dropout)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.input_shape[1]:
            raise TrustmlInputError(
                f"lstm input: expected shape (N, T, {self.input_shape[1]}), got {tuple(x.shape)}"
            )
        return self.head(self.dropout(self.lstm(x)))


def build_lstm(input_shape: Any, output_dim: Any, **options: Any) -> nn.Module:
    """Build the ``lstm`` model; see :func:`trustml.models.build_model` for the options."""
    shape = check_input_shape("lstm", input_shape, (2,), "(T, F): a sequence per sample")
    output_dim = check_output_dim("lstm", output_dim)
    opts = resolve_options("lstm", options, LSTM_DEFAULTS)
    hidden = check_positive("lstm", "hidden", opts["hidden"])
    layers = check_positive("lstm", "layers", opts["layers"])
    if not isinstance(opts["bidirectional"], bool):
        raise TrustmlInputError(
            f"model 'lstm' option 'bidirectional': expected true or false, got {opts['bidirectional']!r}"
        )
    dropout = check_dropout("lstm", opts["dropout"])
    directions = 2 if opts["bidirectional"] else 1
    lstm = _LSTMStack(shape[1], hidden, layers, opts["bidirectional"], dropout)
    return _RecurrentNet(shape, lstm, dropout, nn.Linear(hidden * directions, output_dim))
