"""Messages and progress on stderr; stdout is for data only."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_console: Console | None = None


def stderr_console() -> Console:
    """The one rich console of the process; it writes to stderr and honours NO_COLOR."""
    global _console
    if _console is None:
        _console = Console(stderr=True, no_color="NO_COLOR" in os.environ, highlight=False)
    return _console


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def info(message: str) -> None:
    """One plain line on stderr (no markup interpretation)."""
    stderr_console().print(message, markup=False, highlight=False, soft_wrap=True)


def warn(command: str, message: str) -> None:
    info(f"gpt2 {command}: warning: {message}")


class _NullProgress:
    """Stands in for rich's Progress when stderr is not a terminal."""

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        return 0

    def update(self, task_id: int, **_: Any) -> None:
        pass

    def advance(self, task_id: int, advance: float = 1) -> None:
        pass


@contextmanager
def progress(transient: bool = True) -> Iterator[Progress | _NullProgress]:
    """A rich progress display on stderr, shown only while stderr is a terminal."""
    if not stderr_is_tty():
        yield _NullProgress()
        return
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        redirect_stdout=False,
        redirect_stderr=False,
        transient=transient,
    )
    with bar:
        yield bar


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)


def human_bytes(size: float) -> str:
    """A size in decimal units: 812 B, 58.4 KB, 1.2 GB."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} TB"
