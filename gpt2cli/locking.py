"""An exclusive lock that belongs to one process and dies with it (``flock``).

The lock file holds ``PID HOST`` of its holder, so that a process refused the lock can say who
has it. The kernel drops the lock when the holder exits for any reason (kill -9 included); the
file itself stays and is taken over by the next holder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpt2cli import console
from gpt2cli.errors import Gpt2Error

# flock refused by the filesystem (some network or FUSE filesystems), not by another holder.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _holder(fd: int) -> str:
    try:
        fields = os.pread(fd, 4096, 0).decode("utf-8", "replace").split()
    except OSError:
        fields = []
    if len(fields) >= 2 and fields[0].isdigit():
        return f"process {fields[0]} on {fields[1]}"
    return "another process"


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` is still the file ``fd`` locked (a releasing holder may remove it)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _record_alive_elsewhere(fd: int) -> str | None:
    """Without flock: the recorded holder, if it is a live process of this host other than us."""
    fields = os.pread(fd, 4096, 0).decode("utf-8", "replace").split()
    if len(fields) < 2 or not fields[0].isdigit() or fields[1] != socket.gethostname():
        return None
    pid = int(fields[0])
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"process {pid} on {fields[1]}"


@contextmanager
def exclusive_lock(
    path: str | os.PathLike[str], what: str, hint: str | None = None, command: str = ""
) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the with-block.

    Held by another process: Gpt2Error ``WHAT is in use by process PID on HOST (HINT)``, and
    nothing is written. Where the filesystem has no flock, a warning, and only the ``PID HOST``
    record guards (against live processes of this host). OSError (cannot create the file)
    propagates.
    """
    path = Path(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise Gpt2Error(f"{what} is in use by {holder}", hint) from None
        except OSError as error:
            if error.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            holder = _record_alive_elsewhere(fd)
            if holder is not None:
                os.close(fd)
                raise Gpt2Error(f"{what} is in use by {holder}", hint) from None
            prefix = f"gpt2 {command}" if command else "gpt2"
            console.info(
                f"{prefix}: warning: {path}: cannot lock ({error.strerror}): this filesystem "
                "has no flock; make sure no process on another host uses it"
            )
            break
        if _still_named(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
