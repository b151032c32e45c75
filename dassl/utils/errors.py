"""The one exception type for mistakes in the user's input (files, config keys, flags).

``train.py`` reports a :class:`UserInputError` as one line on stderr with exit status 2 and no
traceback, because the message already says which file or key is wrong and how to fix it.
Every other exception is a bug (or an environment failure) and keeps its full traceback, in
the log too. Raise it only where the input, not the code, is at fault.
"""

from __future__ import annotations

__all__ = ["UserInputError", "InputFileNotFoundError", "InvalidInputError"]


class UserInputError(Exception):
    """Bad user input: the message names the file or key and the fix."""


class InputFileNotFoundError(FileNotFoundError, UserInputError):
    """A file or directory the user pointed at does not exist (still a FileNotFoundError)."""


class InvalidInputError(ValueError, UserInputError):
    """A user-given file or value is unusable (still a ValueError for existing callers)."""
