"""``fetch.jsonl``: one line per input URL once it is done (fetched, refused or failed).

Fields: url, status (the final HTTP status, or null), final_url, bytes (the final body as
stored), error (null, or a class such as timeout, dns_error, robots_disallowed,
private_address, not_archived), warc, offset and length (where the URL's records are, or
null), attempts, and in archive mode capture (the capture's timestamp). Lines are appended
in batches, each batch after the WARC bytes it names are durable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import open_own_file


def read_done(path: Path, logged_end: dict[str, int]) -> Iterator[str]:
    """The URLs of an existing log; a last line cut by a kill is removed first. Fills
    ``logged_end`` with the end of the last logged record of each WARC file."""
    if not path.exists():
        return
    with os.fdopen(open_own_file(path, os.O_RDWR), "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size:
            handle.seek(max(size - 1, 0))
            if handle.read(1) != b"\n":
                _cut_last_line(handle, size)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = json.loads(raw)
                url = line["url"]
            except (ValueError, KeyError, TypeError):
                raise Gpt2Error(
                    f"{path}: line {number}: not a fetch log line",
                    "the output directory holds another program's file",
                ) from None
            warc = line.get("warc")
            if warc:
                end = line["offset"] + line["length"]
                if end > logged_end.get(warc, 0):
                    logged_end[warc] = end
            yield url


def _cut_last_line(handle: BinaryIO, size: int) -> None:
    block = 1 << 16
    position = size
    while position > 0:
        start = max(position - block, 0)
        handle.seek(start)
        data = handle.read(position - start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            handle.truncate(start + newline + 1)
            return
        position = start
    handle.truncate(0)


class FetchLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._handle = os.fdopen(open_own_file(path, flags), "ab")  # closed by close()
        self._pending: list[bytes] = []

    def add(self, entry: dict[str, Any]) -> None:
        self._pending.append(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")

    def __len__(self) -> int:
        return len(self._pending)

    def take(self) -> list[bytes]:
        """The pending lines, handed over to be written by ``write`` once their WARC bytes
        are durable."""
        lines, self._pending = self._pending, []
        return lines

    def write(self, lines: list[bytes]) -> None:
        if lines:
            self._handle.write(b"".join(lines))
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def discard(self) -> None:
        """Forget the pending lines (their WARC bytes could not be made durable)."""
        self._pending.clear()

    def close(self) -> None:
        """Close the log (lines still pending are dropped: their records are not durable)."""
        self._pending.clear()
        self._handle.close()
