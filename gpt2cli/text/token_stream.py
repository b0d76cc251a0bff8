"""The binary token stream that flows from ``gpt2 tokenize`` into ``gpt2 pack`` (and ``score``).

Format: docs/formats.md#token-stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np

from gpt2cli.errors import Gpt2Error
from gpt2cli.text.tokenizer import EOT, VOCAB_SIZE

MAGIC = b"\xff\xffG2TS"
VERSION = 1
HEADER = MAGIC + VERSION.to_bytes(2, "little")
HEADER_TOKENS = len(HEADER) // 2
_MARK = 0xFFFF
_HEADER_WORDS = np.frombuffer(HEADER, dtype="<u2")
READ_BYTES = 1 << 22


def looks_like_token_stream(first_bytes: bytes) -> bool:
    return first_bytes.startswith(MAGIC)


def encode_document(ids: Iterable[int] | np.ndarray) -> bytes:
    """One document as stream bytes (its ids then the terminating 50256), without a header."""
    array = np.fromiter(ids, dtype="<u2") if not isinstance(ids, np.ndarray) else ids
    return np.append(array.astype("<u2", copy=False), np.uint16(EOT)).astype("<u2").tobytes()


class TokenStreamReader:
    """Reads one or more concatenated token streams, yielding documents as uint16 arrays.

    ``name`` is used in error messages. Counters ``tokens``/``documents``/``bytes_read``
    are updated as documents are yielded.
    """

    def __init__(self, handle: BinaryIO, name: str = "<stdin>", read_bytes: int = READ_BYTES):
        self.handle = handle
        self.name = name
        self.read_bytes = read_bytes - read_bytes % 2
        self.tokens = 0
        self.documents = 0
        self.bytes_read = 0

    def _read(self) -> bytes:
        """What is available now, up to ``read_bytes`` (``read1``: a slow pipe is not
        waited on until a whole buffer fills)."""
        read1 = getattr(self.handle, "read1", None)
        return read1(self.read_bytes) if read1 else self.handle.read(self.read_bytes)

    def _blocks(self, first: bytes) -> Iterator[np.ndarray]:
        """uint16 blocks of ids with every header removed and validated."""
        odd = b""
        data = first
        offset = 0  # byte offset of data[0] in the input
        while True:
            if not data:
                data = self._read()
                if not data:
                    break
            data = odd + data
            usable = len(data) - len(data) % 2
            odd = data[usable:]
            words = np.frombuffer(data[:usable], dtype="<u2")
            data = b""
            consumed = usable
            marks = np.flatnonzero(words == _MARK)
            if marks.size:
                # A header may straddle the block end: hold its start back for the next read.
                last = int(marks[-1])
                if last + HEADER_TOKENS > words.size:
                    held = words[last:].tobytes()
                    consumed -= len(held)
                    words = words[:last]
                    marks = marks[:-1]
                    more = self._read()
                    if more:
                        data = held + odd + more
                        odd = b""
                    elif held + odd == HEADER[: len(held + odd)]:
                        raise Gpt2Error(
                            f"{self.name}: truncated token stream (cut inside a header)"
                        )
                    else:
                        raise self._stray_mark(offset + 2 * last)
                keep = np.ones(words.size, dtype=bool)
                for mark in marks:
                    mark = int(mark)
                    header = words[mark : mark + HEADER_TOKENS]
                    if not np.array_equal(header[:3], _HEADER_WORDS[:3]):
                        raise self._stray_mark(offset + 2 * mark)
                    if int(header[3]) != VERSION:
                        raise Gpt2Error(
                            f"{self.name}: token stream version {int(header[3])} is not "
                            f"supported (this gpt2cli reads version {VERSION})"
                        )
                    keep[mark : mark + HEADER_TOKENS] = False
                words = words[keep]
            if words.size:
                too_big = np.flatnonzero(words >= VOCAB_SIZE)
                if too_big.size:
                    raise Gpt2Error(
                        f"{self.name}: token id {int(words[too_big[0]])} is not below "
                        f"{VOCAB_SIZE} (token {self.tokens + self.documents + int(too_big[0])})"
                    )
            offset += consumed
            self.bytes_read = offset
            yield words
        if odd:
            raise Gpt2Error(f"{self.name}: truncated token stream (odd number of bytes)")

    def _stray_mark(self, byte: int) -> Gpt2Error:
        return Gpt2Error(
            f"{self.name}: not a gpt2 token stream (id {_MARK} at byte {byte} is neither a "
            "token nor the start of a stream header)"
        )

    def _check_start(self) -> bytes:
        first = self._read()
        while first and len(first) < len(HEADER):
            more = self._read()
            if not more:
                break
            first += more
        if not first:
            raise Gpt2Error(
                f"{self.name}: empty input, not a gpt2 token stream",
                "produce one with `gpt2 tokenize`",
            )
        if not looks_like_token_stream(first[: len(MAGIC)]):
            raise Gpt2Error(
                f"{self.name}: not a gpt2 token stream", "produce one with `gpt2 tokenize`"
            )
        return first

    def blocks(self) -> Iterator[np.ndarray]:
        """Validated id blocks (documents run across block ends); checks termination at the end."""
        last = EOT
        for words in self._blocks(self._check_start()):
            eots = int(np.count_nonzero(words == EOT))
            self.documents += eots
            self.tokens += words.size - eots
            if words.size:
                last = int(words[-1])
            yield words
        if last != EOT:
            raise Gpt2Error(f"{self.name}: truncated token stream (last document not terminated)")

    def documents_iter(self) -> Iterator[np.ndarray]:
        """Each document's ids (without the terminating 50256)."""
        pending: list[np.ndarray] = []
        for words in self._blocks(self._check_start()):
            ends = np.flatnonzero(words == EOT)
            start = 0
            for end in ends:
                end = int(end)
                piece = words[start:end]
                if pending:
                    pending.append(piece)
                    doc = np.concatenate(pending)
                    pending = []
                else:
                    doc = piece
                self.documents += 1
                self.tokens += doc.size
                yield doc
                start = end + 1
            if start < words.size:
                pending.append(words[start:].copy())
        if pending:
            raise Gpt2Error(f"{self.name}: truncated token stream (last document not terminated)")

    __iter__ = documents_iter
