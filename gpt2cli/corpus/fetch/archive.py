"""Captures from the web archives: a CDX index query, then the record by a range request.

The index is asked as pywb and Common Crawl's index server are (``output=json``, one JSON
object a line; the Wayback Machine's array of rows is read too), with ``closest=`` and
``sort=closest`` where it has them and ``filter=status:200``; whatever order the server
answers in, the client keeps the status-200 capture closest to the target date. The record
is then read from ``prefix + filename`` by an HTTP range request and checked before it is
written: exactly ``length`` bytes, one gzip member, one WARC response record whose payload
has the index's digest. It is written unchanged (same bytes, same ``WARC-Record-ID``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from gpt2cli.corpus.fetch.client import FetchFailed, retry_after

CDX_LIMIT = 25
MAX_INDEX_BYTES = 10_000_000
MAX_RECORD_BYTES = 200_000_000
CACHE = 10_000
_FIELDS = {"statuscode": "status", "original": "url", "mimetype": "mime"}


@dataclass(frozen=True)
class Capture:
    timestamp: str
    url: str
    status: str
    filename: str
    offset: int
    length: int
    digest: str


class HttpRefused(FetchFailed):
    """429 or 503 from the index or the archive: retried after ``wait`` seconds."""

    def __init__(self, status: int, wait: float | None) -> None:
        super().__init__(f"http_{status}", f"HTTP {status}")
        self.wait = wait


def timestamp14(date: str | None) -> str | None:
    """An ISO 8601 date (or a 4 to 14 digit timestamp) as the 14 digits CDX servers use."""
    if not date:
        return None
    digits = re.sub(r"[^0-9]", "", date)[:14]
    if len(digits) < 4:
        return None
    return digits + "00000101000000"[len(digits) :]


def _seconds(timestamp: str) -> float:
    try:
        moment = datetime.strptime(timestamp[:14].ljust(14, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        return float("inf")
    return moment.replace(tzinfo=timezone.utc).timestamp()


def parse_index(body: bytes) -> list[dict]:
    """The rows of a CDX answer as dicts; FetchFailed("cdx_garbage") when it is not CDX JSON."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return []
    try:
        if text.startswith("["):
            rows = json.loads(text)
            if not rows:
                return []
            header = [_FIELDS.get(name, name) for name in rows[0]]
            return [dict(zip(header, row)) for row in rows[1:]]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (ValueError, TypeError) as error:
        raise FetchFailed("cdx_garbage", f"the index answered something else than CDX JSON "
                          f"({str(error)[:60]})") from None  # fmt: skip


def closest(rows: list[dict], target: str | None) -> Capture | None:
    """The status-200 capture nearest to ``target`` (the first one when there is no target)."""
    best: Capture | None = None
    best_distance = float("inf")
    for row in rows:
        if not isinstance(row, dict):
            raise FetchFailed("cdx_garbage", "the index answered rows that are not objects")
        if str(row.get("status", row.get("statuscode", ""))) != "200":
            continue
        if row.get("mime", row.get("mimetype")) == "warc/revisit":
            continue  # a revisit record holds no payload: only a pointer to an earlier one
        try:
            capture = Capture(
                str(row["timestamp"]), str(row.get("url", row.get("original", ""))), "200",
                str(row["filename"]), int(row["offset"]), int(row["length"]),
                str(row.get("digest", "")),
            )  # fmt: skip
        except (KeyError, ValueError, TypeError):
            raise FetchFailed(
                "cdx_garbage", "a capture without filename, offset or length"
            ) from None
        if capture.offset < 0 or capture.length <= 0:
            raise FetchFailed("cdx_garbage", "a capture with a negative offset or length")
        distance = abs(_seconds(capture.timestamp) - _seconds(target)) if target else 0
        if best is None or distance < best_distance:
            best, best_distance = capture, distance
    return best


class Archive:
    def __init__(self, session: object, index_url: str, prefix: str, agent: str) -> None:
        self.session = session
        self.index_url = index_url
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.headers = {"User-Agent": agent}
        self._cache: OrderedDict[tuple[str, str | None], list[dict]] = OrderedDict()

    async def lookup(self, url: str, target: str | None) -> Capture | None:
        key = (url, target)
        rows = self._cache.get(key)
        if rows is None:
            rows = await self._query(url, target)
            self._cache[key] = rows
            if len(self._cache) > CACHE:
                self._cache.popitem(last=False)
        return closest(rows, target)

    async def _query(self, url: str, target: str | None) -> list[dict]:
        params = {"url": url, "output": "json", "limit": str(CDX_LIMIT), "filter": "status:200"}
        if target:
            params.update(closest=target, sort="closest")
        async with self.session.get(  # type: ignore[attr-defined]
            self.index_url, params=params, headers=self.headers, auto_decompress=True
        ) as response:
            if response.status == 404:
                return []  # pywb and Common Crawl: "No Captures found"
            if response.status in (429, 503):
                raise HttpRefused(response.status, retry_after(response.headers.get("Retry-After")))
            if response.status != 200:
                raise FetchFailed("cdx_error", f"the index answered HTTP {response.status}")
            body = await response.content.read(MAX_INDEX_BYTES)
        return parse_index(body)

    def record_url(self, capture: Capture) -> str:
        if re.match(r"^https?://", capture.filename):
            return capture.filename
        return self.prefix + capture.filename.lstrip("/")

    async def record(self, capture: Capture) -> tuple[bytes, int]:
        """The capture's gzip member as the archive holds it, checked; and its payload size."""
        first, last = capture.offset, capture.offset + capture.length - 1
        headers = {**self.headers, "Range": f"bytes={first}-{last}"}
        async with self.session.get(  # type: ignore[attr-defined]
            self.record_url(capture), headers=headers, auto_decompress=False
        ) as response:
            if response.status in (429, 503):
                raise HttpRefused(response.status, retry_after(response.headers.get("Retry-After")))
            if response.status != 206:
                raise FetchFailed("bad_range", f"{capture.filename}: HTTP {response.status} to a "
                                  "range request (206 expected)")  # fmt: skip
            data = await response.content.read(capture.length + 1)
        return data, check_record(data, capture)


def check_record(data: bytes, capture: Capture) -> int:
    """Raise FetchFailed("bad_range") unless ``data`` is the capture's record; its payload
    size otherwise."""
    where = f"{capture.filename} at {capture.offset}"
    if len(data) != capture.length:
        raise FetchFailed("bad_range", f"{where}: {len(data)} bytes, the index says "
                          f"{capture.length}")  # fmt: skip
    inflate = zlib.decompressobj(31)
    try:
        raw = inflate.decompress(data, MAX_RECORD_BYTES)
    except zlib.error:
        raise FetchFailed("bad_range", f"{where}: not a gzip member") from None
    if not inflate.eof or inflate.unused_data:
        raise FetchFailed("bad_range", f"{where}: not exactly one gzip member")
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    try:
        record = next(iter(ArchiveIterator(io.BytesIO(raw), ensure_http_headers=False)), None)
        payload = record.raw_stream.read() if record is not None else b""
    except (ArchiveLoadFailed, ValueError, EOFError) as error:
        raise FetchFailed("bad_range", f"{where}: not a WARC record ({error})"[:200]) from None
    if record is None or record.rec_type != "response":
        raise FetchFailed("bad_range", f"{where}: not a WARC response record")
    expected = capture.digest.removeprefix("sha1:").upper()
    if len(expected) == 32:
        actual = base64.b32encode(hashlib.sha1(payload).digest()).decode()
        if actual != expected:
            raise FetchFailed("bad_range", f"{where}: payload digest {actual}, the index says "
                              f"{expected}")  # fmt: skip
    return len(payload)
