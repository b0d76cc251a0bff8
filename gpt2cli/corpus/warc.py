"""HTTP responses out of WARC and ARC files (any crawler's; plain or compressed).

Records come from :mod:`gpt2cli.corpus.warc_records` (framing, lenient as real crawls need),
their HTTP messages from :mod:`gpt2cli.corpus.http_payload`. Response and revisit records
(and resource records, and ARC's http records) are counted in; a record that gives no page
is counted by reason (``http_status``, ``not_html``, ``too_large``, ``revisit``, ``not_http``)
or, when it cannot be read, as a bad record with its file and offset. Request, metadata,
warcinfo and conversion records are not documents and are passed over.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from gpt2cli.corpus.http_payload import (
    HttpResponse,
    PayloadError,
    TooLarge,
    decoded_body,
    parse_response,
)
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.warc_records import BadRecord, FileError, Record, RecordReader
from gpt2cli.errors import Gpt2Error

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PAGE_KINDS = frozenset({"response", "revisit", "resource"})
HEAD_ROOM = 1 << 16  # bytes of HTTP headers held beside a payload of --max-bytes
SHOWN_IN_STATS = 100  # bad records listed, with file and offset, in --stats


@dataclass
class Response:
    """One HTTP 200 HTML response: what a worker needs to extract its text."""

    url: str
    record_id: str | None
    crawl_date: str | None
    charset: str | None  # from the Content-Type header
    body: bytes  # the payload, content and transfer encodings undone
    source: str = ""  # the file it came from, and its record's offset there
    offset: int = -1


@dataclass
class Redirect:
    url: str
    location: str


class Rejects:
    """Where records that give no page go: counted in ``stats`` (bad ones shown), the first
    bad ones listed with file and offset in ``--stats``, every one a line in ``--rejected``;
    past ``max_bad`` bad records the run stops."""

    def __init__(
        self, stats: StageStats, out: BinaryIO | None = None, max_bad: int | None = None
    ) -> None:
        self.stats = stats
        self.out = out
        self.max_bad = max_bad
        self.listed: list[dict] = []
        self.cut: list[Gpt2Error] = []  # files that end inside a record (read up to it)

    def _write(self, entry: dict) -> None:
        if self.out is not None:
            line = json.dumps(entry, ensure_ascii=False).encode("utf-8", "backslashreplace")
            self.out.write(line + b"\n")

    def drop(self, reason: str, source: str, offset: int, url: str) -> None:
        self.stats.drop(reason)
        self._write({"file": source, "offset": offset, "url": url, "reason": reason})

    def bad(self, reason: str, source: str, offset: int, url: str, message: str) -> None:
        where = f"{source}: record at byte {offset:,}" if offset >= 0 else source
        self.stats.bad(reason, f"{where}: {message}")
        entry = {"file": source, "offset": offset, "url": url, "reason": reason, "message": message}
        self._write(entry)
        if len(self.listed) < SHOWN_IN_STATS:
            self.listed.append(entry)
            self.stats.extra["bad_record_list"] = self.listed
        if self.max_bad is not None and self.stats.bad_records > self.max_bad:
            raise Gpt2Error(
                f"more than {self.max_bad:,} bad records (--max-bad-records); the last: "
                f"{where}: {message}"
            )


def _keeper(max_bytes: int):
    def keep(kind: str, url: str) -> int:
        return max_bytes + HEAD_ROOM if kind in ("response", "resource") else 0

    return keep


def _http_url(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _bare_payload(record: Record) -> bool:
    """A response record holding the payload without its HTTP message, as a few crawlers
    write them (its Content-Type is the payload's, not application/http)."""
    content_type = record.content_type.lower()
    return (
        not record.arc
        and bool(content_type)
        and "application/http" not in content_type
        and not record.block.lstrip(b"\r\n")[:5].upper().startswith(b"HTTP/")
    )


def _sniffed_html(body: bytes) -> bool:
    start = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _page(
    record: Record, source: str, rejects: Rejects, max_bytes: int
) -> Response | Redirect | None:
    """The page (or redirect) a counted record gives, or None with the reason recorded."""
    where = (source, record.offset, record.url)
    if record.kind == "revisit":
        rejects.drop("revisit", *where)
        return None
    if not _http_url(record.url):
        rejects.drop("not_http", *where)
        return None
    if record.kind == "resource" or _bare_payload(record):
        response = HttpResponse(200, {"content-type": record.content_type}, record.block)
    else:
        try:
            response = parse_response(record.block)
        except PayloadError as error:
            rejects.bad("malformed_http", *where, str(error))
            return None
    if 300 <= response.status < 400 and response.headers.get("location"):
        rejects.drop("http_status", *where)
        return Redirect(record.url, response.headers["location"])
    if response.status != 200:
        rejects.drop("http_status", *where)
        return None
    media_type = response.media_type or record.content_type.split(";", 1)[0].strip().lower()
    whole = len(record.block) == record.length
    if media_type not in HTML_TYPES and not (
        not response.headers.get("content-type") and _sniffed_html(response.body)
    ):
        rejects.drop("not_html", *where)
        return None
    if not whole:
        rejects.drop("too_large", *where)
        return None
    try:
        body = decoded_body(response, max_bytes)
    except TooLarge:
        rejects.drop("too_large", *where)
        return None
    except PayloadError as error:
        rejects.bad("malformed_http", *where, str(error))
        return None
    return Response(
        record.url, record.record_id, record.date, response.charset, body, source, record.offset
    )


def iter_responses(
    inputs: Iterable[str],
    stats: StageStats,
    max_bytes: int,
    rejects: Rejects | None = None,
) -> Iterator[Response | Redirect]:
    """HTTP 200 HTML responses of every input in order, and 3xx redirects (for joining).

    A file cut short gives every whole record; its error (naming it and the offset of the
    cut record) goes to ``rejects.cut`` and the next input is read, so nothing is lost.
    Without ``rejects`` the first such error is raised after the last input."""
    given = rejects is not None
    rejects = rejects or Rejects(stats)
    for name in inputs:
        source = "<stdin>" if name == "-" else name
        reader = RecordReader(name, _keeper(max_bytes))
        try:
            for item in reader:
                if isinstance(item, BadRecord):
                    stats.count_in()
                    rejects.bad(item.reason, source, item.offset, "", item.message)
                    continue
                if item.kind not in PAGE_KINDS:
                    continue
                stats.count_in()
                page = _page(item, source, rejects, max_bytes)
                if page is not None:
                    yield page
        except FileError as error:
            rejects.cut.append(error)
        except Gpt2Error as error:
            if not error.message.startswith(source):  # not about this file: a real stop
                raise
            at = f"after byte {reader.stream.offset:,} of its uncompressed data"
            rejects.cut.append(Gpt2Error(f"{error.message} ({at})", error.hint))
        finally:
            stats.add_bytes(reader.stream.bytes_read)
    if rejects.cut and not given:
        raise rejects.cut[0]
