"""Compressed inputs, recognised by their magic bytes (not their names), on files and stdin.

gzip, zstd (including Pushshift's long windows, up to 2 GiB), xz and bzip2; several
concatenated members or frames are read as one stream. A file that ends inside a
member or frame is a one-line error naming it, never a silently short input.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
import zlib
from typing import BinaryIO

from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import open_binary_input

MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)
ZSTD_MAX_WINDOW = 1 << 31
BUFFER = 1 << 16


def detect(head: bytes) -> str | None:
    """The compression whose magic ``head`` starts with, or None."""
    for magic, kind in MAGICS:
        if head.startswith(magic):
            return kind
    return None


def _truncated(source: str, kind: str, error: BaseException | None = None) -> Gpt2Error:
    detail = f" ({error})" if error and str(error) else ""
    return Gpt2Error(f"{source}: truncated or corrupt {kind} data{detail}")


class _ZstdRaw(io.RawIOBase):
    """zstd frames one after another, decompressed in bounded pieces; EOF inside a frame raises."""

    def __init__(self, handle: BinaryIO, source: str) -> None:
        import zstandard

        self._zstd = zstandard
        self._handle = handle
        self._source = source
        self._context = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self._object = self._context.decompressobj()
        self._in_frame = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while not self._pending:
            if self._object.eof:
                rest = self._object.unused_data
                self._object = self._context.decompressobj()
                self._in_frame = False
                if rest:
                    self._feed(rest)
                    continue
            chunk = self._handle.read(BUFFER)
            if not chunk:
                if self._in_frame:
                    raise _truncated(self._source, "zstd")
                return False
            self._feed(chunk)
        return True

    def _feed(self, chunk: bytes) -> None:
        self._in_frame = True
        try:
            self._pending = memoryview(self._object.decompress(chunk))
        except self._zstd.ZstdError as error:
            raise _truncated(self._source, "zstd", error) from None

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._fill():
            return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _Checked(io.RawIOBase):
    """A stdlib decompressing file whose truncation and corruption errors name the source."""

    def __init__(self, inner: BinaryIO, source: str, kind: str) -> None:
        self._inner = inner
        self._source = source
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return self._inner.readinto(buffer)  # type: ignore[attr-defined]
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as error:
            raise _truncated(self._source, self._kind, error) from None


class _Owning(io.BufferedReader):
    """Closes the compressed file beneath it too (but never stdin)."""

    def __init__(self, raw: io.RawIOBase, underlying: BinaryIO) -> None:
        super().__init__(raw, BUFFER)
        self._underlying = underlying

    def close(self) -> None:
        super().close()
        if self._underlying is not sys.stdin.buffer:
            self._underlying.close()


def decompressing(handle: BinaryIO, source: str) -> BinaryIO:
    """``handle`` itself when its first bytes are no known magic, else a decompressing reader.

    ``handle`` must support ``peek`` (files and stdin's buffer do); the result does too.
    """
    kind = detect(handle.peek(8)[:8]) if hasattr(handle, "peek") else None
    if kind is None:
        return handle
    if kind == "zstd":
        raw: io.RawIOBase = _ZstdRaw(handle, source)
    elif kind == "gzip":
        raw = _Checked(gzip.GzipFile(fileobj=handle, mode="rb"), source, kind)
    elif kind == "xz":
        raw = _Checked(lzma.LZMAFile(handle), source, kind)
    else:
        raw = _Checked(bz2.BZ2File(handle), source, kind)
    return _Owning(raw, handle)


def open_input(name: str) -> BinaryIO:
    """``-`` (stdin) or an existing file, decompressed when its magic bytes say so."""
    source = "<stdin>" if name == "-" else name
    return decompressing(open_binary_input(name), source)
