"""JSON Lines records in and out: the record stream of every ``gpt2 corpus`` verb.

A record is one line holding a JSON object (whose text field is a string, for the verbs that
read documents). Anything else is a bad record, counted and skipped through
``StageStats.bad`` (or an error under ``--strict``): ``malformed_json`` (invalid UTF-8 or
JSON, nested too deeply for the parser, not an object) or ``no_text`` (the text field
missing or not a string).
``filter`` and ``dedup`` write kept records out as the very bytes they came in as.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from gpt2cli.corpus.stats import StageStats
from gpt2cli.errors import malformed_json
from gpt2cli.fileio import atomic_write
from gpt2cli.text.compressed import open_input

READ_BLOCK = 1 << 20


@dataclass
class Record:
    raw: bytes  # the line as read, without its newline
    data: dict
    text: str  # "" when read without a text field
    source: str
    line: int  # 1-based line number in its source


def source_name(name: str) -> str:
    return "<stdin>" if name == "-" else name


def open_source(name: str) -> BinaryIO:
    """``-`` is stdin; anything else an existing file."""
    return open_input(name)


def read_records(
    names: Iterable[str],
    field: str | None,
    stats: StageStats,
    digest: hashlib._Hash | None = None,
    labels: list[str] | None = None,
) -> Iterator[Record]:
    """The good records of every input in order; bytes read go to ``stats`` (and ``digest``).
    ``field`` None: any JSON object is a record (``text`` is then empty).

        ``labels`` name the inputs in messages (a spooled copy of stdin is still ``<stdin>``).
    """
    names = list(names)
    for name, label in zip(names, labels or names):
        source = source_name(label)
        handle = open_source(name)
        try:
            for number, line in enumerate(handle, start=1):
                stats.add_bytes(len(line))
                if digest is not None:
                    digest.update(line)
                stripped = line.rstrip(b"\r\n")
                if not stripped.strip():
                    continue
                stats.count_in()
                record = parse(stripped, field, source, number, stats)
                if record is not None:
                    yield record
        finally:
            if name != "-":
                handle.close()


def parse(
    raw: bytes, field: str | None, source: str, line: int, stats: StageStats
) -> Record | None:
    where = f"{source}: line {line}"
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        stats.bad("malformed_json", f"{where}: malformed JSON (invalid UTF-8)")
        return None
    except RecursionError:
        stats.bad("malformed_json", f"{where}: malformed JSON (nested too deeply)")
        return None
    except ValueError as error:
        if "integer string conversion" in str(error):  # Python's limit, not a JSON error
            stats.bad("malformed_json", f"{where}: malformed JSON (a number of over 4,300 digits)")
        else:
            stats.bad("malformed_json", str(malformed_json(source, line, error)))
        return None
    if not isinstance(data, dict):
        stats.bad("malformed_json", f"{where}: not a JSON object")
        return None
    if field is None:
        return Record(raw, data, "", source, line)
    text = data.get(field)
    if not isinstance(text, str):
        missing = "no" if text is None else "a non-string"
        stats.bad("no_text", f"{where}: {missing} {field!r} field")
        return None
    return Record(raw, data, text, source, line)


# a wrapper of a record stream (a progress display): (records, stats, label) -> records
Track = Callable[[Iterable[Record], StageStats, str], Iterable[Record]]


def untracked(records: Iterable[Record], stats: StageStats, label: str) -> Iterable[Record]:
    return records


class JsonlWriter:
    """Lines to a binary stream in blocks (one write per ~1 MB)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.pending: list[bytes] = []
        self.size = 0

    def write_raw(self, raw: bytes) -> None:
        self.pending.append(raw)
        self.pending.append(b"\n")
        self.size += len(raw) + 1
        if self.size >= READ_BLOCK:
            self.flush()

    def write_object(self, data: dict) -> None:
        self.write_raw(json.dumps(data, ensure_ascii=False).encode("utf-8"))

    def flush(self) -> None:
        if self.pending:
            self.out.write(b"".join(self.pending))
            self.pending.clear()
            self.size = 0
        self.out.flush()


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
