"""MPI distribution (mpi4py): communicators, member scheduling, data-parallel groups (gradient
averaging), checkpoints, error handling.

Everything here works without MPI: :func:`get_comm` returns a single-process communicator
unless the process was started by ``mpiexec``/``srun``.
"""

from trustml.distributed.checkpoint import MemberCheckpoints, run_key
from trustml.distributed.comm import Comm, MPIComm, SerialComm, get_comm, launched_by_mpi
from trustml.distributed.errors import abort_on_error
from trustml.distributed.gradients import (
    ALLREDUCE_BACKENDS,
    DEFAULT_ALLREDUCE,
    DataGroup,
    data_groups,
    free_group,
)
from trustml.distributed.schedule import block_range, greedy_owners, my_block, shard_batches

__all__ = [
    "ALLREDUCE_BACKENDS",
    "Comm",
    "DEFAULT_ALLREDUCE",
    "DataGroup",
    "MPIComm",
    "MemberCheckpoints",
    "SerialComm",
    "abort_on_error",
    "block_range",
    "data_groups",
    "free_group",
    "get_comm",
    "greedy_owners",
    "launched_by_mpi",
    "my_block",
    "run_key",
    "shard_batches",
]
