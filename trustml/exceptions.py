"""Exceptions raised by trustml.

Every error caused by a user's input derives from :class:`TrustmlInputError`; the CLI turns
those into one line on stderr and exit status 2. A run that started but could not finish (a
model that diverges, memory running out, a user's factory that raises) ends in
:class:`RunFailed`, exit status 3. The exit statuses are declared here, once.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAIL",
    "EXIT_INVALID",
    "EXIT_PASS",
    "EXIT_UNFINISHED",
    "RunFailed",
    "RunInterrupted",
    "TrustmlError",
    "TrustmlInputError",
    "ProtocolError",
    "DataError",
    "NotFittedError",
]


EXIT_PASS = 0
"""Every acceptance criterion holds (``verify``: the run reproduced)."""
EXIT_FAIL = 1
"""The run finished and some criterion fails; the report is written (``verify``: a number differs)."""
EXIT_INVALID = 2
"""The protocol, its data, a results folder or ``--out`` is invalid; nothing is written."""
EXIT_UNFINISHED = 3
"""The run could not finish (diverged, out of memory, a user's code raised); no report is written."""


class TrustmlError(Exception):
    """Base class of all trustml errors."""


class TrustmlInputError(TrustmlError, ValueError):
    """Invalid user input: a protocol, a file or an array. Maps to CLI exit status 2."""


class ProtocolError(TrustmlInputError):
    """The protocol file is malformed or names an unknown key or value.

    Parameters
    ----------
    message : str
        What was expected and what came.
    key : str, optional
        Dotted key path in the protocol (``"uncertainty.members"``), prefixed to the message.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class DataError(TrustmlInputError):
    """A data file or array is missing, malformed, corrupt or holds non-finite values."""


class NotFittedError(TrustmlError, AttributeError):
    """An estimator was used before ``fit`` was called."""


class RunFailed(TrustmlError):
    """A run could not finish: the stage it was in and why. Maps to CLI exit status 3.

    Parameters
    ----------
    stage : str
        What the run was doing (``"training 'deep_ensemble'"``, ``"building the model"``).
    cause : str
        One line saying why, e.g. ``"FloatingPointError: the training loss ... became non-finite"``.
    left : str
        What the run left on disk, e.g. checkpoints to resume from ("" when nothing).
    """

    def __init__(self, stage: str, cause: str, *, left: str = "") -> None:
        self.stage, self.cause, self.left = stage, cause, left
        super().__init__(f"{stage} failed: {cause}" + (f"; {left}" if left else ""))


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; the message says what it left on disk."""
