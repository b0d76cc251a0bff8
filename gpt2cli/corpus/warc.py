"""HTTP responses out of WARC files (any crawler's; plain or compressed), read with FastWARC.

Decompression goes through ``gpt2cli.text.compressed``, so a truncated ``.warc.gz``
is an error naming the file rather than a silently shorter crawl; FastWARC passes a plain
file's cut last record on short, so that one is checked against its Content-Length.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gpt2cli.corpus.stats import StageStats
from gpt2cli.errors import Gpt2Error
from gpt2cli.text.compressed import detect, open_input

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


@dataclass
class Response:
    """One HTTP 200 HTML response: what a worker needs to extract its text."""

    url: str
    record_id: str
    crawl_date: str | None
    charset: str | None  # from the Content-Type header
    body: bytes  # the payload, content and transfer encodings undone


@dataclass
class Redirect:
    url: str
    location: str


class _Counting:
    """A binary stream that adds the bytes read through it to ``stats``."""

    def __init__(self, handle, stats: StageStats) -> None:
        self._handle = handle
        self._stats = stats
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._stats.add_bytes(len(data))
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position


def iter_responses(
    inputs: Iterable[str], stats: StageStats, max_bytes: int
) -> Iterator[Response | Redirect]:
    """HTTP 200 HTML responses of every input in order, and 3xx redirects (for joining).

    Each WARC response record is counted in; other statuses, non-HTML types and payloads
    over ``max_bytes`` are counted as drops. Request, metadata and warcinfo records are
    not documents and are passed over.
    """
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for name in inputs:
        source = "<stdin>" if name == "-" else name
        handle = open_input(name)
        last_record = None
        try:
            records = ArchiveIterator(
                _Counting(handle, stats),
                record_types=WarcRecordType.response,
                parse_http=True,
                auto_decode="all",
                stream_detect=False,
            )
            for record in records:
                last_record = record.stream_pos
                stats.count_in()
                url = record.headers.get("WARC-Target-URI") or ""
                http = record.http_headers
                if http is None or not url:
                    stats.bad("malformed_record", f"{source}: record {record.record_id}: no HTTP")
                    continue
                status = http.status_code
                if 300 <= status < 400 and http.get("Location"):
                    yield Redirect(url, http.get("Location"))
                if status != 200:
                    stats.drop("http_status")
                    continue
                if (record.http_content_type or "").lower() not in HTML_TYPES:
                    stats.drop("not_html")
                    continue
                body = record.reader.read(max_bytes + 1)
                if len(body) > max_bytes:
                    stats.drop("too_large")
                    continue
                date = record.headers.get("WARC-Date")
                yield Response(url, record.record_id or "", date, record.http_charset, body)
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
        if last_record is not None and name != "-":
            check_last_record(name, last_record)


def check_last_record(name: str, position: int) -> None:
    """Raises if the record at ``position`` of a plain (uncompressed) WARC file is cut short:
    its header block unfinished, or fewer bytes left than its Content-Length."""
    if not os.path.isfile(name):
        return  # a pipe cannot be re-read
    with open(name, "rb") as handle:
        if detect(handle.read(8)):
            return  # the decompressor reports its own truncation
        size = os.fstat(handle.fileno()).st_size
        handle.seek(position)
        head = handle.read(1 << 20)
    header_end = head.find(b"\r\n\r\n")
    length = None
    for line in head[: max(header_end, 0)].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    if header_end < 0 or length is None:
        raise Gpt2Error(f"{name}: truncated WARC file (cut inside the headers at byte {position})")
    missing = position + header_end + 4 + length - size
    if missing > 0:
        raise Gpt2Error(
            f"{name}: truncated WARC file (the record at byte {position} lacks {missing:,} of "
            f"its {length:,} bytes)"
        )
