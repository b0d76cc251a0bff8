"""JSON Lines records in and out for the corpus stages, with bad lines counted, not fatal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from gpt2cli.corpus.stats import StageStats
from gpt2cli.fileio import atomic_write
from gpt2cli.text.compressed import open_input


@dataclass
class Record:
    data: dict[str, Any]
    source: str
    line: int


def iter_records(inputs: Iterable[str], stats: StageStats) -> Iterator[Record]:
    """JSON objects of every input (``-`` is stdin, compressed or not), in order.

    Each line is counted in ``stats``; a line that is not a JSON object is a bad record
    (``malformed_json``), shown and skipped, or raised under ``--strict``.
    """
    for name in inputs:
        source = "<stdin>" if name == "-" else name
        handle = open_input(name)
        try:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                stats.count_in(nbytes=len(raw))
                try:
                    data = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    reason = getattr(error, "msg", None) or "invalid UTF-8"
                    stats.bad(
                        "malformed_json", f"{source}: line {number}: malformed JSON ({reason})"
                    )
                    continue
                if not isinstance(data, dict):
                    stats.bad("malformed_json", f"{source}: line {number}: not a JSON object")
                    continue
                yield Record(data, source, number)
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()


def dumps(data: dict[str, Any]) -> bytes:
    """One JSON Lines line, UTF-8, no ASCII escaping."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


@contextmanager
def output(path: str | None) -> Iterator[BinaryIO]:
    """stdout, or ``path`` written atomically (only a complete run replaces it)."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with atomic_write(path, "wb") as handle:
        yield handle
