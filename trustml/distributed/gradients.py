"""Data parallelism inside a member: groups of ranks that average their gradients every step.

``parallel: {data: D}`` splits the P ranks into P/D groups (:func:`data_groups`, an MPI
communicator split: group ``g`` is world ranks ``g*D .. g*D+D-1``). The ranks of a group train
the same members; each reads 1/D of every global minibatch, and before every optimizer step the
group replaces each rank's gradients by their mean over the group's samples
(:meth:`DataGroup.average`): the gradient of the whole global batch.

The all-reduce itself is an existing engine's, never written here; two are available:

``"mpi"`` (the default)
    mpi4py ``Allreduce(MPI.IN_PLACE, buffer, MPI.SUM)`` on a numpy view of one contiguous CPU
    buffer per step. Within a node MPICH reduces through shared memory.
``"torch"``
    ``torch.distributed.all_reduce`` with the gloo backend (NCCL would serve GPUs), its process
    group bootstrapped from the MPI ranks: rank 0 opens a ``TCPStore`` on a free port (on
    127.0.0.1 when every rank runs on one node, else on its host name) and broadcasts the port
    over MPI; each data group is a ``new_group``.

``python -m benchmarks.allreduce`` times both on flat buffers of 1e4 to 1e7 floats; the faster
(:data:`DEFAULT_ALLREDUCE`) is the default. Both sum in an order fixed by the layout (P, D and
the buffer's size), so a given layout reproduces its numbers exactly, and every rank of a group
receives the same bits (with two ranks each adds the same two numbers; with more, MPICH's
recursive doubling and reduce-scatter and gloo's ring give every rank one reduced copy), so the
ranks of a group keep identical weights.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from trustml.distributed.comm import Comm, MPIComm, SerialComm

__all__ = [
    "ALLREDUCE_BACKENDS",
    "DEFAULT_ALLREDUCE",
    "Allreduce",
    "DataGroup",
    "MPIAllreduce",
    "TorchAllreduce",
    "data_groups",
    "free_group",
    "torch_groups",
]

log = logging.getLogger("trustml")

#: The all-reduce engines :func:`data_groups` can use.
ALLREDUCE_BACKENDS = ("mpi", "torch")
#: The faster of the two on one node (``benchmarks/results/allreduce.json``).
DEFAULT_ALLREDUCE = "mpi"


class Allreduce(Protocol):
    """Sums a contiguous 1-D tensor in place over the ranks of one group."""

    size: int

    def __call__(self, buf: torch.Tensor) -> None: ...


class MPIAllreduce:
    """``MPI_Allreduce`` (in place, ``MPI.SUM``) over ``comm`` on a tensor's host memory."""

    def __init__(self, comm: Comm) -> None:
        if comm.size > 1 and not isinstance(comm, MPIComm):
            raise TypeError(f"an MPI all-reduce needs an MPIComm, got {type(comm).__name__}")
        self.comm, self.size = comm, comm.size

    def __call__(self, buf: torch.Tensor) -> None:
        if self.size == 1:
            return
        from mpi4py import MPI

        assert isinstance(self.comm, MPIComm)
        host = buf if buf.device.type == "cpu" else buf.cpu()
        self.comm.mpi.Allreduce(MPI.IN_PLACE, host.numpy(), op=MPI.SUM)
        if host is not buf:
            buf.copy_(host)


class TorchAllreduce:
    """``torch.distributed.all_reduce`` (``SUM``) over one process group (see :func:`torch_groups`)."""

    def __init__(self, group: Any, size: int) -> None:
        self.group, self.size = group, size

    def __call__(self, buf: torch.Tensor) -> None:
        if self.size == 1:
            return
        import torch.distributed as dist

        host = buf if buf.device.type == "cpu" else buf.cpu()  # gloo reduces host memory
        dist.all_reduce(host, op=dist.ReduceOp.SUM, group=self.group)
        if host is not buf:
            buf.copy_(host)


def _store_address(world: Comm) -> str:
    """127.0.0.1 when every rank runs on rank 0's node, else rank 0's host name."""
    hosts = world.allgather(socket.gethostname())
    return "127.0.0.1" if len(set(hosts)) == 1 else hosts[0]


def torch_groups(world: Comm, groups: Sequence[Sequence[int]], backend: str = "gloo") -> list[Any]:
    """``torch.distributed`` process groups of ``groups`` (lists of world ranks), bootstrapped
    from the MPI ranks of ``world``. Collective over ``world``.

    The default process group is created once per process (its store on a free port rank 0
    picks and broadcasts, so nothing is guessed) and reused by later calls; each call adds
    one ``new_group`` per group, created by every rank in the same order.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        address = _store_address(world)
        store = None
        port = None
        if world.rank == 0:
            store = dist.TCPStore(address, 0, world.size, True, wait_for_workers=False)
            port = store.port
        port = world.bcast(port)
        if world.rank != 0:
            store = dist.TCPStore(address, port, world.size, False)
        dist.init_process_group(backend, store=store, rank=world.rank, world_size=world.size)
    elif dist.get_world_size() != world.size or dist.get_rank() != world.rank:
        raise RuntimeError(
            f"torch.distributed is already initialised as rank {dist.get_rank()} of "
            f"{dist.get_world_size()}, not as rank {world.rank} of {world.size}"
        )
    return [dist.new_group([int(r) for r in ranks], backend=backend) for ranks in groups]


class DataGroup:
    """The ranks that train the same members, each on its share of every global batch.

    It is what the epoch loop calls a gradient group (:class:`trustml.uq._fit_loop.GradientGroup`):
    ``share`` (this rank's part of every batch), ``sum`` (the epoch's loss sums and counts) and,
    for the engine, ``first_sample`` and ``average``.

    Parameters
    ----------
    comm : Comm
        The group's communicator (its ranks, in order).
    allreduce : Allreduce
        The engine that sums a buffer over the group.
    share : object, optional
        What the batch order reads this rank's share from (``DataShare(comm.rank,
        comm.size)``; the caller builds it, this layer does not know the training loop).
    """

    def __init__(self, comm: Comm, allreduce: Allreduce, share: Any = None) -> None:
        self.comm, self.rank, self.size = comm, comm.rank, comm.size
        self.allreduce = allreduce
        self.share = share
        self._buf: torch.Tensor | None = None

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the group (a new tensor)."""
        out = t.detach().clone().contiguous()
        self.allreduce(out.view(-1))
        return out

    def first_sample(self, batch: int) -> int:
        """Index of this rank's first sample in the global batch (``batch`` samples here).

        Dropout masks are drawn per sample index, so a share draws the masks the whole batch
        draws for those samples on one rank. One small all-reduce; the engines call it only
        for models with dropout.
        """
        counts = torch.zeros(self.size, dtype=torch.float64)
        counts[self.rank] = float(batch)
        self.allreduce(counts)
        return int(counts[: self.rank].sum().item())

    def _buffer(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        buf = self._buf
        if buf is None or buf.numel() != n or buf.dtype != dtype or buf.device != device:
            buf = self._buf = torch.empty(n, dtype=dtype, device=device)
        return buf

    @torch.no_grad()
    def average(
        self, params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor], batch: int
    ) -> None:
        """Replace every ``p.grad`` by the group's mean gradient, weighted by the local batches.

        Rank r computed ``g_r``, the mean gradient over its ``b_r = batch`` samples; the mean
        over the global batch is ``sum_r b_r g_r / sum_r b_r``. One flat buffer holds
        ``b_r g_r`` for every parameter, ``b_r`` times each of ``buffers`` (running statistics:
        their batch-weighted mean, exact for BatchNorm's running mean), one has-gradient flag per
        parameter and ``b_r`` itself: one all-reduce, then one division. A rank whose share
        of a step is empty (a last batch shorter than the group) passes ``batch=0`` and no
        gradients; it receives the others' mean. A parameter without a gradient on every rank
        keeps none (the optimizer skips it, as on one rank).
        """
        if not params:
            return
        dtype = params[0].dtype
        if any(p.dtype != dtype for p in params):
            dtype = torch.float64
        device = params[0].device
        n_grad = sum(p.numel() for p in params)
        n_stat = sum(b.numel() for b in buffers)
        buf = self._buffer(n_grad + n_stat + len(params) + 1, dtype, device)
        weight = float(batch)
        o = 0
        for p in params:
            k, chunk = p.numel(), buf[o : o + p.numel()]
            if p.grad is None:
                chunk.zero_()
            else:
                torch.mul(p.grad.reshape(-1).to(dtype), weight, out=chunk)
            o += k
        for b in buffers:
            k = b.numel()
            torch.mul(b.reshape(-1).to(dtype), weight, out=buf[o : o + k])
            o += k
        flags = buf[o : o + len(params)]
        flags.copy_(torch.tensor([p.grad is not None for p in params], dtype=dtype))
        buf[-1] = weight
        self.allreduce(buf)
        total = float(buf[-1].item())
        if total == 0.0:  # no rank had a sample (never from a batch order): leave all alone
            return
        buf[: n_grad + n_stat].div_(total)
        has_grad = (flags > 0).tolist()
        o = 0
        for p, present in zip(params, has_grad, strict=True):
            k, chunk = p.numel(), buf[o : o + p.numel()].view(p.shape)
            if present:
                if p.grad is None:
                    p.grad = chunk.to(p.dtype).clone()
                else:
                    p.grad.copy_(chunk)
            o += k
        for b in buffers:
            k, chunk = b.numel(), buf[o : o + b.numel()].view(b.shape)
            b.copy_(chunk if b.is_floating_point() else chunk.round())
            o += k


def data_groups(
    world: Comm, data: int, *, allreduce: str = DEFAULT_ALLREDUCE, share: Any = None
) -> tuple[int, int, DataGroup | None]:
    """Split ``world`` into groups of ``data`` consecutive ranks. Collective over ``world``.

    Returns
    -------
    (n_groups, group_index, group)
        ``group`` is ``None`` when ``data == 1`` (each rank alone: today's training, no
        communicator is created). ``share``, when callable, is called as ``share(rank, size)``
        to build the group's ``share``.

    Raises
    ------
    ValueError
        ``data`` does not divide the number of ranks, or ``allreduce`` is unknown.
    """
    if data < 1 or world.size % data:
        raise ValueError(
            f"{world.size} rank(s) cannot form groups of {data}: the number of ranks must be a "
            "multiple of the data-parallel group size"
        )
    if allreduce not in ALLREDUCE_BACKENDS:
        raise ValueError(f"allreduce must be one of {ALLREDUCE_BACKENDS}, got {allreduce!r}")
    n_groups, index = world.size // data, world.rank // data
    if data == 1:
        return n_groups, index, None
    comm = world.split(color=index, key=world.rank)
    engine: Allreduce
    if allreduce == "mpi":
        engine = MPIAllreduce(comm)
    else:
        ranks = [list(range(g * data, (g + 1) * data)) for g in range(n_groups)]
        engine = TorchAllreduce(torch_groups(world, ranks)[index], data)
    made = share(comm.rank, comm.size) if callable(share) else share
    return n_groups, index, DataGroup(comm, engine, made)


def free_group(group: DataGroup | None) -> None:
    """Release a group's MPI communicator (``SerialComm`` and ``COMM_WORLD`` are kept)."""
    if group is not None and not isinstance(group.comm, SerialComm):
        free = getattr(group.comm, "free", None)
        if free is not None:
            free()
