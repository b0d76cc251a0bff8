"""Atomic file writes, stdin/stdout conventions and output guards."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, TextIO

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


# --- files in directories other users may write to (a run, a pack directory, -o) -------------
#
# The rules: a file the tool creates is created new (O_EXCL) or under a random temp name, and
# never through a symbolic link (O_NOFOLLOW); a file it reopens (a lock, an append-only log)
# must be a regular file that is not a link, and what it held is not truncated until it is
# ours (the lock taken). Renames replace a link, they never write through one.

# A name given by the user that becomes a file name (a part, a file prefix): no path
# separator, no leading dot (hidden files, "." and ".."), nothing but these characters.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str, option: str) -> str:
    """``name`` if it may become (part of) a file name inside its directory, else a usage
    error: the one rule for every user-given name that becomes a path."""
    if not NAME_RE.match(name):
        raise UsageError(
            f"{option} {name!r} is not a usable name",
            "letters, digits, '.', '_' and '-' (at most 100), not starting with a dot; no '/'",
        )
    return name


_MODE: int | None = None


def file_mode() -> int:
    """The mode a new file gets from the user's umask (0644 under the usual 022)."""
    global _MODE
    if _MODE is None:
        mask = None
        try:  # read without setting it (setting it, even back, races with other threads)
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("Umask:"):
                        mask = int(line.split()[1], 8)
        except (OSError, ValueError):
            pass
        if mask is None:
            mask = os.umask(0o022)
            os.umask(mask)
        _MODE = 0o666 & ~mask
    return _MODE


def symlink_error(path: str | os.PathLike[str]) -> Gpt2Error:
    return Gpt2Error(
        f"{path}: is a symbolic link; gpt2 never writes through a link it did not make",
        "remove the link",
    )


def open_own_file(path: str | os.PathLike[str], flags: int) -> int:
    """A file descriptor for ``path`` opened with ``flags`` (os.O_*), never through a symbolic
    link, and only if it is a regular file (a FIFO or a device planted there is refused
    without blocking on it). Raises Gpt2Error for a link or a special file, OSError else."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, file_mode())
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno == errno.EEXIST and os.path.islink(path)):
            raise symlink_error(path) from None
        if error.errno == errno.ENXIO:  # a FIFO without a reader, a socket
            raise Gpt2Error(f"{path}: is not a regular file", "remove it") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Gpt2Error(f"{path}: is not a regular file", "remove it")
        if info.st_nlink > 1:
            raise Gpt2Error(
                f"{path}: has {info.st_nlink} hard links; gpt2 never writes a file shared "
                "with another name",
                "remove it",
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str | os.PathLike[str]) -> TextIO:
    """An append-only text log (created if missing), never through a link."""
    fd = open_own_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "a", encoding="utf-8")


def create_new(path: str | os.PathLike[str], mode: str = "wb") -> IO:
    """A new file at ``path`` (whatever was there, a file or a link, removed first: the
    caller owns the name, a temp name of its own), opened for writing."""
    remove_entry(path)
    fd = open_own_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8")


def remove_entry(path: str | os.PathLike[str]) -> None:
    """Remove what is at ``path``: a link (never what it points to), a file or a directory
    tree; nothing there is fine."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def check_output_directory(path: str | os.PathLike[str], option: str) -> None:
    """Refuse, before any work, an output directory that cannot be written to: a file, a
    path under a file, or one (or the existing directory it would be made in) that this
    user may not write."""
    target = Path(path)
    where = f"{option} {target}"
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == target else f"{existing} is a file"
        raise Gpt2Error(f"{where}: {what}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Gpt2Error(f"{where}: {existing}: permission denied")


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
            os.fchmod(handle.fileno(), file_mode())
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
        if error.filename == "stdout":
            raise  # gpt2cli.cli reports it and drops what stdout still buffers
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


def existing_directory(
    name: str | os.PathLike[str],
    what: str = "directory",
    hint: str | None = None,
    option: str | None = None,
) -> Path:
    """``name`` as a path, or a one-line error naming it (after its ``option``) as ``what``
    when it is missing or is not a directory (``hint`` says what belongs there)."""
    path = Path(name).expanduser()
    where = f"{option} {name}" if option else str(name)
    if not path.exists():
        raise Gpt2Error(f"{where}: no such {what}")
    if not path.is_dir():
        raise Gpt2Error(f"{where}: not a {what}", hint)
    return path


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
