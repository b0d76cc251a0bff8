"""HTTP responses out of WARC files (any crawler's; plain or compressed), read with FastWARC.

Decompression goes through ``gpt2cli.text.compressed``, so a truncated ``.warc.gz``
is an error naming the file rather than a silently shorter crawl.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gpt2cli.corpus.stats import StageStats
from gpt2cli.text.compressed import open_input

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
        try:
            records = ArchiveIterator(
                _Counting(handle, stats),
                record_types=WarcRecordType.response,
                parse_http=True,
                auto_decode="all",
                stream_detect=False,
            )
            for record in records:
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
