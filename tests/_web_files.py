"""Web-data files the corpus tests write for real: Pushshift-style zstd dumps and WARC files."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path


def write_zst(path: Path, data: bytes) -> Path:
    """zstd as Pushshift publishes it: streamed, no content size, a 2 GiB window."""
    import zstandard as zstd

    params = zstd.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=False)
    buffer = io.BytesIO()
    with zstd.ZstdCompressor(compression_params=params).stream_writer(
        buffer, closefd=False
    ) as writer:
        writer.write(data)
    path.write_bytes(buffer.getvalue())
    return path


def submission(url: str, score: int, utc: int = 1546300800, **extra) -> dict:
    return {
        "url": url,
        "score": score,
        "is_self": False,
        "over_18": False,
        "subreddit": "test",
        "created_utc": utc,
        **extra,
    }


def dump_bytes(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def warc_record(url: str, http: bytes, record_type: str = "response"):
    from fastwarc.warc import WarcRecord, WarcRecordType

    record = WarcRecord()
    kind = getattr(WarcRecordType, record_type)
    record.init_headers(kind, uuid.uuid4().urn[4:].encode())
    record.headers["WARC-Target-URI"] = url
    record.headers["WARC-Date"] = "2019-02-01T12:00:00Z"
    msgtype = "response" if record_type == "response" else "request"
    record.headers["Content-Type"] = f"application/http; msgtype={msgtype}"
    record.set_bytes_content(http)
    return record


def http_response(body: bytes, content_type: str, status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def write_crawl(path: Path, pages: list[tuple[str, bytes]]) -> None:
    """A gzip'd WARC of HTTP 200 ``text/html; charset=utf-8`` responses, one per (url, html)."""
    from fastwarc.stream_io import GzipWriter

    writer = GzipWriter(str(path))
    for url, html in pages:
        warc_record(url, http_response(html, "text/html; charset=utf-8")).write(writer)
    writer.close()
