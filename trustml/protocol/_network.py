"""The protocol's network: a factory of new, untrained models for the data's input shape."""

from __future__ import annotations

from collections.abc import Callable

import torch

from trustml.data import BaseDataset
from trustml.models import build_from_factory, build_model
from trustml.protocol.schema import Protocol

__all__ = ["model_factory"]


def model_factory(
    protocol: Protocol, ds: BaseDataset, output_dim: int
) -> Callable[[], torch.nn.Module]:
    """A function that builds a new network of ``protocol.model`` for ``ds``'s inputs, with
    ``output_dim`` outputs (builtin or the user's factory)."""
    m = protocol.model

    def make_model() -> torch.nn.Module:
        if m.builtin is not None:
            return build_model(
                m.builtin, input_shape=tuple(ds.input_shape), output_dim=output_dim, **m.options
            )
        assert m.factory is not None  # ModelSpec holds exactly one of builtin and factory
        return build_from_factory(
            m.factory, input_shape=tuple(ds.input_shape), output_dim=output_dim, **m.options
        )

    return make_model
