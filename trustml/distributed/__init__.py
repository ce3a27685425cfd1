"""MPI distribution (mpi4py): communicators, member scheduling, checkpoints, error handling.

Everything here works without MPI: :func:`get_comm` returns a single-process communicator
unless the process was started by ``mpiexec``/``srun``.
"""

from trustml.distributed.checkpoint import MemberCheckpoints, run_key
from trustml.distributed.comm import Comm, MPIComm, SerialComm, get_comm, launched_by_mpi
from trustml.distributed.errors import abort_on_error
from trustml.distributed.schedule import block_range, greedy_owners, my_block, shard_batches

__all__ = [
    "Comm",
    "MPIComm",
    "MemberCheckpoints",
    "SerialComm",
    "abort_on_error",
    "block_range",
    "get_comm",
    "greedy_owners",
    "launched_by_mpi",
    "my_block",
    "run_key",
    "shard_batches",
]
