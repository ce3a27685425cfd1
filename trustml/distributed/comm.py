"""One communicator interface for a single process and for MPI ranks.

Model and training code never imports mpi4py: it receives a :class:`Comm`. ``mpi4py`` is only
imported when the process was started by an MPI launcher (``mpiexec``, ``srun``) or when the
caller passes an ``mpi4py`` communicator.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

__all__ = ["Comm", "SerialComm", "MPIComm", "get_comm", "launched_by_mpi"]

# Environment variables set by the common MPI launchers (MPICH/Hydra, PMIx, Open MPI, MVAPICH,
# Slurm's PMI2) for every rank they start.
_LAUNCHER_VARS = ("PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


@runtime_checkable
class Comm(Protocol):
    """What trustml needs from a communicator (a subset of ``mpi4py.MPI.Comm``'s object API)."""

    rank: int
    size: int

    def bcast(self, obj: Any, root: int = 0) -> Any: ...
    def gather(self, obj: Any, root: int = 0) -> list[Any] | None: ...
    def allgather(self, obj: Any) -> list[Any]: ...
    def barrier(self) -> None: ...
    def abort(self, code: int = 1) -> None: ...
    def split(self, color: int, key: int = 0) -> Comm: ...

    @property
    def local_rank(self) -> int: ...


class SerialComm:
    """The communicator of a single process: rank 0 of 1; collectives are identities."""

    rank = 0
    size = 1
    local_rank = 0

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list[Any]:
        return [obj]

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)

    def split(self, color: int, key: int = 0) -> SerialComm:
        """The one process is its own group, whatever the color."""
        return self

    def __repr__(self) -> str:
        return "SerialComm()"


class MPIComm:
    """Adapter over an ``mpi4py`` communicator (``MPI.COMM_WORLD`` by default)."""

    def __init__(self, comm: Any = None) -> None:
        if comm is None:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
        self._comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self._local_rank: int | None = None

    @property
    def local_rank(self) -> int:
        """Rank among the processes on this node (for ``cuda:local_rank % n_gpus``)."""
        if self._local_rank is None:
            from mpi4py import MPI

            node = self._comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            self._local_rank = int(node.Get_rank())
            node.Free()
        return self._local_rank

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self._comm.bcast(obj, root=root)

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return self._comm.gather(obj, root=root)

    def allgather(self, obj: Any) -> list[Any]:
        return self._comm.allgather(obj)

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, code: int = 1) -> None:
        self._comm.Abort(code)

    def split(self, color: int, key: int = 0) -> MPIComm:
        """The ranks of the same ``color``, ordered by ``key`` (``MPI_Comm_split``; collective)."""
        return MPIComm(self._comm.Split(color=int(color), key=int(key)))

    def free(self) -> None:
        """Release a communicator made by :meth:`split` (never ``COMM_WORLD``)."""
        from mpi4py import MPI

        if self._comm != MPI.COMM_WORLD and self._comm != MPI.COMM_NULL:
            self._comm.Free()

    @property
    def mpi(self) -> Any:
        """The wrapped ``mpi4py`` communicator (for buffer collectives such as ``Allreduce``)."""
        return self._comm

    def __repr__(self) -> str:
        return f"MPIComm(rank={self.rank}, size={self.size})"


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (``TRUSTML_MPI=0|1`` overrides)."""
    forced = os.environ.get("TRUSTML_MPI")
    if forced is not None:
        return forced.strip() not in ("", "0", "false", "no")
    return any(v in os.environ for v in _LAUNCHER_VARS)


def get_comm(comm: Any = None) -> Comm:
    """The communicator to use.

    Parameters
    ----------
    comm : Comm, mpi4py communicator, or None
        ``None`` picks ``MPI.COMM_WORLD`` under an MPI launcher and :class:`SerialComm`
        otherwise, so a laptop run never pays for MPI start-up.
    """
    if comm is None:
        return MPIComm() if launched_by_mpi() else SerialComm()
    if isinstance(comm, SerialComm | MPIComm):
        return comm
    if hasattr(comm, "Get_rank") and hasattr(comm, "Get_size"):
        return MPIComm(comm)
    if isinstance(comm, Comm):
        return comm
    raise TypeError(
        f"Expected an mpi4py communicator, a trustml Comm or None, got {type(comm).__name__}"
    )
