"""One failing rank must end the whole job promptly, not leave the others in a collective."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Iterator

from trustml.distributed.comm import Comm
from trustml.exceptions import EXIT_INVALID, EXIT_UNFINISHED, TrustmlInputError

__all__ = ["abort_on_error"]

#: Seconds between printing the failure and ``MPI_Abort``. The abort kills every process of
#: the job, the launcher's output forwarders included, and a line still in a pipe to them can
#: be lost (seen once in the test suite on a busy machine; a known launcher behaviour).
FORWARD_GRACE_S = 0.5


@contextlib.contextmanager
def abort_on_error(comm: Comm) -> Iterator[None]:
    """On an exception in any rank of a multi-rank job, print it and ``MPI_Abort`` the job.

    With one process the exception propagates unchanged. Errors every rank raises alike (an
    invalid protocol) should be handled before entering this context, so they exit cleanly.
    """
    if comm.size == 1:
        yield
        return
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - anything left unhandled ends the job
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({last.filename}:{last.lineno})" if last else ""
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        print(
            f"trustml: rank {comm.rank} of {comm.size} failed: {exc.__class__.__name__}: "
            f"{message}{where}; aborting all ranks",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(FORWARD_GRACE_S)
        # The job's exit status says what the CLI says: bad input on one rank (a corrupt
        # shard) 2, anything else 3 (the run could not finish).
        comm.abort(EXIT_INVALID if isinstance(exc, TrustmlInputError) else EXIT_UNFINISHED)
        raise
