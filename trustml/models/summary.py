"""A plain-data description of a model, for reports and manifests."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["model_summary"]


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Count parameters and list the layers that own them.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    dict
        JSON-serialisable:

        - ``"n_parameters"`` (int): parameter elements, shared parameters counted once.
        - ``"n_trainable"`` (int): of those, the ones with ``requires_grad``.
        - ``"layers"`` (list of dict): one entry per leaf module or module owning parameters
          directly, in registration order, with ``"name"`` (dotted path, ``""`` for the root),
          ``"type"`` (class name), ``"n_parameters"``, ``"n_trainable"`` (own parameters only) and
          ``"parameter_shapes"`` (``{parameter name: list of int}``).
        - ``"text"`` (str): ``str(model)``.

    Examples
    --------
    >>> from torch import nn
    >>> s = model_summary(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    >>> s["n_parameters"], [layer["type"] for layer in s["layers"]]
    (8, ['Linear', 'ReLU'])
    """
    unique = {id(p): p for p in model.parameters()}.values()
    layers = []
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if own or not any(True for _ in module.children()):
            layers.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "n_parameters": sum(p.numel() for p in own.values()),
                    "n_trainable": sum(p.numel() for p in own.values() if p.requires_grad),
                    "parameter_shapes": {k: list(p.shape) for k, p in own.items()},
                }
            )
    return {
        "n_parameters": sum(p.numel() for p in unique),
        "n_trainable": sum(p.numel() for p in unique if p.requires_grad),
        "layers": layers,
        "text": str(model),
    }
