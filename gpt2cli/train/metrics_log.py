"""What a training run reports: ``metrics.jsonl`` records and the progress line on stderr."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpt2cli import console, jsonio
from gpt2cli.fileio import atomic_write, open_append, open_own_file


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn last line (crash mid-write) is skipped."""
    records = []
    try:
        # never through a link: a resumed run writes back what it read here
        with os.fdopen(open_own_file(path, os.O_RDONLY), encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
    except FileNotFoundError:
        pass
    return records


class MetricsLog:
    """Append-only ``metrics.jsonl``, one JSON object per line, flushed after each record;
    ``on_write`` (the trackers) gets each record too."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        resume_step: int | None = None,
        on_write: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_write = on_write
        self.records: list[dict[str, Any]] = []
        try:
            if resume_step is not None:
                # Drop what the interrupted run logged after the checkpoint we resume from.
                kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
                self.records = kept
                with atomic_write(self.path, "w") as handle:
                    for record in self.records:
                        handle.write(json.dumps(record) + "\n")
            self._handle = open_append(self.path)
        except OSError as error:
            raise self._error(error) from None

    def _error(self, error: OSError) -> Exception:
        from gpt2cli.train.checkpoint import write_error

        return write_error(self.path, error)

    def write(self, record: dict[str, Any]) -> None:
        clean = jsonio.finite(record)
        self.records.append(clean)
        try:
            self._handle.write(json.dumps(clean) + "\n")
            self._handle.flush()
        except OSError as error:
            raise self._error(error) from None
        if self.on_write is not None:
            self.on_write(clean)

    def close(self) -> None:
        # What a failed write left in the buffer is lost; that failure was reported.
        with contextlib.suppress(OSError):
            self._handle.close()


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def status_text(record: dict[str, Any], eta: float | None) -> str:
    parts = [f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}"]
    if record.get("tokens_per_s"):
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if record.get("mfu") is not None:
        parts.append(f"MFU {100 * record['mfu']:.1f}%")
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    return "  ".join(parts)


class Progress:
    """A rich progress line on a TTY; plain lines every ``log_every`` steps otherwise.

    Only rank 0 makes one (others get ``enabled=False``).
    """

    def __init__(self, total: int, start: int, log_every: int, enabled: bool = True) -> None:
        self.total = total
        self.log_every = log_every
        self.enabled = enabled
        self._stack = contextlib.ExitStack()
        self._tty = enabled and console.stderr_is_tty()
        self._bar: Any = None
        if self._tty:
            self._bar = self._stack.enter_context(console.progress(transient=False))
            self._task = self._bar.add_task("train", total=total, completed=start, status="")

    def step(self, record: dict[str, Any], eta: float | None) -> None:
        if not self.enabled:
            return
        text = status_text(record, eta)
        if self._tty:
            self._bar.update(self._task, completed=record["step"], status=text)
        elif record["step"] % self.log_every == 0 or record["step"] == self.total:
            console.info(f"step {record['step']}/{self.total}  {text}")

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._tty:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            console.info(text)

    def close(self) -> None:
        self._stack.close()
