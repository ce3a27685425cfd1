"""The dropout module types trustml recognises, declared once.

MC dropout keeps these on at prediction, the ensemble engines replace them with per-member
masks, and the protocol checks a model has one before choosing ``mc_dropout``; all of them
read the tuples below.

Examples
--------
>>> from torch import nn
>>> from trustml.models import dropout_rates
>>> dropout_rates(nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.1), nn.Linear(4, 1)))
[0.1]
"""

from __future__ import annotations

from typing import cast

from torch import nn

__all__ = ["CHANNELWISE_DROPOUT_TYPES", "DROPOUT_TYPES", "dropout_rates"]

#: Every dropout module trustml recognises (exact classes and their subclasses).
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)

#: The dropout modules that drop whole channels (one draw per ``(sample, channel)``).
CHANNELWISE_DROPOUT_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def dropout_rates(model: nn.Module) -> list[float]:
    """The drop probability ``p`` of every dropout module of ``model``, in ``modules()`` order.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    list of float
        Empty when the model has no dropout module (see :data:`DROPOUT_TYPES`).
    """
    return [float(cast(float, m.p)) for m in model.modules() if isinstance(m, DROPOUT_TYPES)]
