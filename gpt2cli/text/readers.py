"""Reading documents: JSON Lines, delimited text, NUL-separated records, one file per document,
or a Parquet column; any of the text formats may be compressed (``gpt2cli.text.compressed``).

Every reader streams: a document is delivered in *pieces* of bounded size, cut
only just after a lone newline: one preceded and followed by non-whitespace
characters. GPT-2's pre-tokenizer never joins text across such a point (the
newline is a token of its own), so encoding the pieces one by one gives exactly
the ids of encoding the whole document. (After a run of whitespace such as
"\n\n" or "\r\n" it would not: "x\n\n\ny" is "x", "\n\n", "\n", "y", but
"x\n\n\n" alone ends with the one token "\n\n\n".)
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from gpt2cli.errors import Gpt2Error, UsageError, malformed_json
from gpt2cli.text.compressed import open_input
from gpt2cli.text.read_options import ReadOptions

FORMATS = ("jsonl", "text", "nul", "file", "parquet")
PARQUET_MAGIC = b"PAR1"
PARQUET_BATCH_ROWS = 1024
PIECE_CHARS = 1 << 20
PLAIN = ReadOptions()  # every format detected, the "text" field, strict UTF-8


@dataclass
class Piece:
    """A part of a document; ``last`` marks the document's final piece."""

    text: str
    last: bool
    source: str
    line: int  # 1-based line where the document starts
    fields: dict | None = None  # the whole JSON object, for jsonl input


@dataclass
class Document:
    text: str
    source: str
    line: int
    fields: dict | None = None  # the whole JSON object, for jsonl input


def _safe_cut(buffer: list[str], following: str) -> bool:
    """Whether the text may be cut between ``buffer`` and ``following`` (see above).

    ``str.isspace`` covers every character of the pre-tokenizer's ``\\s`` (and a few
    more, which only makes cuts rarer).
    """
    if not buffer or not following or following[0].isspace():
        return False
    last = buffer[-1]
    return len(last) >= 2 and last[-1] == "\n" and not last[-2].isspace()


def _source_name(name: str) -> str:
    return "<stdin>" if name == "-" else name


class _Decoder:
    """Decodes one line of bytes, reporting invalid UTF-8 by source, line and byte offset."""

    def __init__(self, source: str, errors: str, encoding: str = "utf-8") -> None:
        if errors not in ("strict", "replace", "ignore"):
            raise UsageError(f"--errors must be strict, replace or ignore, not {errors!r}")
        self.source = source
        self.errors = errors
        self.encoding = encoding
        self.offset = 0
        self.line = 0

    def __call__(self, raw: bytes) -> str:
        self.line += 1
        try:
            text = raw.decode(self.encoding, self.errors)
        except UnicodeDecodeError as error:
            raise Gpt2Error(
                f"{self.source}: invalid UTF-8 at byte {self.offset + error.start} "
                f"(line {self.line})",
                "pass --errors replace to substitute U+FFFD and continue",
            ) from None
        self.offset += len(raw)
        return text


BOM = b"\xef\xbb\xbf"
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _sniff(handle: BinaryIO, name: str) -> tuple[str, str]:
    """(format, encoding) of an input; a UTF-8 byte-order mark is consumed.

    JSON Lines: a name ending in .jsonl/.ndjson/.json (before a compression suffix), or a
    first non-blank byte ``{``. The encoding is UTF-8 unless an XML declaration names
    another one that keeps ASCII bytes as they are (ISO-8859-1, windows-1252, ...).
    """
    peek = getattr(handle, "peek", None)
    head = peek(4096) if peek else b""
    if head[:4] == PARQUET_MAGIC:
        return "parquet", "utf-8"
    if head.startswith(BOM):
        handle.read(len(BOM))
        head = head[len(BOM) :]
    stem = name.lower().removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")
    stem = stem.removesuffix(".zst")
    if stem.endswith(JSONL_SUFFIXES) or head.lstrip(b" \t\r\n")[:1] == b"{":
        return "jsonl", "utf-8"
    declared = _XML_ENCODING.match(head)
    if declared:
        try:
            encoding = codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            encoding = "utf-8"
        if "\n<?>".encode(encoding, "ignore") == b"\n<?>":
            return "text", encoding
    return "text", "utf-8"


def _parquet_pieces(name: str, source: str, field: str) -> Iterator[Piece]:
    """The column ``field`` of a Parquet file, one row group's batches at a time."""
    import pyarrow.parquet as pq

    if name == "-":
        raise UsageError("Parquet cannot be read from stdin", "name the file instead")
    try:
        parquet = pq.ParquetFile(name)
    except Exception as error:  # pyarrow raises its own ArrowInvalid / OSError
        raise Gpt2Error(f"{source}: not a readable Parquet file ({error})") from None
    schema = parquet.schema_arrow
    if field not in schema.names:
        raise Gpt2Error(
            f"{source}: no column {field!r} (columns: {', '.join(schema.names)})",
            "choose the text column with --field",
        )
    row = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[field]):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                raise Gpt2Error(f"{source}: row {row}: column {field!r} is not a string")
            yield Piece(value, True, source, row, {field: value})


def _jsonl_pieces(handle: BinaryIO, source: str, field: str, errors: str) -> Iterator[Piece]:
    decode = _Decoder(source, errors)
    for raw in handle:
        text = decode(raw)
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise malformed_json(source, decode.line, error) from None
        if not isinstance(record, dict):
            raise Gpt2Error(f"{source}: line {decode.line}: expected a JSON object")
        if field not in record:
            raise Gpt2Error(
                f"{source}: line {decode.line}: no field {field!r}",
                "choose the text field with --field",
            )
        value = record[field]
        if not isinstance(value, str):
            raise Gpt2Error(f"{source}: line {decode.line}: field {field!r} is not a string")
        yield Piece(value, True, source, decode.line, record)


def _delimited_pieces(
    handle: BinaryIO,
    source: str,
    errors: str,
    delimiter: str | None,
    nul: bool,
    piece_chars: int,
    encoding: str = "utf-8",
) -> Iterator[Piece]:
    """Text documents separated by a line holding only ``delimiter``, or by NUL bytes.

    The newline before a delimiter line belongs to the delimiter; with no delimiter
    (``file`` format) the whole input is one document.
    """
    decode = _Decoder(source, errors, encoding)
    buffer: list[str] = []
    size = 0
    start_line = 1
    delimiter_line = delimiter
    pending_any = False  # any content (even empty) since the last document boundary

    def flush(last: bool) -> Iterator[Piece]:
        nonlocal buffer, size
        text = "".join(buffer)
        buffer, size = [], 0
        yield Piece(text, last, source, start_line)

    for raw in handle:
        text = decode(raw)
        records = text.split("\0") if nul else [text]
        for index, part in enumerate(records):
            if index > 0:  # a NUL ended the previous record
                yield from flush(True)
                pending_any = False
                start_line = decode.line
            if not part:
                continue
            if delimiter_line is not None and part.rstrip("\r\n") == delimiter_line:
                if buffer and buffer[-1].endswith("\n"):
                    buffer[-1] = buffer[-1][:-2] if buffer[-1].endswith("\r\n") else buffer[-1][:-1]
                yield from flush(True)
                pending_any = False
                start_line = decode.line + 1
                continue
            if size >= piece_chars and _safe_cut(buffer, part):
                yield from flush(False)
            buffer.append(part)
            size += len(part)
            pending_any = True
    if pending_any or buffer or delimiter is None and not nul:
        yield from flush(True)


def check_format(fmt: str | None) -> None:
    """A usage error for a ``--format`` that is not one of FORMATS (None: detect)."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", f"choose one of {', '.join(FORMATS)}")


def iter_pieces(
    inputs: Iterable[str], options: ReadOptions = PLAIN, piece_chars: int = PIECE_CHARS
) -> Iterator[Piece]:
    """Pieces of every document of every input (``-`` is stdin), in order, read as
    ``options`` say.

    ``options.format`` None picks ``parquet`` for a Parquet file, ``jsonl`` by the name or the
    first non-blank byte after decompression (see ``_sniff``), else ``text``. For Parquet,
    ``options.field`` names the column and ``line`` is the row number.
    """
    fmt, field, errors = options.format, options.field, options.errors
    check_format(fmt)
    for name in inputs:
        source = _source_name(name)
        handle = open_input(name)
        try:
            sniffed, encoding = _sniff(handle, name)
            chosen = fmt or sniffed
            if chosen == "parquet":
                if handle is not sys.stdin.buffer:
                    handle.close()
                yield from _parquet_pieces(name, source, field)
            elif chosen == "jsonl":
                yield from _jsonl_pieces(handle, source, field, errors)
            else:
                yield from _delimited_pieces(
                    handle,
                    source,
                    errors,
                    delimiter=options.delimiter if chosen == "text" else None,
                    nul=chosen == "nul",
                    piece_chars=piece_chars,
                    encoding=encoding,
                )
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()


def iter_documents(inputs: Iterable[str], options: ReadOptions = PLAIN) -> Iterator[Document]:
    """Whole documents (pieces joined) with their source and starting line."""
    parts: list[str] = []
    for piece in iter_pieces(inputs, options):
        parts.append(piece.text)
        if piece.last:
            yield Document("".join(parts), piece.source, piece.line, piece.fields)
            parts = []
