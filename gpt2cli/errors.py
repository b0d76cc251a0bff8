"""The project's user-facing exceptions, caught in one place by ``gpt2cli.cli.main``."""

from __future__ import annotations

import errno
import os


class Gpt2Error(Exception):
    """A runtime error the user can act on: printed as one line, exit status 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(Gpt2Error):
    """Bad arguments or options: printed as one line, exit status 2."""

    exit_code = 2


def malformed_json(where: str, line: int, error: ValueError) -> Gpt2Error:
    """A JSON line that does not parse, with its line and column (json's message ends in
    " at" when it expects the position appended)."""
    reason = str(getattr(error, "msg", error)).removesuffix(" at")
    column = getattr(error, "colno", None)
    at = f" at column {column}" if column else ""
    reason = reason[:1].lower() + reason[1:]
    return Gpt2Error(f"{where}: line {line}: malformed JSON{at} ({reason})")


def os_error_message(error: OSError) -> str:
    """``PATH: reason`` (lower-case, as every error line reads) for a file-system error."""
    reason = error.strerror or errno.errorcode.get(error.errno or 0, str(error))
    reason = reason[:1].lower() + reason[1:]
    if error.filename is not None:
        where = os.fsdecode(error.filename)
        if error.filename2 is not None:
            where += f" -> {os.fsdecode(error.filename2)}"
        return f"{where}: {reason}"
    return reason
