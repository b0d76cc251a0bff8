"""Exclusive ownership of a file or directory by one process at a time (an flock, which the
kernel releases when the holder dies, so a killed run never leaves a stale lock)."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from gpt2cli.errors import Gpt2Error


def _acquire(path: Path, what: str) -> TextIO:
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - the caller closes it
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise Gpt2Error(f"{what} is in use by {holder}", f"lock {path}") from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
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
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        with suppress(OSError):
            path.unlink()
        handle.close()
