"""Exceptions raised by trustml.

Every error caused by a user's input derives from :class:`TrustmlInputError`; the CLI turns
those into one line on stderr and exit status 2.
"""

from __future__ import annotations

__all__ = [
    "TrustmlError",
    "TrustmlInputError",
    "ProtocolError",
    "DataError",
    "NotFittedError",
]


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
