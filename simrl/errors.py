"""Errors that carry a message meant for the user.

The CLI turns a :class:`SimrlError` into one line on stderr and exit code 2 (bad input) or the
error's own ``exit_code``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SimrlError(Exception):
    """A problem the user can fix; ``str(err)`` says what is wrong and how to fix it.

    Attributes:
        exit_code: process exit code the CLI uses (2 = bad input, the default).
    """

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SpecError(SimrlError):
    """A world spec or recipe failed validation; the message names the field."""
