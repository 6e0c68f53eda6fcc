"""The one error type the tool raises for anything a user can fix."""

from __future__ import annotations


class GitOpsError(Exception):
    """A problem with the input or the repository, reported as one line and exit code 2.

    The message names what is wrong and, where there is one, the fix. Raising it must leave
    every file as it was.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
