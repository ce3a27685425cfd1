"""Engines that train and evaluate K ensemble members: grouped, ``vmap`` and a plain loop.

All three share one contract, so the training loop (:mod:`trustml.uq._fit_loop`) does not
care which runs: ``train_step`` takes stacked minibatches ``(K, b, ...)`` (row k is member
k's own batch) and returns the members' summed losses ``(K,)``; ``forward`` maps inputs
``(b, ...)`` to outputs ``(K, b, O)`` in eval mode.

Adam is element-wise (every update reads only the same element's gradient and moments), so
one ``torch.optim.Adam`` over parameters stacked along a member axis performs exactly the
per-member updates; members never mix.

Stacked engines run their members in blocks of exactly :data:`LANE_BLOCK` lanes, the last block
padded with copies of the first member. oneDNN picks its grouped-convolution kernel, and so
the order in which a member's sums are added, by the total channel count: by how many members
are stacked. A member trained beside 2 others then differed in the 8th digit from the same
member trained beside 3 (seen on AVX2 and AVX-512 hosts alike), so 1 and P MPI ranks gave
different numbers. With a fixed block the kernel is the same whichever members share it, and
a member's arithmetic does not depend on its lane (tested under lowered CPU capabilities too).
Turning oneDNN off instead (ATen then convolves one group at a time) is exact as well, but
made vectorized training 0.58x the speed of a loop over members.

Data parallelism inside a member (``parallel: {data: D}``): ``engine.sync`` (a
:class:`GradientSync`, e.g. :class:`trustml.distributed.DataGroup`) is called between the
backward pass and the optimizer step of every ``train_step``. Each rank's loss is the mean over
its own share of the batch, so its gradient is the mean over its ``b`` samples; the sync replaces
it by the batch-weighted mean over the group, the gradient of the whole global batch, and every
rank then takes the same optimizer step. A rank whose share of a step is empty skips the forward
pass and contributes nothing. Models with batch statistics (BatchNorm) normalise each share with
its own statistics, as PyTorch DDP does without SyncBatchNorm, so their gradients are not the
whole batch's; their running statistics are averaged over the group like the gradients (ranks
stay identical). Dropout masks follow the global sample index (``GradientSync.first_sample``),
so a share draws the masks one rank would draw for those samples.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from trustml.uq._grouped import GroupedForward, grouped_unsupported
from trustml.uq._heads import HeadSpec
from trustml.uq._lanes import LaneValue, member_optimizer, stacked_optimizer
from trustml.uq._member_dropout import (
    DropoutClock,
    HashDropout,
    dropout_layers,
    with_member_dropout,
)

__all__ = ["Engine", "GradientSync", "build_engine"]

log = logging.getLogger("trustml")

#: On a CPU the grouped engine runs a minibatch in chunks whose largest activation (for
#: _REF_LANES members) is about this many bytes. Stacking members multiplies the working set;
#: measured on 2 cores, 4 MiB chunks ran 1.5x faster than whole 64-sample minibatches (cache
#: misses in element-wise kernels, page faults on large fresh allocations). The chunk does not
#: depend on the number of members, so neither does any member's result.
_CACHE_BYTES = 4 << 20
_REF_LANES = 8

#: Lanes per block of a stacked engine (see the module docstring). A constant, never a
#: function of the number of members, the rank or the host: that is what makes member k's
#: numbers independent of the members beside it. 8 lanes keep the CPU's vector units busy
#: with the builtin models (``python -m benchmarks.ensemble_training``).
LANE_BLOCK = 8


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


#: Buffers the forward pass updates from the batch (BatchNorm); a gradient sync averages them.
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


class GradientSync(Protocol):
    """Averages gradients over the ranks that train the same members on shares of a batch."""

    def first_sample(self, batch: int) -> int:
        """Index of this rank's first sample in the global batch (``batch`` samples here)."""
        ...

    def average(
        self, params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor], batch: int
    ) -> None:
        """Replace every ``p.grad`` (and the running statistics ``buffers``) by the group's
        batch-weighted mean; ``batch`` is this rank's number of samples (0: none)."""
        ...


def _has_dropout(module: nn.Module) -> bool:
    hashed = any(isinstance(m, HashDropout) and m.p > 0 for m in module.modules())
    return hashed or next(dropout_layers(module), None) is not None


def _running_stats(named: Iterator[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
    return [t for n, t in named if n.rsplit(".", 1)[-1] in RUNNING_STATS]


class Engine:
    """Common interface; see the module docstring."""

    kind = "engine"

    def __init__(self, members: int, head: HeadSpec) -> None:
        self.members, self.head = members, head
        self.active = np.ones(members, dtype=bool)
        #: Gradient averaging over a data-parallel group (``None``: this rank alone).
        self.sync: GradientSync | None = None
        self.dropout = False

    def _first_sample(self, b: int) -> int:
        """Global index of this rank's first sample (asked only when dropout needs it)."""
        if self.sync is None or not self.dropout:
            return 0
        return self.sync.first_sample(b)

    def start(self, lr: LaneValue, weight_decay: LaneValue) -> None:
        """Create the optimizer(s); per-member lists give each member its own (``_lanes``)."""
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def save_best(self, ks: list[int]) -> None:
        raise NotImplementedError

    def restore_best(self, ks: list[int]) -> None:
        raise NotImplementedError

    def write_back(self, modules: list[nn.Module]) -> None:
        """Copy the trained weights into the K member modules."""
        raise NotImplementedError


class _Stacked(Engine):
    """Parameters stacked along a leading member axis, run in blocks of ``LANE_BLOCK`` lanes."""

    def __init__(self, modules: list[nn.Module], head: HeadSpec, keys: list[int]) -> None:
        super().__init__(len(modules), head)
        self.lanes = LANE_BLOCK
        total = -(-len(modules) // LANE_BLOCK) * LANE_BLOCK
        pad = [modules[0]] * (total - len(modules))
        self.params, self.buffers = stack_module_state(list(modules) + pad)
        device = next(iter(self.params.values())).device
        self.keys = torch.tensor(keys + keys[:1] * len(pad), dtype=torch.int64, device=device)
        self.blocks = [slice(s, s + LANE_BLOCK) for s in range(0, total, LANE_BLOCK)]
        self._best: dict[str, torch.Tensor] | None = None
        self.dropout = _has_dropout(modules[0])

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        total = self.blocks[-1].stop
        if x.shape[0] == total:
            return x
        return torch.cat([x, x[:1].expand(total - x.shape[0], *x.shape[1:])])

    def start(self, lr: LaneValue, weight_decay: LaneValue) -> None:
        self.opt = stacked_optimizer(list(self.params.values()), lr, weight_decay)

    def _state(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    @torch.no_grad()
    def save_best(self, ks: list[int]) -> None:
        if self._best is None:
            self._best = {n: t.detach().clone() for n, t in self._state().items()}
        for n, t in self._state().items():
            self._best[n][ks] = t[ks]

    @torch.no_grad()
    def restore_best(self, ks: list[int]) -> None:
        if self._best is not None:
            for n, t in self._state().items():
                t[ks] = self._best[n][ks]

    @torch.no_grad()
    def write_back(self, modules: list[nn.Module]) -> None:
        state = self._state()
        for k, module in enumerate(modules):
            for n, t in (*module.named_parameters(), *module.named_buffers()):
                if n in state:
                    t.copy_(state[n][k])

    def _outputs(
        self, block: slice, x: torch.Tensor, *, train: bool, step: int, offset: int
    ) -> torch.Tensor:
        """Outputs ``(LANE_BLOCK, b, O)`` of the lanes ``block`` on their inputs ``x``."""
        raise NotImplementedError

    def _block_state(
        self, block: slice
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        if len(self.blocks) == 1:  # no views: autograd then writes the gradients in place
            return self.params, self.buffers, self.keys
        return (
            {n: t[block] for n, t in self.params.items()},
            {n: t[block] for n, t in self.buffers.items()},
            self.keys[block],
        )

    def _chunks(self, b: int) -> Iterator[slice]:
        yield slice(0, b)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        x, y = self._padded(x), self._padded(y)
        b = x.shape[1]
        total = torch.zeros(x.shape[0], device=x.device)
        first = self._first_sample(b)
        for block in self.blocks if b else ():  # a data-parallel share may be empty
            for part in self._chunks(b):
                start = first + part.start
                out = self._outputs(block, x[block, part], train=True, step=step, offset=start)
                sums = self.head.loss_sums(out, y[block, part])
                (sums.sum() / b).backward()
                total[block] += sums.detach()
        if self.sync is not None:
            stats = _running_stats(iter(self.buffers.items()))
            self.sync.average(list(self.params.values()), stats, b)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return total[: self.members]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.unsqueeze(0).expand(LANE_BLOCK, *x.shape)
        outs = [
            torch.cat(
                [
                    self._outputs(block, xs[:, p], train=False, step=0, offset=0)
                    for p in self._chunks(len(x))
                ],
                dim=1,
            )
            for block in self.blocks
        ]
        return torch.cat(outs)[: self.members]


class _Grouped(_Stacked):
    kind = "grouped"

    def __init__(
        self, modules: list[nn.Module], head: HeadSpec, keys: list[int], chunk: int | None
    ) -> None:
        super().__init__(modules, head, keys)
        self.fwd = GroupedForward(modules[0], self.lanes)
        self.chunk = chunk

    def _chunks(self, b: int) -> Iterator[slice]:
        step = self.chunk or b
        for s in range(0, b, step):
            yield slice(s, min(s + step, b))

    def _outputs(
        self, block: slice, x: torch.Tensor, *, train: bool, step: int, offset: int
    ) -> torch.Tensor:
        params, buffers, keys = self._block_state(block)
        return self.fwd(
            params, x, train=train, keys=keys, step=step, offset=offset, buffers=buffers
        )


class _Vmap(_Stacked):
    kind = "vmap"

    def __init__(
        self, modules: list[nn.Module], head: HeadSpec, keys: list[int], clock: DropoutClock
    ) -> None:
        self.clock = clock
        copies = [with_member_dropout(m, key, clock) for m, key in zip(modules, keys, strict=True)]
        super().__init__(copies, head, keys)
        base = copy.deepcopy(copies[0], memo={id(clock): clock}).to("meta")
        self.base = base

        def call(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, b), (x,))

        # "error": a random op inside forward would draw for all members at once, tying member
        # k's stream to the others; such models train in the loop instead.
        self._fn = vmap(call, randomness="error")

    def _outputs(
        self, block: slice, x: torch.Tensor, *, train: bool, step: int, offset: int
    ) -> torch.Tensor:
        params, buffers, _ = self._block_state(block)
        self.base.train(train)
        self.clock.step, self.clock.offset = step, offset
        return self._fn(params, buffers, x)


class _Loop(Engine):
    """One module and one optimizer per member; each member draws from its own RNG state."""

    kind = "loop"

    def __init__(
        self,
        modules: list[nn.Module],
        head: HeadSpec,
        keys: list[int],
        clock: DropoutClock,
        rng_seeds: list[int],
    ) -> None:
        super().__init__(len(modules), head)
        self.clock = clock
        self.mods = [with_member_dropout(m, k, clock) for m, k in zip(modules, keys, strict=True)]
        self.device = next(modules[0].parameters(), torch.empty(0)).device
        self.rng = [self._seeded_state(s) for s in rng_seeds]
        self._best: list[dict[str, torch.Tensor] | None] = [None] * len(modules)
        self.dropout = _has_dropout(modules[0])

    def _seeded_state(self, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = None
        if self.device.type == "cuda":
            with torch.random.fork_rng(devices=[self.device]):
                torch.cuda.manual_seed(seed)
                cuda = torch.cuda.get_rng_state(self.device)
        return torch.Generator().manual_seed(seed).get_state(), cuda

    @contextlib.contextmanager
    def _member_rng(self, k: int) -> Iterator[None]:
        cpu, cuda = self.rng[k]
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, self.device)
        yield
        cuda_now = torch.cuda.get_rng_state(self.device) if cuda is not None else None
        self.rng[k] = (torch.get_rng_state(), cuda_now)

    def start(self, lr: LaneValue, weight_decay: LaneValue) -> None:
        self.opts = [
            member_optimizer(m.parameters(), lr, weight_decay, k) for k, m in enumerate(self.mods)
        ]

    def train_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        b = x.shape[1]
        self.clock.step, self.clock.offset = step, self._first_sample(b)
        out = torch.zeros(self.members, device=x.device)
        active = [k for k in range(self.members) if self.active[k]]
        for k in active:
            m = self.mods[k]
            m.train()
            if b:  # a data-parallel share may be empty
                with self._member_rng(k):
                    s = self.head.loss_sums(m(x[k]).unsqueeze(0), y[k].unsqueeze(0))[0]
                    (s / b).backward()
                out[k] = s.detach()
            if self.sync is None:
                self.opts[k].step()
                self.opts[k].zero_grad(set_to_none=True)
        if self.sync is not None:  # one all-reduce for every member, then their steps
            params = [p for k in active for p in self.mods[k].parameters()]
            stats = [t for k in active for t in _running_stats(self.mods[k].named_buffers())]
            self.sync.average(params, stats, b)
            for k in active:
                self.opts[k].step()
                self.opts[k].zero_grad(set_to_none=True)
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.eval()(x) for m in self.mods])

    def save_best(self, ks: list[int]) -> None:
        for k in ks:
            self._best[k] = {n: t.detach().clone() for n, t in self.mods[k].state_dict().items()}

    def restore_best(self, ks: list[int]) -> None:
        for k in ks:
            best = self._best[k]
            if best is not None:
                self.mods[k].load_state_dict(best)

    def write_back(self, modules: list[nn.Module]) -> None:
        for m, trained in zip(modules, self.mods, strict=True):
            if m is not trained:
                m.load_state_dict(trained.state_dict())


def _activation_bytes(model: nn.Module, probe: torch.Tensor) -> int:
    """Largest activation of one sample, in bytes (from a probe forward)."""
    sizes: list[int] = []

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] == len(probe):
            sizes.append(out[0].numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    return max(sizes, default=probe[0].numel() * 4)


def _mismatch(engine: Engine, ref: torch.Tensor, probe: torch.Tensor) -> str | None:
    got = engine.forward(probe)
    if got.shape != ref.shape:
        return f"outputs of shape {tuple(got.shape)} instead of {tuple(ref.shape)}"
    err = float((got - ref).abs().max())
    if not err <= 1e-4 * (1.0 + float(ref.abs().max())):
        return f"outputs differ from the model's own forward by {err:.3g}"
    return None


def _check_vmap_training(engine: _Vmap, probe: torch.Tensor) -> None:
    xs = probe.unsqueeze(0).expand(LANE_BLOCK, *probe.shape)
    engine._outputs(engine.blocks[0], xs, train=True, step=0, offset=0).sum().backward()
    for p in engine.params.values():
        p.grad = None


def build_engine(
    modules: list[nn.Module],
    head: HeadSpec,
    probe: torch.Tensor,
    *,
    vectorize: bool | str,
    train: bool,
    keys: list[int] | None = None,
    rng_seeds: list[int] | None = None,
    log_level: int = logging.INFO,
) -> Engine:
    """The fastest engine that runs ``modules`` correctly.

    Grouped (recognised architectures), else ``vmap``, else the loop; each vectorized engine
    is first checked against the members' own forward on ``probe`` (and, for training, one
    ``vmap`` backward). ``vectorize=False`` forces the loop; ``True`` raises where ``"auto"``
    falls back (with a log line saying why).
    """
    keys = keys if keys is not None else [0] * len(modules)
    rng_seeds = rng_seeds if rng_seeds is not None else [0] * len(modules)
    clock = DropoutClock()
    if vectorize is False:
        return _Loop(modules, head, keys, clock, rng_seeds)
    with torch.no_grad():
        ref = torch.stack([m.eval()(probe) for m in modules])
    why = grouped_unsupported(modules[0])
    if why is None:
        chunk = None
        if probe.device.type == "cpu":
            per_sample = _activation_bytes(modules[0], probe)
            chunk = max(1, _CACHE_BYTES // (_REF_LANES * per_sample))
        try:
            grouped = _Grouped(modules, head, keys, chunk)
            why = _mismatch(grouped, ref, probe)
        except Exception as exc:  # a layer combination the grouped rules get wrong
            why = _one_line(exc)
        if why is None:
            return grouped
        log.debug("grouped forward unavailable (%s); trying vmap", why)
    try:
        engine = _Vmap(modules, head, keys, clock)
        why = _mismatch(engine, ref, probe)
        if why is None and train:
            _check_vmap_training(engine, probe)
    except Exception as exc:  # whatever vmap cannot run: fall back, saying why
        why = _one_line(exc)
    if why is None:
        return engine
    if vectorize is True:
        raise ValueError(f"vectorize=True, but torch.func.vmap cannot run this model ({why})")
    log.log(
        log_level,
        "DeepEnsemble: running the %d members one by one; vmap cannot run this model (%s)",
        len(modules),
        why,
    )
    return _Loop(modules, head, keys, clock, rng_seeds)
