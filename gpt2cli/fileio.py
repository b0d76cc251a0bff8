"""Atomic file writes, stdin/stdout conventions and output guards."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from gpt2cli.errors import Gpt2Error, UsageError, os_error_message


def check_output_file(path: str | os.PathLike[str], option: str = "-o") -> None:
    """Refuse, before any work, an output file that cannot be written: a directory, a path
    under a regular file, or one in a directory this user may not write."""
    target = Path(path)
    where = f"{option} {target}" if option else str(target)
    if target.is_dir():
        raise Gpt2Error(f"{where}: is a directory, not a file")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise Gpt2Error(f"{where}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Gpt2Error(f"{where}: {parent}: permission denied")


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file beside ``path`` and rename it over ``path`` only on success.

    An interrupted writer leaves at most a hidden ``.NAME.tmp*`` file, never a
    half-written file under the final name.
    """
    target = Path(path)
    check_output_file(target, "")
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    encoding = None if "b" in mode else "utf-8"
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException as error:
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(target)  # a failed write names the file it was for
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise


@contextmanager
def os_errors() -> Iterator[None]:
    """File-system errors (permission, missing directory, full disk) as one-line errors."""
    try:
        yield
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except OSError as error:
        raise Gpt2Error(os_error_message(error)) from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 4 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make a rename inside ``path`` durable (best effort where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_file(name: str | os.PathLike[str], what: str = "file") -> BinaryIO:
    """An existing file opened for binary reading, or a one-line error naming it as ``what``."""
    try:
        return open(name, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise Gpt2Error(f"{name}: no such {what}") from None
    except IsADirectoryError:
        raise Gpt2Error(f"{name}: is a directory, not a {what}") from None
    except PermissionError:
        raise Gpt2Error(f"{name}: permission denied") from None


def open_binary_input(name: str) -> BinaryIO:
    """``-`` is stdin; anything else is a file that must exist."""
    return sys.stdin.buffer if name == "-" else open_file(name)


def binary_stdout(what: str = "binary data", suggestion: str | None = None) -> BinaryIO:
    """stdout as a binary stream, refusing to spray binary onto a terminal (as zstd does)."""
    if sys.stdout.isatty():
        raise UsageError(
            f"refusing to write {what} to a terminal",
            suggestion or "redirect stdout to a file or a pipe",
        )
    return sys.stdout.buffer


@contextmanager
def spool_stdin(
    inputs: list[str], directory: str | os.PathLike[str] | None = None, prefix: str = "gpt2"
) -> Iterator[list[str]]:
    """``inputs`` with ``-`` replaced by a temp copy of stdin, so that a command can read its
    input twice. The copy (hidden, in ``directory``, else the temp directory) is removed when
    the block ends, however it ends; a copy that fails (a full disk) is removed at once and
    named in the error. Errors that name the copy are rewritten to name ``<stdin>``."""
    if "-" not in inputs:
        yield inputs
        return
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{prefix}-stdin.", suffix=".tmp", dir=directory)
    try:
        try:
            with os.fdopen(fd, "wb") as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 22)
        except OSError as error:
            if isinstance(error, BrokenPipeError):
                raise
            error.filename = name
            raise Gpt2Error(
                f"copying stdin for a second pass: {os_error_message(error)}",
                "free some space there, or give the input as a file",
            ) from None
        try:
            yield [name if item == "-" else item for item in inputs]
        except Gpt2Error as error:
            error.message = error.message.replace(name, "<stdin>")
            raise
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass
