"""The modules to explain, what output of theirs is explained, and how they are evaluated.

A model is explained member by member: a plain ``nn.Module`` is one member; a trustml
uncertainty wrapper gives one module per member or posterior sample via ``explain_modules()``.
When the members share one architecture they are stacked (``torch.func.stack_module_state``)
and evaluated in one vectorized call; every input row carries the index of its member.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from trustml.uq import EXPLAIN_OUTPUTS

__all__ = ["Members", "Target", "as_input_tensor", "per_example_baselines"]

#: Bytes of activations per forward pass that keep a CPU's caches warm, and the ceiling.
_CPU_FAST_BYTES, _CPU_MAX_BYTES = 64 << 20, 1 << 30
_GPU_FAST_BYTES, _GPU_MAX_BYTES = 1 << 30, 4 << 30


def as_input_tensor(inputs: Any, device: torch.device) -> torch.Tensor:
    """``inputs`` as a float32 tensor ``(N, *input_shape)`` on ``device``."""
    if isinstance(inputs, torch.Tensor):
        x = inputs.detach().to(device=device, dtype=torch.float32)
    else:
        x = torch.as_tensor(np.asarray(inputs, dtype=np.float32), device=device)
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(
            f"Expected inputs of shape (N, *input_shape) with N >= 1, got {tuple(x.shape)}"
        )
    return x


def per_example_baselines(baselines: Any, x: torch.Tensor) -> torch.Tensor:
    """Baselines as one reference input per example, ``x.shape``: ``None`` -> zeros, a float ->
    that constant, an array broadcastable to the inputs -> expanded."""
    if baselines is None:
        return torch.zeros_like(x)
    if isinstance(baselines, int | float):
        return torch.full_like(x, float(baselines))
    b = torch.as_tensor(np.asarray(baselines, dtype=np.float32), device=x.device)
    try:
        return b.expand_as(x).contiguous()
    except RuntimeError:
        raise ValueError(
            f"baselines of shape {tuple(b.shape)} do not broadcast to the inputs {tuple(x.shape)}"
        ) from None


@dataclass(frozen=True)
class Target:
    """What scalar of the output ``(N, D)`` is explained.

    ``index`` is Captum's target (an int, one index per example, or None for a scalar output);
    ``reduce`` maps the output to ``(N,)`` first, after which the index is 0.
    """

    index: int | torch.Tensor | None
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def parse(cls, target: Any, n: int, device: torch.device) -> Target:
        if target is None:
            return cls(None)
        if isinstance(target, str):
            raise ValueError(
                f"Expected target to be an int, one int per example or a callable, got "
                f"{target!r}; to explain the predicted std pass output='std'"
            )
        if callable(target):
            return cls(0, target)
        if isinstance(target, int | np.integer) and not isinstance(target, bool):
            return cls(int(target))
        t = torch.as_tensor(np.asarray(target), device=device)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"Expected integer targets, got dtype {t.dtype}")
        t = t.long().reshape(-1)
        if len(t) != n:
            raise ValueError(f"Expected one target per example ({n}), got {len(t)}")
        return cls(t)

    def rows(self, start: int, stop: int, repeats: int = 1) -> int | torch.Tensor | None:
        """Captum's target for examples ``start:stop``, tiled ``repeats`` times member-major."""
        if isinstance(self.index, torch.Tensor):
            return self.index[start:stop].repeat(repeats)
        return self.index

    def apply(self, out: torch.Tensor) -> torch.Tensor:
        """The output Captum sees: ``reduce(out)`` as ``(M, 1)``, or ``out`` unchanged."""
        if self.reduce is None:
            return out
        red = self.reduce(out)
        if not isinstance(red, torch.Tensor) or red.numel() != len(out):
            raise ValueError(
                f"A callable target must map the output of shape {tuple(out.shape)} to one "
                f"number per example ({len(out)},), got "
                f"{tuple(red.shape) if isinstance(red, torch.Tensor) else type(red).__name__}"
            )
        return red.reshape(len(out), 1)

    def pick(self, out: torch.Tensor) -> torch.Tensor:
        """The explained scalar ``(K, N)`` from reduced outputs ``(K, N, D)``."""
        if self.index is None:
            if out.shape[-1] != 1:
                raise ValueError(
                    f"target=None needs one output per example, the model gives {out.shape[-1]}"
                )
            return out[..., 0]
        if isinstance(self.index, torch.Tensor):
            if (
                len(self.index)
                and not 0 <= int(self.index.min()) <= int(self.index.max()) < out.shape[-1]
            ):
                raise ValueError(
                    f"targets must lie in [0, {out.shape[-1]}) for {out.shape[-1]} outputs, got "
                    f"[{int(self.index.min())}, {int(self.index.max())}]"
                )
            idx = self.index.to(out.device).reshape(1, -1, 1).expand(len(out), -1, 1)
            return out.gather(2, idx)[..., 0]
        if not 0 <= self.index < out.shape[-1]:
            raise ValueError(f"target {self.index} is out of range for {out.shape[-1]} outputs")
        return out[..., self.index]


class Reduced(nn.Module):
    """``module`` followed by a callable target's reduction (Captum then explains index 0)."""

    def __init__(self, module: nn.Module, target: Target) -> None:
        super().__init__()
        self.module = module
        self._target = target

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        return self._target.apply(self.module(x, *args))


class StackedMembers(nn.Module):
    """K same-architecture members as one module: row ``i`` of the input goes to member
    ``member[i]``; the rows of each member are gathered, the K groups run under ``vmap`` and
    the outputs are put back in input order. Captum may expand rows in any layout
    (step-major for IG, example-major for NoiseTunnel): ``member`` is expanded with them.
    """

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        params, buffers = stack_module_state(modules)
        self._params = {k: v.detach() for k, v in params.items()}
        self._buffers_stacked = buffers
        self._base = copy.deepcopy(modules[0]).to("meta")
        self._members = tuple(modules)  # a tuple: not registered, no second copy of weights
        self._vmapped = vmap(self._one)

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base, (params, buffers), (x,))

    def forward(self, x: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        k = len(self._members)
        counts = torch.bincount(member, minlength=k)
        if bool((counts != counts[0]).any()):  # never from Captum's uniform expansions
            return torch.cat([self._members[int(m)](x[i : i + 1]) for i, m in enumerate(member)])
        order = torch.argsort(member, stable=True)
        xs = x.index_select(0, order).reshape(k, -1, *x.shape[1:])
        out = self._vmapped(self._params, self._buffers_stacked, xs)
        out = out.reshape(len(x), *out.shape[2:])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return out.index_select(0, inverse)


def member_index(k: int, n: int, device: torch.device) -> torch.Tensor:
    """Member of each row of a member-major stack of ``n`` examples: ``[0]*n + ... + [k-1]*n``."""
    return torch.arange(k, device=device).repeat_interleave(n)


class Members:
    """The member modules of ``model`` and the helpers that evaluate them.

    Parameters
    ----------
    model : nn.Module or object with ``explain_modules()``
    output : {"mean", "std"}
        ``"std"`` asks the wrapper for modules that map inputs to the predicted std
        (``explain_modules(output="std")``).
    """

    def __init__(self, model: Any, output: str = "mean") -> None:
        if output not in EXPLAIN_OUTPUTS:
            raise ValueError(
                f"The 'output' parameter must be one of {{'mean', 'std'}}. Got {output!r} instead."
            )
        self.modules = _member_modules(model, output)
        # A wrapper's modules are used as the wrapper made them (an MC-dropout posterior sample
        # may be a module whose fixed dropout mask is active in train mode); modules passed
        # directly are put in eval mode while they are explained.
        self.owns_mode = isinstance(model, nn.Module | list | tuple)
        if not self.modules:
            raise ValueError("explain_modules() returned no modules")
        for m in self.modules:
            if not isinstance(m, nn.Module):
                raise TypeError(f"explain_modules() must return nn.Modules, got {type(m).__name__}")
        first = next(iter(self.modules[0].parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.has_rnn = any(isinstance(s, nn.RNNBase) for m in self.modules for s in m.modules())

    def __len__(self) -> int:
        return len(self.modules)

    def like(self, modules: list[nn.Module]) -> Any:
        """``modules`` as a model that is explained the way this one is (eval mode or not)."""
        return list(modules) if self.owns_mode else _Explained(modules)

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Modules passed directly are in eval mode (dropout off) for the duration, and their
        train flags are restored afterwards; a wrapper's modules are left as they are.

        cuDNN's RNN backward refuses eval mode, so with recurrent members on a GPU cuDNN is
        switched off: the native kernels differentiate in eval mode without dropout.
        """
        flags = (
            [(s, s.training) for m in self.modules for s in m.modules()] if self.owns_mode else []
        )
        for m in self.modules if self.owns_mode else ():
            m.eval()
        rnn_on_gpu = self.has_rnn and self.device.type == "cuda"
        try:
            with torch.backends.cudnn.flags(enabled=not rnn_on_gpu) if rnn_on_gpu else _null():
                yield
        finally:
            for s, was_training in flags:
                s.training = was_training

    def stack(self, probe: torch.Tensor) -> StackedMembers | None:
        """The members as one vmapped module, or None when they cannot be stacked.

        Call inside :meth:`evaluating`. A one-example probe must reproduce the members' own
        outputs, so a module that runs under ``vmap`` but differently is never stacked.
        """
        if len(self.modules) < 2 or self.has_rnn or not _same_architecture(self.modules):
            return None
        try:
            stacked = StackedMembers(self.modules)
            k = len(self.modules)
            with torch.no_grad():
                tiled = probe.repeat(k, *[1] * (probe.dim() - 1))
                got = stacked(tiled, member_index(k, 1, probe.device))
                want = torch.cat([m(probe) for m in self.modules])
        except Exception:  # any op without a vmap rule, data-dependent control flow, ...
            return None
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            return None
        return stacked

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, target: Target, rows: int, stacked: StackedMembers | None = None
    ) -> torch.Tensor:
        """Every member's (reduced) output ``(K, N, D)`` as float64 on the CPU, in chunks of at
        most ``rows`` input rows."""
        k, n = len(self.modules), len(x)
        chunks: list[torch.Tensor] = []
        if stacked is not None and rows >= k:
            step = max(1, rows // k)
            for s in range(0, n, step):
                xc = x[s : s + step]
                tiled = xc.repeat(k, *[1] * (xc.dim() - 1))
                out = target.apply(stacked(tiled, member_index(k, len(xc), x.device)))
                chunks.append(out.reshape(k, len(xc), -1).double().cpu())
            return torch.cat(chunks, dim=1)
        for m in self.modules:
            outs = [target.apply(m(x[s : s + rows])) for s in range(0, n, max(1, rows))]
            chunks.append(torch.cat(outs).reshape(n, -1).double().cpu())
        return torch.stack(chunks)

    def rows_per_pass(self, probe: torch.Tensor) -> int:
        """Rows per forward/backward pass that keep activations within the memory budget."""
        per_row = _bytes_per_row(self.modules[0], probe)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            fast, ceiling = _GPU_FAST_BYTES, min(_GPU_MAX_BYTES, free // 4)
        else:
            fast, ceiling = _CPU_FAST_BYTES, _CPU_MAX_BYTES
        return int(max(1, fast // per_row, min(8, ceiling // per_row)))


class _Explained:
    """Modules that came from a wrapper's ``explain_modules()``."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self._modules = modules

    def explain_modules(self) -> list[nn.Module]:
        return self._modules


@contextmanager
def _null() -> Iterator[None]:
    yield


def _member_modules(model: Any, output: str) -> list[nn.Module]:
    if isinstance(model, nn.Module):
        if output != "mean":
            raise ValueError(
                "output='std' needs an uncertainty wrapper with explain_modules(output='std'); "
                "for a plain module pass a callable target that computes the std"
            )
        return [model]
    if isinstance(model, list | tuple) and all(isinstance(m, nn.Module) for m in model):
        return list(model)
    if not hasattr(model, "explain_modules"):
        raise TypeError(
            "Expected an nn.Module, a list of them, or a fitted trustml uncertainty wrapper "
            f"(with explain_modules()), got {type(model).__name__}"
        )
    if output == "mean":
        return list(model.explain_modules())
    # Every trustml wrapper takes explain_modules(*, output=..., samples=...) and raises
    # ValueError for an output it does not have (e.g. "std" of a classifier).
    try:
        return list(model.explain_modules(output=output))
    except ValueError as err:
        raise ValueError(
            f"{type(model).__name__} does not expose output={output!r} for attribution ({err})"
        ) from None


def _same_architecture(modules: list[nn.Module]) -> bool:
    def signature(m: nn.Module) -> tuple:
        tensors = [*m.named_parameters(), *m.named_buffers()]
        return (type(m), tuple((n, t.shape, t.dtype, t.device) for n, t in tensors))

    first = signature(modules[0])
    return all(signature(m) == first for m in modules[1:])


def _bytes_per_row(module: nn.Module, probe: torch.Tensor) -> int:
    """Bytes one input row costs in a forward + input-gradient pass (estimate).

    What autograd saves for the backward pass is counted exactly on a one-row probe; the
    backward needs about as much again for gradients, and the interpolated or perturbed copies
    of the input add a few inputs more.
    """
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta" and t.numel() > 0:
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            seen[key] = t.untyped_storage().nbytes()
        return t

    x = probe[:1].detach().clone().requires_grad_()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved = sum(v for (ptr, _), v in seen.items() if ptr not in params)
    input_bytes = x.numel() * x.element_size()
    return int(2 * saved + 4 * input_bytes) or 1
