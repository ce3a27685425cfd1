"""Grouped forward of L stacked members: one grouped convolution / batched matmul per layer.

``torch.func.vmap`` over a CNN alternates layouts between layers (members folded into the
channels for a convolution, into the batch for a pooling), copying every activation twice and
running element-wise kernels on strided memory; on a CPU that made it about half as fast as a
plain loop over members. For models built from the layers below this module keeps members in
the channel axis throughout, ``(b, L*C, *spatial)`` in channels-last memory, where grouped
convolutions and poolings are fast, and in ``(L, b, F)`` for dense layers (``baddbmm``).

Recognised: ``nn.Sequential``; ``Conv1d/2d/3d`` (zero padding); ``Linear``; parameter-free
element-wise activations; max/avg (adaptive) pooling; ``Flatten``; dropout (per-member hash
masks, see :mod:`trustml.uq._member_dropout`); and any module whose class implements the
public protocol :class:`trustml.models.GroupedModule` (``trustml_grouped_forward``), as the
builtin ``cnn`` and ``mlp`` models and the homoscedastic wrapper do. Anything else is left to
``vmap``.

A forward pass keeps its state (weights, dropout keys, step) in a :class:`_Call` made for that
pass, never on the :class:`GroupedForward`: one engine may run several passes at once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trustml.models import CHANNELWISE_DROPOUT_TYPES, DROPOUT_TYPES, Lanes, has_grouped_forward
from trustml.uq._member_dropout import dropout_layers, keep_mask

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
_Conv = nn.Conv1d | nn.Conv2d | nn.Conv3d
_CONV_FN: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d,
}  # fmt: skip


def grouped_unsupported(model: nn.Module, name: str = "") -> str | None:
    """Why ``model`` has no grouped forward (the first offending module), or None.

    Parameters
    ----------
    model : nn.Module
    name : str
        Qualified name of ``model`` in the messages (``""``: the model itself).

    Returns
    -------
    str or None
        E.g. ``"body.2 (LayerNorm) has no grouped rule"``.
    """
    label = name or "the model"
    t = type(model)
    if has_grouped_forward(model) or t is nn.Sequential:
        for child_name, child in model.named_children():
            reason = grouped_unsupported(child, f"{name}.{child_name}" if name else child_name)
            if reason:
                return reason
        return None
    if t in _CONV_FN:
        if model.padding_mode != "zeros":
            return f"{label} ({t.__name__}) pads with {model.padding_mode!r}"
        return None
    if t is nn.Linear or t in _ELEMENTWISE or t in DROPOUT_TYPES:
        return None
    if t in _POOLS:
        returns_indices = getattr(model, "return_indices", False)
        return f"{label} ({t.__name__}) returns indices" if returns_indices else None
    if t is nn.Flatten:
        return None
    return (
        f"{label} ({t.__name__}) has no grouped rule (its class can define "
        "trustml_grouped_forward, see trustml.models.GroupedModule)"
    )


class _Call:
    """The state of one forward pass: the L members' weights and how dropout draws."""

    __slots__ = ("buffers", "fwd", "keys", "offset", "params", "step", "train")

    def __init__(
        self,
        fwd: GroupedForward,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        train: bool,
        keys: torch.Tensor | None,
        step: int,
        offset: int,
    ) -> None:
        self.fwd, self.params, self.buffers, self.train = fwd, params, buffers, train
        self.keys, self.step, self.offset = keys, step, offset

    def tensor(self, name: str) -> torch.Tensor:
        """Stacked parameter or buffer ``name`` (qualified), ``(L, *shape)``."""
        if name in self.params:
            return self.params[name]
        if name in self.buffers:
            return self.buffers[name]
        raise KeyError(f"no parameter or buffer named {name!r}")


class _Scope:
    """A :class:`trustml.models.GroupedCall` for one module of one forward pass."""

    __slots__ = ("call", "module", "prefix")

    def __init__(self, call: _Call, module: nn.Module, prefix: str) -> None:
        self.call, self.module, self.prefix = call, module, prefix

    @property
    def lanes(self) -> int:
        return self.call.fwd.lanes

    @property
    def training(self) -> bool:
        return self.call.train

    def run(self, name: str, x: Lanes) -> Lanes:
        child = self.module.get_submodule(name)
        return self.call.fwd._run(self.call, child, f"{self.prefix}{name}.", x)

    def param(self, name: str) -> torch.Tensor:
        return self.call.tensor(f"{self.prefix}{name}")

    def dense(self, x: Lanes) -> torch.Tensor:
        return self.call.fwd._dense(x)

    def channels(self, x: Lanes) -> torch.Tensor:
        return self.call.fwd._to_conv(x)


_Rule = Callable[[_Call, Any, str, Lanes], Lanes]


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

    Notes
    -----
    Re-entrant: everything a call needs beyond the structure read here travels in the call's
    own context, so concurrent calls (threads) do not interfere.
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
        self._rules: dict[type, _Rule] = {
            nn.Sequential: self._sequential,
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
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Outputs of the L members on their inputs.

        Parameters
        ----------
        params : dict of str to tensor
            Every parameter of the template, stacked: ``(L, *shape)``.
        x : tensor of shape (L, b, *input_shape)
            Member ``l``'s inputs in row ``l``.
        train : bool
            Training forward (dropout on).
        keys : int64 tensor of shape (L,), optional
            Dropout keys of the members (needed when ``train`` and the model has dropout).
        step, offset : int
            Training step, and index of the first sample of ``x`` within its minibatch; with
            ``keys`` they select the dropout masks.
        buffers : dict of str to tensor, optional
            Stacked buffers ``(L, *shape)``, for modules whose grouped rule reads them.

        Returns
        -------
        tensor of shape (L, b, O)
        """
        call = _Call(self, params, buffers or {}, train, keys, step, offset)
        return self._dense(self._run(call, self.template, "", Lanes(x)))

    # -- layouts --------------------------------------------------------------------------
    def _to_conv(self, a: Lanes) -> torch.Tensor:
        if a.channels:
            return a.tensor
        t = a.tensor  # (L, b, C, *sp) -> (b, L*C, *sp)
        t = t.transpose(0, 1).reshape(t.shape[1], -1, *t.shape[3:])
        if self.channels_last and t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        if self.channels_last and t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
        return t

    def _dense(self, a: Lanes) -> torch.Tensor:
        if not a.channels:
            return a.tensor
        return a.tensor.unflatten(1, (self.lanes, -1)).transpose(0, 1)

    # -- rules ----------------------------------------------------------------------------
    def _run(self, call: _Call, module: nn.Module, prefix: str, a: Lanes) -> Lanes:
        rule = self._rules.get(type(module))
        if rule is not None:
            return rule(call, module, prefix, a)
        if has_grouped_forward(module):
            scope = _Scope(call, module, prefix)
            return module.trustml_grouped_forward(scope, a)  # type: ignore[operator]
        where = prefix.rstrip(".") or "the model"
        raise TypeError(f"{where} ({type(module).__name__}) has no grouped rule")

    def _sequential(self, call: _Call, module: nn.Sequential, prefix: str, a: Lanes) -> Lanes:
        children = list(module.named_children())
        i = 0
        while i < len(children):
            name, child = children[i]
            nxt = children[i + 1][1] if i + 1 < len(children) else None
            if nxt is not None and type(child) is nn.ReLU and type(nxt) in _MAX_POOLS:
                # max_pool(relu(x)) == relu(max_pool(x)), values and gradients alike (ReLU is
                # monotone; ties keep the first index; windows with max <= 0 pass no gradient
                # either way), and the ReLU then touches a quarter of the elements.
                a = self._pool(call, nxt, "", a)
                a = Lanes(torch.relu(a.tensor), True)
                i += 2
                continue
            a = self._run(call, child, f"{prefix}{name}.", a)
            i += 1
        return a

    def _linear(self, call: _Call, module: nn.Linear, prefix: str, a: Lanes) -> Lanes:
        t = self._dense(a)
        w = call.params[f"{prefix}weight"].transpose(1, 2)  # (L, in, out)
        t3 = t.reshape(self.lanes, -1, t.shape[-1])
        bias = call.params.get(f"{prefix}bias")
        out = torch.bmm(t3, w) if bias is None else torch.baddbmm(bias[:, None, :], t3, w)
        return Lanes(out.reshape(*t.shape[:-1], out.shape[-1]))

    def _conv(self, call: _Call, module: _Conv, prefix: str, a: Lanes) -> Lanes:
        x = self._to_conv(a)
        w = call.params[f"{prefix}weight"]
        w = w.reshape(-1, *w.shape[2:])
        bias = call.params.get(f"{prefix}bias")
        out = _CONV_FN[type(module)](
            x,
            w,
            None if bias is None else bias.reshape(-1),
            module.stride,
            module.padding,
            module.dilation,
            module.groups * self.lanes,
        )
        return Lanes(out, True)

    def _pool(self, call: _Call, module: nn.Module, prefix: str, a: Lanes) -> Lanes:
        return Lanes(module(self._to_conv(a)), True)

    def _elementwise(self, call: _Call, module: nn.Module, prefix: str, a: Lanes) -> Lanes:
        return Lanes(self._acts.get(id(module), module)(a.tensor), a.channels)

    def _flatten(self, call: _Call, module: nn.Flatten, prefix: str, a: Lanes) -> Lanes:
        start, end = module.start_dim, module.end_dim
        t = self._dense(a)
        return Lanes(t.flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end))

    def _dropout(self, call: _Call, module: Any, prefix: str, a: Lanes) -> Lanes:
        if not call.train or module.p == 0:
            return a
        t = self._dense(a)
        if module.p >= 1:
            return Lanes(t * 0.0)
        if call.keys is None:
            raise ValueError("a training forward with dropout needs the members' keys")
        keep = keep_mask(
            call.keys,
            call.step,
            self._layers[id(module)],
            tuple(t.shape[1:]),
            float(module.p),
            offset=call.offset,
            channelwise=isinstance(module, CHANNELWISE_DROPOUT_TYPES),
        )
        return Lanes(t * keep.to(t.dtype) / (1.0 - module.p))
