"""``parallel``: how the MPI ranks share a run's training.

``parallel: {data: D}`` makes groups of D ranks (P/D groups for P ranks). Each group trains its
block of the deep ensemble's members; inside a group every rank takes 1/D of every minibatch
and the group averages the gradients (:mod:`trustml.distributed.gradients`). ``D = 1`` (the
default) is one rank per group: members are spread over the ranks as before, with the same
numbers. That P is a multiple of D is checked when the run is planned (the file does not know
P): :func:`check_data_parallel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trustml.exceptions import ProtocolError
from trustml.protocol._fields import KeyedError, PositiveInt, StrictModel

__all__ = ["ParallelSpec", "check_data_parallel"]


def check_data_parallel(data_parallel: int, ranks: int) -> None:
    """``parallel.data`` must divide the number of ranks (:class:`ProtocolError` otherwise)."""
    if data_parallel < 1 or ranks % data_parallel:
        raise ProtocolError(
            f"groups of {data_parallel} ranks need a multiple of {data_parallel} MPI ranks, "
            f"and this run has {ranks}; start it with mpiexec -n "
            f"{data_parallel * max(1, ranks // data_parallel)} or change parallel.data",
            key="parallel.data",
        )


class ParallelSpec(StrictModel):
    """``parallel``: ranks per data-parallel group (``data``)."""

    data: PositiveInt = 1

    def check(
        self, methods: Sequence[Any], method_key: Callable[[int], str], acquisition: bool
    ) -> None:
        """Data parallelism trains the members of a plain deep ensemble; refuse the rest.

        A hyper-parameter search trains its trials as lanes spread over the ranks, the
        single-network methods are fitted whole on every rank, and a labeling campaign spreads
        whole fits over the ranks: none of them would use the groups.
        """
        if self.data == 1:
            return
        for i, spec in enumerate(methods):
            if spec.method != "deep_ensemble":
                raise KeyedError(
                    "parallel.data",
                    f"data parallelism (data: {self.data}) trains deep_ensemble members; "
                    f"{method_key(i)} is {spec.method}, which is fitted whole on every rank: "
                    "use data: 1",
                )
            if spec.search is not None:
                raise KeyedError(
                    "parallel.data",
                    f"data parallelism (data: {self.data}) does not apply to a "
                    f"hyper-parameter search yet ({method_key(i)}.search): use data: 1",
                )
        if acquisition:
            raise KeyedError(
                "parallel.data",
                f"data parallelism (data: {self.data}) does not apply to a labeling campaign "
                "(acquisition), whose fits are spread over the ranks whole: use data: 1",
            )
