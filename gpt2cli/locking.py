"""Exclusive ownership of a file or directory by one process at a time (an flock, which the
kernel releases when the holder dies, so a killed run never leaves a stale lock)."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import open_own_file


def _acquire(path: Path, what: str) -> BinaryIO:
    while True:
        # never through a link, never a special file, nothing truncated before the lock is ours
        fd = open_own_file(path, os.O_RDWR | os.O_CREAT)
        handle = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace")
            holder = "".join(c for c in text if c.isprintable()).strip() or "another process"
            handle.close()
            raise Gpt2Error(f"{what} is in use by {holder}", f"lock {path}") from None
        try:
            same = os.lstat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()  # its holder removed the file as we opened it: lock the new one


@contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block; if another process holds it, a
    Gpt2Error naming ``what`` and the holder's pid and host. The file is created for the
    block and removed after it."""
    handle = _acquire(path, what)
    try:
        with suppress(OSError):  # the holder's name is a courtesy: a full disk does not stop us
            os.ftruncate(handle.fileno(), 0)
            os.pwrite(handle.fileno(), f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        with suppress(OSError):
            path.unlink()
        handle.close()


def another_process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process other than this one (the writer of a temp file
    named after its pid, say): not ours and not gone."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
