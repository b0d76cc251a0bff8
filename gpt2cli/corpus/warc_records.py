"""The records of a WARC (1.1, 1.0, 0.18, 0.17) or ARC (v1, v2) file, read leniently.

Each record's headers are parsed by warcio (``ArcWarcRecordLoader``; for ARC v2 its ARC
parser given v2's ten field names), which also strips wget's ``<...>`` around a target URI.
What warcio does not do, and real crawls need, is done here, between the records:

- a record's declared length is checked: it must end where the next record (or the file)
  begins; when it does not -- a length that is negative, not a number, larger than what is
  left of the file, or one that ends inside the next record -- the record is a *bad record*
  (its offset and reason reported) and reading starts again at the next record header
  after its headers, so one bad record never costs the rest of the file (warcio's iterator
  raises there, or reads on out of step with only a warning);
- a file cut short gives every whole record, then :class:`CutFile` naming the cut record;
- gzip is read member by member, so a damaged member costs one record
  (:mod:`gpt2cli.corpus.gzip_members`), and offsets are those of the uncompressed stream
  (for a plain file, of the file itself); LF line ends, blank lines and a few stray NULs or
  spaces between records are passed over.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ARCHeadersParser, ArcWarcRecordLoader
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParserException
from warcio.timeutils import timestamp_to_iso_date

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
ARC_V2_FIELDS = ["uri", "ip-address", "archive-date", "content-type", "result-code",
                 "checksum", "location", "offset", "filename", "length"]  # fmt: skip
logging.getLogger("warcio").addHandler(logging.NullHandler())
logging.getLogger("warcio").propagate = False  # its warnings on odd URIs are not the user's


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


def _uri(parsed: str, raw_line: bytes | None) -> str:
    """warcio's target URI (``<...>`` stripped, spaces percent-encoded), with the non-UTF-8
    bytes of its header line percent-encoded (warcio reads such a line as Latin-1)."""
    uri = parsed.strip()
    if raw_line is not None:
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError:
            uri = "".join(c if ord(c) < 0x80 else f"%{ord(c):02X}" for c in uri)
    return uri.replace(" ", "%20")


def _arc_date(value: str) -> str | None:
    if len(value) < 14 or not value[:14].isdigit():
        return None
    return timestamp_to_iso_date(value[:14])


def _printable(line: bytes) -> str:
    return repr(line[:40].decode("latin-1").rstrip("\r\n"))


class _HeaderTap:
    """The stream as warcio's header parser reads it: each line kept, so the reader can tell
    a header block that ends from one the file ends inside, and a block too long is refused."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.lines: list[bytes] = []
        self.size = 0

    def readline(self, size: int = -1) -> bytes:
        line = self.stream.readline()
        self.lines.append(line)
        self.size += len(line)
        if self.size > HEADER_LIMIT or (len(line) >= LINE_LIMIT and not line.endswith(b"\n")):
            raise _TooLong
        return line

    def read(self, size: int = -1) -> bytes:  # not called: warcio is told not to read blocks
        return self.stream.read(size)

    def ended(self, warc: bool) -> bool:
        """Whether the header block ended (a WARC one with a blank line), not the file."""
        if not warc:
            return all(line.endswith(b"\n") for line in self.lines)
        last = self.lines[-1] if self.lines else b""
        return last.endswith(b"\n") and not last.strip()

    def raw(self, name: bytes) -> bytes | None:
        for line in self.lines:
            if line[: len(name)].lower() == name:
                return line
        return None


class _TooLong(Exception):
    pass


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
        self._loader = ArcWarcRecordLoader(verify_http=False, arc2warc=False)
        self._arc_parsers = {5: ARCHeadersParser(), 10: ARCHeadersParser()}
        self._arc_parsers[10].headernames = ARC_V2_FIELDS

    # ---------------------------------------------------------------- header lines

    def _is_header(self, line: bytes) -> bool:
        if self.format == "arc":
            return self._arc_layout(line) > 0
        return _WARC_LINE.fullmatch(line) is not None

    def _arc_layout(self, line: bytes) -> int:
        """How many fields the ARC header line ``line`` has (5 for v1, 10 for v2), or 0 when
        it is none: the record's URL may hold spaces, so the date field is found from the
        end, trying the file's own version first."""
        if not line.endswith(b"\n") or len(line) > LINE_LIMIT - 1:
            return 0
        fields = line.decode("latin-1").split()
        if len(fields) < 5 or ":" not in fields[0]:
            return 0
        layouts = (10, 5) if self._arc_fields == 10 else (5, 10)
        for count in layouts:
            if len(fields) >= count and _ARC_DATE.fullmatch(fields[-3 if count == 5 else -8]):
                return count
        return 0

    def _is_stray(self, line: bytes) -> bool:
        """A few NULs or spaces after a record's end, seen in the wild: passed over. Any other
        line there means the record's length is wrong (text would be a record swallowed)."""
        return line.endswith(b"\n") and len(line) <= STRAY and not line.strip(b"\x00 \t\r\n")

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
        elif line.startswith(b"filedesc://") or self._arc_layout(line):
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
                if self._is_stray(line):
                    line, offset = self._next_line()
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
        """The record whose header line is ``line``: its headers parsed by warcio, its
        length checked here, its content block read (or passed over) by :meth:`_content`."""
        layout = self._arc_layout(line) if self.format == "arc" else 0
        filedesc = line.startswith(b"filedesc:")
        if layout:  # a filedesc line is v1-style in v2 files too
            self._loader.arc_parser = self._arc_parsers[5 if filedesc else layout]
        tap = _HeaderTap(self.stream)
        try:
            parsed = self._loader.parse_record_stream(tap, line, self.format, no_record_parse=True)
        except _TooLong:
            return BadRecord(offset, "malformed_record", "its header block is too long")
        except (ArchiveLoadFailed, StatusAndHeadersParserException, ValueError) as error:
            if tap.lines and not tap.lines[-1].endswith(b"\n"):
                raise self._cut(offset, "inside its headers") from None
            return BadRecord(offset, "malformed_record", f"unreadable headers: {error}"[:200])
        if not tap.ended(not layout):
            raise self._cut(offset, "inside its headers")
        headers = parsed.rec_headers
        length_text = (headers.get_header("length" if layout else "Content-Length") or "").strip()
        if not _DIGITS.fullmatch(length_text):
            name = "ARC length" if layout else "Content-Length"
            return BadRecord(offset, "bad_length", f"{name} {length_text[:30]!r} is not a length")
        length = int(length_text)
        if layout and filedesc:  # warcio read its version and field lines
            if length < len(tap.lines[0]):  # (Heritrix 1.x leaves out the last newline)
                if self.stream.can_rewind:
                    self.stream.rewind(offset + len(line))
                return BadRecord(offset, "bad_length", f"ARC length {length:,} ends in its headers")
            self._arc_fields = 10 if tap.lines[0].split(b" ", 1)[0] == b"2" else 5
            length = max(length - headers.total_len, 0)
        if layout:
            record = self._arc_record(headers, offset, length)
        else:
            record = Record(
                kind=(parsed.rec_type or "").lower(),
                offset=offset,
                url=_uri(headers.get_header("WARC-Target-URI", ""), tap.raw(b"warc-target-uri")),
                record_id=headers.get_header("WARC-Record-ID"),
                date=headers.get_header("WARC-Date"),
                content_type=headers.get_header("Content-Type", ""),
                length=length,
                block=b"",
            )
        return self._content(record, self.stream.offset)

    def _arc_record(self, headers: StatusAndHeaders, offset: int, length: int) -> Record:
        url = _uri(headers.get_header("uri", ""), None)
        kind = "arcinfo" if url.startswith("filedesc:") else "other"
        if url.lower().startswith(("http:", "https:")):
            kind = "response"
        return Record(
            kind=kind,
            offset=offset,
            url=url,
            record_id=None,
            date=_arc_date(headers.get_header("archive-date", "")),
            content_type=headers.get_header("content-type", ""),
            length=length,
            block=b"",
            arc=True,
        )
