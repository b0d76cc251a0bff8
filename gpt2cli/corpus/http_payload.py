"""The HTTP response inside a WARC/ARC record: status, headers and the payload as served.

Crawlers store the message as it came off the wire, but not all of them alike: browser-based
crawlers, warcprox and pywb keep ``Transfer-Encoding: chunked`` in the headers over a body
they stored already de-chunked, and some keep ``Content-Encoding: gzip`` over a body already
inflated. So a body is de-chunked only when it parses as chunks from its first byte, and
inflated only when it inflates; otherwise it is taken as it is (as warcio does). Inflation
stops at ``limit`` bytes, so a small record cannot expand into gigabytes.
"""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass

from warcio.statusandheaders import StatusAndHeadersParser

_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)?[ \t]+(\d{3})(?:[ \t].*)?", re.S)
_HTTP_HEADERS = StatusAndHeadersParser([], verify=False)  # the status line is checked here
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")


class PayloadError(ValueError):
    """A record whose HTTP message cannot be read (its reason is the message)."""


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lowercased names; a repeated header keeps its last value
    body: bytes  # as stored: transfer and content encodings not yet undone

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for parameter in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip("\"'"):
                return value.strip().strip("\"'")
        return None


def parse_response(block: bytes) -> HttpResponse:
    """The status line, headers and body of an HTTP response (CRLF or bare LF line ends),
    the headers parsed by warcio's (lenient) parser.

    A status line without a reason phrase (``HTTP/1.1 302``) is a status line, and blank
    lines before it are passed over."""
    block = block.lstrip(b"\r\n")
    end = block.find(b"\n")
    first = block[: end if end >= 0 else len(block)].rstrip(b"\r")
    match = _STATUS_LINE.fullmatch(first)
    if match is None:
        shown = first[:40].decode("latin-1").encode("unicode_escape").decode("ascii")
        raise PayloadError(f"not an HTTP response (it starts {shown!r})")
    stream = io.BytesIO(block)
    parsed = _HTTP_HEADERS.parse(stream)
    headers = {name.strip().lower(): value.strip() for name, value in parsed.headers}
    return HttpResponse(int(match.group(1)), headers, block[stream.tell() :])


def dechunk(body: bytes) -> bytes | None:
    """The body of a chunked transfer encoding, or None when ``body`` is not chunked (the
    crawler stored it de-chunked). Raises PayloadError when the chunks break off midway."""
    pieces = []
    position = 0
    while True:
        match = _CHUNK_SIZE.match(body, position)
        if match is None:
            if position == 0:
                return None
            if position >= len(body):
                break  # the body ends after a whole chunk, without the last-chunk line
            raise PayloadError(f"broken chunked body (chunk header at body byte {position})")
        size = int(match.group(1), 16)
        start = match.end()
        if size == 0:
            break
        if start + size > len(body):
            if position == 0 and size > len(body):
                return None  # a hexadecimal-looking first line of a de-chunked body
            raise PayloadError(f"broken chunked body (a chunk runs past the end at {start})")
        pieces.append(body[start : start + size])
        position = start + size
        if body.startswith(b"\r\n", position):
            position += 2
        elif body.startswith(b"\n", position):
            position += 1
    return b"".join(pieces)


class TooLarge(Exception):
    """The payload decodes to more than the limit."""


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    out = decoder.decompress(data, limit + 1)
    if len(out) > limit:
        raise TooLarge
    # Concatenated gzip members (rare, but valid): inflate the next ones too.
    while decoder.eof and decoder.unused_data and wbits > 15:
        rest = decoder.unused_data
        decoder = zlib.decompressobj(wbits)
        out += decoder.decompress(rest, limit + 1 - len(out))
        if len(out) > limit:
            raise TooLarge
    return out


def _brotli(data: bytes, limit: int) -> bytes:
    import brotli

    decoder = brotli.Decompressor()
    out = decoder.process(data, output_buffer_limit=limit + 1)
    if len(out) > limit:
        raise TooLarge
    return out


def _zstd(data: bytes, limit: int) -> bytes:
    import io

    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    out = reader.read(limit + 1)
    if len(out) > limit:
        raise TooLarge
    return out


def _decode_one(data: bytes, coding: str, limit: int) -> bytes:
    """``data`` with one content coding undone; as it is when it does not decode so."""
    try:
        if coding in ("gzip", "x-gzip"):
            return _inflate(data, 47, limit)  # 32 + 15: gzip or zlib header, detected
        if coding == "deflate":
            try:
                return _inflate(data, 15, limit)
            except zlib.error:
                return _inflate(data, -15, limit)  # raw deflate, as some servers send it
        if coding == "br":
            return _brotli(data, limit)
        if coding == "zstd":
            return _zstd(data, limit)
    except TooLarge:
        raise
    except Exception:  # noqa: BLE001 - any decoder's error: stored already decoded
        return data
    return data  # identity, or a coding nobody uses on pages


def decoded_body(response: HttpResponse, limit: int) -> bytes:
    """The payload with transfer and content codings undone (each only when it applies).

    Raises TooLarge past ``limit`` bytes, PayloadError for chunks that break off."""
    body = response.body
    if "chunked" in response.headers.get("transfer-encoding", "").lower():
        dechunked = dechunk(body)
        if dechunked is not None:
            body = dechunked
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
    for coding in reversed([c for c in codings if c and c != "identity"]):
        body = _decode_one(body, coding, limit)
    if len(body) > limit:
        raise TooLarge
    return body
