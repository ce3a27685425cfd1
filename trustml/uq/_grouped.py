"""Grouped forward of L stacked members: one grouped convolution / batched matmul per layer.

``torch.func.vmap`` over a CNN alternates layouts between layers (members folded into the
channels for a convolution, into the batch for a pooling), copying every activation twice and
running element-wise kernels on strided memory; on a CPU that made it about half as fast as a
plain loop over members. For models built from the layers below this module keeps members in
the channel axis throughout, ``(b, L*C, *spatial)`` in channels-last memory, where grouped
convolutions and poolings are fast, and in ``(L, b, F)`` for dense layers (``baddbmm``).

Recognised: ``nn.Sequential``; ``Conv1d/2d/3d`` (zero padding); ``Linear``; parameter-free
element-wise activations; max/avg (adaptive) pooling; ``Flatten``; dropout (per-member hash
masks, see :mod:`trustml.uq._member_dropout`); the builtin ``cnn`` and ``mlp`` models of
:mod:`trustml.models`; the homoscedastic wrapper. Anything else is left to ``vmap``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trustml.models.cnn import _ConvNet
from trustml.models.mlp import _MLP
from trustml.uq._heads import Homoscedastic
from trustml.uq._member_dropout import DROPOUT_TYPES, dropout_layers, keep_mask

__all__ = ["GroupedForward", "grouped_unsupported"]

_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.LogSigmoid, nn.Tanhshrink, nn.Identity,
)  # fmt: skip
_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_CONTAINERS = (nn.Sequential, _ConvNet, _MLP, Homoscedastic)


def grouped_unsupported(model: nn.Module, name: str = "") -> str | None:
    """Why ``model`` has no grouped forward (the first offending module), or None."""
    label = name or "the model"
    t = type(model)
    if t in _CONV_FN:
        if model.padding_mode != "zeros":
            return f"{label} ({t.__name__}) pads with {model.padding_mode!r}"
        return None
    if t is nn.Linear or t in _ELEMENTWISE or isinstance(model, DROPOUT_TYPES):
        return None
    if t in _POOLS:
        returns_indices = getattr(model, "return_indices", False)
        return f"{label} ({t.__name__}) returns indices" if returns_indices else None
    if t is nn.Flatten:
        return None
    if t in _CONTAINERS:
        for child_name, child in model.named_children():
            reason = grouped_unsupported(child, f"{name}.{child_name}" if name else child_name)
            if reason:
                return reason
        return None
    return f"{label} ({t.__name__}) has no grouped rule"


class _Act:
    """An activation of L lanes: ``dense`` ``(L, b, *feat)`` or ``conv`` ``(b, L*C, *sp)``."""

    __slots__ = ("t", "conv")

    def __init__(self, t: torch.Tensor, conv: bool) -> None:
        self.t, self.conv = t, conv


class GroupedForward:
    """Forward pass of L stacked members sharing ``template``'s architecture.

    Parameters
    ----------
    template : nn.Module
        One member (its structure is read, never its weights).
    lanes : int
        Number of stacked members L.
    channels_last : bool
        Keep 2D/3D convolution activations in channels-last memory.
    """

    def __init__(self, template: nn.Module, lanes: int, *, channels_last: bool = True) -> None:
        self.template = template
        self.lanes = lanes
        self.channels_last = channels_last
        self._layers = {id(m): layer for _, m, layer in dropout_layers(template)}
        self._acts: dict[int, nn.Module] = {}
        for m in template.modules():
            if isinstance(m, _ELEMENTWISE) and getattr(m, "inplace", False):
                m2 = copy.copy(m)
                m2.inplace = False  # in-place on a strided view of another activation is unsafe
                self._acts[id(m)] = m2
        self._rules: dict[type, Callable[..., _Act]] = {
            nn.Sequential: self._sequential,
            _ConvNet: self._convnet,
            _MLP: self._mlp,
            Homoscedastic: self._homoscedastic,
            nn.Linear: self._linear,
            nn.Flatten: self._flatten,
        }
        self._rules.update(dict.fromkeys(_CONV_FN, self._conv))
        self._rules.update(dict.fromkeys(DROPOUT_TYPES, self._dropout))
        self._rules.update(dict.fromkeys(_POOLS, self._pool))
        self._rules.update(dict.fromkeys(_ELEMENTWISE, self._elementwise))

    def __call__(
        self,
        params: dict[str, torch.Tensor],
        x: torch.Tensor,
        *,
        train: bool,
        keys: torch.Tensor | None = None,
        step: int = 0,
        offset: int = 0,
    ) -> torch.Tensor:
        """Outputs ``(L, b, O)`` of the L members on their inputs ``x`` ``(L, b, ...)``.

        ``keys`` (``(L,)`` int64), ``step`` and ``offset`` (index of the first sample within
        the minibatch) select the dropout masks when ``train``.
        """
        self._p, self._train, self._keys = params, train, keys
        self._step, self._offset = step, offset
        try:
            return self._dense(self._run(self.template, "", _Act(x, False)))
        finally:
            self._p = self._keys = None  # type: ignore[assignment]

    # -- layouts --------------------------------------------------------------------------
    def _to_conv(self, a: _Act) -> torch.Tensor:
        if a.conv:
            return a.t
        t = a.t  # (L, b, C, *sp) -> (b, L*C, *sp)
        t = t.transpose(0, 1).reshape(t.shape[1], -1, *t.shape[3:])
        if self.channels_last and t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        if self.channels_last and t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
        return t

    def _dense(self, a: _Act) -> torch.Tensor:
        if not a.conv:
            return a.t
        return a.t.unflatten(1, (self.lanes, -1)).transpose(0, 1)

    # -- rules ----------------------------------------------------------------------------
    def _run(self, module: nn.Module, prefix: str, a: _Act) -> _Act:
        return self._rules[type(module)](module, prefix, a)

    def _sequential(self, module: nn.Sequential, prefix: str, a: _Act) -> _Act:
        children = list(module.named_children())
        i = 0
        while i < len(children):
            name, child = children[i]
            nxt = children[i + 1][1] if i + 1 < len(children) else None
            if type(child) is nn.ReLU and type(nxt) in _MAX_POOLS:
                # max_pool(relu(x)) == relu(max_pool(x)), values and gradients alike (ReLU is
                # monotone; ties keep the first index; windows with max <= 0 pass no gradient
                # either way), and the ReLU then touches a quarter of the elements.
                a = self._pool(nxt, "", a)
                a = _Act(torch.relu(a.t), True)
                i += 2
                continue
            a = self._run(child, f"{prefix}{name}.", a)
            i += 1
        return a

    def _convnet(self, module: _ConvNet, prefix: str, a: _Act) -> _Act:
        t = self._dense(a)
        if module.fold_time:
            t = t.flatten(2, 3)
        h = self._to_conv(self._run(module.features, f"{prefix}features.", _Act(t, False)))
        h = h.mean(dim=tuple(range(2, h.dim())))  # (b, L*C)
        h = h.unflatten(1, (self.lanes, -1)).transpose(0, 1)
        return self._run(module.head, f"{prefix}head.", _Act(h, False))

    def _mlp(self, module: _MLP, prefix: str, a: _Act) -> _Act:
        return self._run(module.net, f"{prefix}net.", _Act(self._dense(a).flatten(2), False))

    def _homoscedastic(self, module: Homoscedastic, prefix: str, a: _Act) -> _Act:
        mean = self._dense(self._run(module.model, f"{prefix}model.", a))
        log_std = self._p[f"{prefix}log_std"][:, None, :].expand(-1, mean.shape[1], -1)
        return _Act(torch.cat([mean, log_std], dim=-1), False)

    def _linear(self, module: nn.Linear, prefix: str, a: _Act) -> _Act:
        t = self._dense(a)
        w = self._p[f"{prefix}weight"].transpose(1, 2)  # (L, in, out)
        t3 = t.reshape(self.lanes, -1, t.shape[-1])
        bias = self._p.get(f"{prefix}bias")
        out = torch.bmm(t3, w) if bias is None else torch.baddbmm(bias[:, None, :], t3, w)
        return _Act(out.reshape(*t.shape[:-1], out.shape[-1]), False)

    def _conv(self, module: nn.Module, prefix: str, a: _Act) -> _Act:
        x = self._to_conv(a)
        w = self._p[f"{prefix}weight"]
        w = w.reshape(-1, *w.shape[2:])
        bias = self._p.get(f"{prefix}bias")
        out = _CONV_FN[type(module)](
            x,
            w,
            None if bias is None else bias.reshape(-1),
            module.stride,
            module.padding,
            module.dilation,
            module.groups * self.lanes,
        )
        return _Act(out, True)

    def _pool(self, module: nn.Module, prefix: str, a: _Act) -> _Act:
        return _Act(module(self._to_conv(a)), True)

    def _elementwise(self, module: nn.Module, prefix: str, a: _Act) -> _Act:
        return _Act(self._acts.get(id(module), module)(a.t), a.conv)

    def _flatten(self, module: nn.Flatten, prefix: str, a: _Act) -> _Act:
        start, end = module.start_dim, module.end_dim
        t = self._dense(a)
        return _Act(
            t.flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end), False
        )

    def _dropout(self, module: Any, prefix: str, a: _Act) -> _Act:
        if not self._train or module.p == 0:
            return a
        t = self._dense(a)
        if module.p >= 1:
            return _Act(t * 0.0, False)
        keep = keep_mask(
            self._keys,  # type: ignore[arg-type]
            self._step,
            self._layers[id(module)],
            tuple(t.shape[1:]),
            float(module.p),
            offset=self._offset,
            channelwise=not isinstance(module, nn.Dropout),
        )
        return _Act(t * keep.to(t.dtype) / (1.0 - module.p), False)
