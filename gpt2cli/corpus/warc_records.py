"""The records of a WARC (1.1, 1.0, 0.18, 0.17) or ARC (v1, v2) file, read leniently.

A record is framed by its declared length. Real crawlers bend the framing, so the reader:

- takes LF as well as CRLF line ends, any number of blank lines between records, and
  ``WARC-Target-URI: <http://...>`` (wget >= 1.19) without its angle brackets;
- checks that a record's declared length ends where the next record (or the file) begins;
  when it does not — a length that is negative, not a number, larger than what is left of
  the file, or one that ends inside the next record — the record is a *bad record* (its
  offset and reason reported) and reading goes on at the next record header after its
  headers, so one bad record never costs the rest of the file;
- stops, after every whole record, at a file cut short: a record whose headers or
  content the file ends inside, with no record after it, raises :class:`CutFile`.

Offsets are those of the uncompressed stream (for a plain file, of the file itself).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from gpt2cli.corpus.gzip_members import GzipMembers
from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import open_binary_input
from gpt2cli.text.compressed import decompressing, detect

LINE_LIMIT = 1 << 16  # a header line longer than this is not a header line
HEADER_LIMIT = 1 << 18  # nor a header block longer than this
SKIP_BLOCK = 1 << 20
_WARC_LINE = re.compile(rb"WARC/\d+\.\d+[ \t\r]*\n")
STRAY = 16  # bytes after a record's end passed over when the next record follows them
_ARC_DATE = re.compile(r"\d{8,20}")
_DIGITS = re.compile(r"\d{1,19}")


@dataclass
class Record:
    kind: str  # the WARC-Type, lowercased; for ARC: "response" (http), "arcinfo" or "other"
    offset: int  # of its first header byte
    url: str
    record_id: str | None
    date: str | None
    content_type: str  # the record's Content-Type (WARC) or its ARC mime field
    length: int  # declared length of the content block
    block: bytes  # the content block, or its first ``head`` bytes when it is longer than kept
    arc: bool = False  # an ARC record (whose content type is its payload's)


@dataclass
class BadRecord:
    offset: int
    reason: str  # snake_case, counted
    message: str


class FileError(Gpt2Error):
    """An input file that cannot be read on (the records before the trouble were read)."""


class CutFile(FileError):
    """The file ends inside a record (every whole record before it was read)."""


class _Stream:
    """A decompressed input with the offset of each byte; rewound by reopening. gzip is read
    member by member (:mod:`gpt2cli.corpus.gzip_members`), so one damaged member costs one
    record, not the rest of the file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = "<stdin>" if name == "-" else name
        self.offset = 0
        self.bytes_read = 0
        self._plain_size: int | None = None
        self._members: GzipMembers | None = None
        self._handle = self._open()
        if name != "-" and os.path.isfile(name) and self._members is None:
            with open(name, "rb") as probe:
                if detect(probe.read(8)) is None:
                    self._plain_size = os.fstat(probe.fileno()).st_size

    def _open(self) -> BinaryIO:
        handle = open_binary_input(self.name)
        if detect(handle.peek(8)[:8]) == "gzip":
            self._members = GzipMembers(handle)
            return io.BufferedReader(self._members, 1 << 16)
        return decompressing(handle, self.source)

    @property
    def gzip_cut(self) -> bool:
        return self._members is not None and self._members.cut

    def damage(self) -> list[int]:
        """Compressed offsets of damaged gzip members met since the last call."""
        if self._members is None or not self._members.damage:
            return []
        found, self._members.damage = self._members.damage, []
        return found

    @property
    def can_rewind(self) -> bool:
        return self.name != "-" and os.path.isfile(self.name)

    def close(self) -> None:
        if self.name != "-":
            self._handle.close()
        elif self._members is not None:
            self._members.detach_input()

    def readline(self) -> bytes:
        line = self._handle.readline(LINE_LIMIT)
        self.offset += len(line)
        self.bytes_read += len(line)
        return line

    def read(self, size: int) -> bytes:
        data = self._handle.read(size) if size > 0 else b""
        self.offset += len(data)
        self.bytes_read += len(data)
        return data

    def skip(self, size: int) -> int:
        """Passes over ``size`` bytes; returns how many there were (fewer at the end)."""
        if size <= 0:
            return 0
        if self._plain_size is not None:
            size = min(size, self._plain_size - self.offset)
            self._handle.seek(self.offset + size)
            self.offset += size
            self.bytes_read += size
            return size
        skipped = 0
        while skipped < size:
            chunk = self.read(min(SKIP_BLOCK, size - skipped))
            if not chunk:
                break
            skipped += len(chunk)
        return skipped

    def rewind(self, offset: int) -> None:
        if self._plain_size is not None:
            self._handle.seek(offset)
            self.offset = offset
            return
        self._handle.close()
        self._members = None
        self._handle = self._open()
        self.offset = 0
        self.skip(offset)


def _uri(raw: str) -> str:
    """A target URI as crawlers write it: stripped of ``<...>`` (wget >= 1.19), spaces
    (invalid in a URI, but written by some) percent-encoded."""
    uri = raw.strip()
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1].strip()
    return uri.replace(" ", "%20")


def _header_text(raw: bytes) -> str:
    """A header value as text: UTF-8, else its non-ASCII bytes percent-encoded."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in raw)


def _arc_date(value: str) -> str | None:
    if len(value) < 14 or not value[:14].isdigit():
        return None
    v = value[:14]
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}T{v[8:10]}:{v[10:12]}:{v[12:14]}Z"


def _printable(line: bytes) -> str:
    return repr(line[:40].decode("latin-1").rstrip("\r\n"))


class RecordReader:
    """The records of one file (see the module docstring). ``keep(kind, url)`` says how many
    bytes of a content block to hold: 0 passes over it; a block longer than ``keep`` is held
    only as its first ``head`` bytes (enough for the HTTP headers)."""

    def __init__(self, name: str, keep: Callable[[str, str], int], head: int = 1 << 16) -> None:
        self.stream = _Stream(name)
        self.keep = keep
        self.head = head
        self.format = ""
        self._arc_fields = 5  # fields of an ARC v1 header line; v2 has 10

    # ---------------------------------------------------------------- header lines

    def _is_header(self, line: bytes) -> bool:
        if self.format == "arc":
            return self._arc_header(line) is not None
        return _WARC_LINE.fullmatch(line) is not None

    def _arc_header(self, line: bytes) -> list[str] | None:
        if not line.endswith(b"\n") or len(line) > LINE_LIMIT - 1:
            return None
        fields = line.decode("latin-1").split()
        if len(fields) < 5 or ":" not in fields[0]:
            return None
        layouts = (10, 5) if self._arc_fields == 10 else (5, 10)  # the file's version first
        for count in layouts:
            if len(fields) >= count and _ARC_DATE.fullmatch(fields[-3 if count == 5 else -8]):
                return fields
        return None

    def _next_line(self) -> tuple[bytes, int]:
        """The next line that is not blank and its offset (b"" at the end)."""
        while True:
            offset = self.stream.offset
            line = self.stream.readline()
            if not line or line.strip():
                return line, offset

    def _resync(self) -> tuple[bytes, int]:
        """The next record header line (b"" when none is left)."""
        at_line_start = True
        while True:
            offset = self.stream.offset
            line = self.stream.readline()
            if not line:
                return b"", offset
            if at_line_start and self._is_header(line):
                return line, offset
            at_line_start = line.endswith(b"\n")

    # ---------------------------------------------------------------- records

    def __iter__(self) -> Iterator[Record | BadRecord]:
        try:
            yield from self._records()
        finally:
            self.stream.close()

    def _records(self) -> Iterator[Record | BadRecord]:
        line, offset = self._next_line()
        if not line:
            yield from self._end()
            return
        if line.startswith(b"WARC/"):
            self.format = "warc"
        elif line.startswith(b"filedesc://") or self._arc_header(line):
            self.format = "arc"
        else:
            raise FileError(
                f"{self.stream.source}: not a WARC or ARC file (it starts {_printable(line)})"
            )
        while line:
            yield from self._damaged()
            if not line.endswith(b"\n") and len(line) < LINE_LIMIT:  # the file ends in it
                raise self._cut(offset, "inside its headers")
            if not self._is_header(line):
                yield BadRecord(offset, "malformed_record", f"no record header: {_printable(line)}")
                line, offset = self._resync()
                continue
            parsed = self._read_record(line, offset)
            if isinstance(parsed, BadRecord):
                yield parsed
                line, offset = self._resync()
                continue
            record, header_end = parsed
            try:
                line, offset = self._next_line()
                if line.endswith(b"\n") and len(line) <= STRAY and not self._is_header(line):
                    line, offset = self._next_line()  # a few stray bytes (NULs, seen in the wild)
            except Gpt2Error:  # the decompressor's: the next record is cut, this one is whole
                yield record
                raise
            at_end = not line.endswith(b"\n") and len(line) < LINE_LIMIT  # cut, or no more
            if not at_end and not self._is_header(line):
                yield BadRecord(
                    record.offset,
                    "bad_length",
                    f"its length {record.length:,} does not end at a record "
                    f"(found {_printable(line)} at byte {offset:,})",
                )
                line, offset = self._rewind_and_resync(header_end)
                continue
            yield record
        yield from self._end()

    def _end(self) -> Iterator[BadRecord]:
        yield from self._damaged()
        if self.stream.gzip_cut:
            raise CutFile(
                f"{self.stream.source}: truncated or corrupt gzip data: the file ends inside a "
                f"gzip member (after byte {self.stream.offset:,} of its uncompressed data)"
            )

    def _cut(self, offset: int, detail: str) -> CutFile:
        what = "or corrupt gzip data" if self.stream.gzip_cut else f"{self.format.upper()} file"
        return CutFile(
            f"{self.stream.source}: truncated {what}: the record at byte {offset:,} is cut {detail}"
        )

    def _damaged(self) -> Iterator[BadRecord]:
        for at in self.stream.damage():
            yield BadRecord(
                self.stream.offset,
                "corrupt_gzip",
                f"damaged gzip data at compressed byte {at:,}, passed over to the next member",
            )

    def _rewind_and_resync(self, offset: int) -> tuple[bytes, int]:
        if self.stream.can_rewind:
            self.stream.rewind(offset)
        return self._resync()

    def _content(self, record: Record, header_end: int) -> tuple[Record, int] | BadRecord:
        """Reads (or passes over) the content block of ``record``."""
        keep = self.keep(record.kind, record.url)
        size = record.length if record.length <= keep else min(self.head, keep)
        record.block = self.stream.read(size)
        got = len(record.block) + self.stream.skip(record.length - size)
        if got == record.length:
            return record, header_end
        if self.stream.can_rewind:
            self.stream.rewind(header_end)
            line, offset = self._resync()
            if line:  # a length that lies, not a file that was cut: carry on from there
                self.stream.rewind(offset)
                return BadRecord(
                    record.offset,
                    "bad_length",
                    f"its length {record.length:,} runs past the next record (at byte {offset:,})",
                )
        raise self._cut(record.offset, f"({got:,} of its {record.length:,} bytes)")

    def _read_record(self, line: bytes, offset: int) -> tuple[Record, int] | BadRecord:
        if self.format == "arc":
            return self._read_arc(line, offset)
        headers: dict[str, bytes] = {}
        size = 0
        while True:
            header = self.stream.readline()
            size += len(header)
            if not header or (not header.endswith(b"\n") and len(header) < LINE_LIMIT):
                raise self._cut(offset, "inside its headers")
            if not header.strip():
                break
            if size > HEADER_LIMIT or not header.endswith(b"\n"):
                return BadRecord(offset, "malformed_record", "its header block is too long")
            name, colon, value = header.partition(b":")
            if colon:
                headers[name.strip().lower().decode("latin-1")] = value.strip()
        length_text = headers.get("content-length", b"").decode("latin-1")
        if not _DIGITS.fullmatch(length_text):
            return BadRecord(
                offset, "bad_length", f"Content-Length {length_text[:30]!r} is not a length"
            )
        text = {k: _header_text(v) for k, v in headers.items() if k != "content-length"}
        record = Record(
            kind=text.get("warc-type", "").lower(),
            offset=offset,
            url=_uri(text.get("warc-target-uri", "")),
            record_id=text.get("warc-record-id"),
            date=text.get("warc-date"),
            content_type=text.get("content-type", ""),
            length=int(length_text),
            block=b"",
        )
        return self._content(record, self.stream.offset)

    def _read_arc(self, line: bytes, offset: int) -> tuple[Record, int] | BadRecord:
        fields = line.decode("latin-1").split()
        if fields[0].startswith("filedesc:"):
            fields = fields[:4] + fields[-1:]  # v2 files keep a v1-style first line
            url_end = 1
        else:
            url_end = len(fields) - (self._arc_fields - 1)
        if url_end < 1 or not _DIGITS.fullmatch(fields[-1]):
            return BadRecord(offset, "bad_length", f"ARC length {fields[-1][:30]!r}")
        url = "%20".join(fields[:url_end])
        kind = "arcinfo" if url.startswith("filedesc:") else "other"
        if url.lower().startswith(("http:", "https:")):
            kind = "response"
        record = Record(
            kind=kind,
            offset=offset,
            url=url,
            record_id=None,
            date=_arc_date(fields[url_end + 1]),
            content_type=fields[url_end + 2] if len(fields) > url_end + 2 else "",
            length=int(fields[-1]),
            block=b"",
            arc=True,
        )
        if kind == "arcinfo":  # its first line gives the version, hence the fields
            header = self.stream.readline()
            self._arc_fields = 10 if header.split(b" ", 1)[0] == b"2" else 5
            record.length = max(record.length - len(header), 0)
        return self._content(record, self.stream.offset)
