"""The shard file: its header, the writer and the checked reader (the one home of the format).

Format: docs/formats.md#shard-file.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import zstandard

from gpt2cli.data.manifest import MAX_BLOCK_TOKENS, ShardInfo
from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import create_new, file_mode, sha256_file
from gpt2cli.text.tokenizer import EOT, VOCAB_SIZE

MAGIC = b"GPT2SHRD"
FORMAT_VERSION = 1
DTYPE_UINT16 = 1
HEADER = struct.Struct("<8sHHIIIQQQIIII")
HEADER_SIZE = HEADER.size  # 64
INDEX_ENTRY = np.dtype([("offset", "<u8"), ("length", "<u4"), ("crc", "<u4")])
SHARD_SUFFIX = ".shard"
DEFAULT_SHARD_TOKENS = 100_000_000
DEFAULT_BLOCK_TOKENS = 8192
DEFAULT_LEVEL = 3

assert HEADER_SIZE == 64


@dataclass
class ShardHeader:
    version: int
    dtype: int
    vocab_size: int
    block_tokens: int
    num_blocks: int
    tokens: int
    documents: int
    index_offset: int
    index_crc: int

    def pack(self) -> bytes:
        head = HEADER.pack(
            MAGIC,
            self.version,
            self.dtype,
            self.vocab_size,
            self.block_tokens,
            self.num_blocks,
            self.tokens,
            self.documents,
            self.index_offset,
            self.index_crc,
            0,
            0,
            0,
        )
        return head[:60] + struct.pack("<I", zlib.crc32(head[:60]))

    @classmethod
    def unpack(cls, data: bytes, name: str) -> ShardHeader:
        if len(data) < HEADER_SIZE:
            raise Gpt2Error(f"{name}: truncated shard (no complete header)")
        fields = HEADER.unpack(data[:HEADER_SIZE])
        if fields[0] != MAGIC:
            raise Gpt2Error(f"{name}: not a gpt2 shard (bad magic)")
        if fields[1] != FORMAT_VERSION:
            raise Gpt2Error(
                f"{name}: shard format version {fields[1]} is not supported "
                f"(this gpt2cli reads version {FORMAT_VERSION})"
            )
        if zlib.crc32(data[:60]) != fields[12]:
            raise Gpt2Error(f"{name}: corrupt shard header (checksum mismatch)")
        header = cls(*fields[1:10])
        if header.dtype != DTYPE_UINT16:
            raise Gpt2Error(f"{name}: unknown token dtype code {header.dtype}")
        if (
            header.vocab_size > 65535
            or not 0 < header.block_tokens <= MAX_BLOCK_TOKENS
            or header.documents > header.tokens
        ):
            raise Gpt2Error(f"{name}: corrupt shard header (impossible values)")
        if header.num_blocks != math.ceil(header.tokens / header.block_tokens):
            raise Gpt2Error(f"{name}: corrupt shard header (block count disagrees with tokens)")
        return header


def corrupt_block(name: str, block: int, header: ShardHeader, why: str) -> Gpt2Error:
    """The error for a damaged block: the shard, the block and its tokens."""
    first = block * header.block_tokens
    last = min(first + header.block_tokens, header.tokens) - 1
    return Gpt2Error(
        f"{name}: block {block} (tokens {first}-{last}) is corrupt: {why}",
        "re-pack this shard; `gpt2 pack --verify DIR` checks them all",
    )


class ShardReader:
    """Random access to one shard file: header, index, and any block, checked on read."""

    def __init__(self, path: str | os.PathLike[str], expected_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            raise Gpt2Error(f"{self.name}: shard is missing from {self.path.parent}") from None
        except OSError as error:
            raise Gpt2Error(f"{self.name}: cannot open shard ({error.strerror})") from None
        self._handle = handle
        size = os.fstat(handle.fileno()).st_size
        self.size = size
        if expected_bytes is not None and size != expected_bytes:
            handle.close()
            raise Gpt2Error(
                f"{self.name}: shard is {size:,} bytes but the manifest says {expected_bytes:,} "
                "(truncated or replaced)",
                "re-pack it; `gpt2 pack --verify DIR` checks every shard",
            )
        try:
            self.header = ShardHeader.unpack(handle.read(HEADER_SIZE), self.name)
            end = self.header.index_offset + INDEX_ENTRY.itemsize * self.header.num_blocks
            if end != size or self.header.index_offset < HEADER_SIZE:
                raise Gpt2Error(
                    f"{self.name}: truncated or damaged shard ({size:,} bytes, "
                    f"the header says {end:,})"
                )
            self._fd = handle.fileno()
        except BaseException:
            handle.close()
            raise
        self._index: np.ndarray | None = None
        self._entries: list[tuple[int, int, int]] = []
        self._decompressor = zstandard.ZstdDecompressor()

    def _pread(self, offset: int, length: int) -> bytes:
        """Bytes at ``offset`` (pread: no mapping that would count the file in our RSS)."""
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise Gpt2Error(f"{self.name}: truncated shard (short read at byte {offset:,})")
        return data

    @property
    def index(self) -> np.ndarray:
        if self._index is None:
            start = self.header.index_offset
            raw = self._pread(start, INDEX_ENTRY.itemsize * self.header.num_blocks)
            if zlib.crc32(raw) != self.header.index_crc:
                raise Gpt2Error(
                    f"{self.name}: the block index is corrupt (checksum mismatch)",
                    "re-pack this shard",
                )
            index = np.frombuffer(raw, dtype=INDEX_ENTRY).copy()
            ends = index["offset"].astype(np.int64) + index["length"]
            if index.size and (
                int(index["offset"][0]) < HEADER_SIZE
                or int(ends.max()) > start
                or np.any(index["offset"][1:] < ends[:-1])
            ):
                raise Gpt2Error(f"{self.name}: the block index is corrupt (bad offsets)")
            self._index = index
            self._entries = list(
                zip(index["offset"].tolist(), index["length"].tolist(), index["crc"].tolist())
            )
        return self._index

    def block_size(self, block: int) -> int:
        header = self.header
        return min(header.block_tokens, header.tokens - block * header.block_tokens)

    def block(self, block: int) -> np.ndarray:
        """Block ``block``'s tokens (uint16), checksum-verified."""
        if self._index is None:
            self.index  # noqa: B018 - loads and checks the index
        offset, length, crc = self._entries[block]
        frame = self._pread(offset, length)
        if zlib.crc32(frame) != crc:
            raise corrupt_block(self.name, block, self.header, "checksum mismatch")
        header = self.header
        expected = min(header.block_tokens, header.tokens - block * header.block_tokens)
        try:
            data = self._decompressor.decompress(frame, max_output_size=2 * expected)
        except zstandard.ZstdError as error:
            raise corrupt_block(self.name, block, self.header, f"zstd: {error}") from None
        if len(data) != 2 * expected:
            raise corrupt_block(
                self.name, block, self.header, f"{len(data) // 2} tokens instead of {expected}"
            )
        return np.frombuffer(data, dtype="<u2")

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of this shard (decompresses only the blocks needed)."""
        if start < 0 or start + length > self.header.tokens:
            raise IndexError(f"{self.name}: tokens {start}..{start + length} out of range")
        bt = self.header.block_tokens
        parts = []
        position = start
        while position < start + length:
            b = position // bt
            data = self.block(b)
            lo = position - b * bt
            hi = min(len(data), start + length - b * bt)
            parts.append(data[lo:hi])
            position += hi - lo
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint16)

    def blocks(self) -> Iterator[np.ndarray]:
        for b in range(self.header.num_blocks):
            yield self.block(b)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardWriter:
    """Writes one split's shards: blocks of ``block_tokens`` compressed as they fill,
    a shard finished (index, header, fsync, rename) every ``shard_tokens`` ids."""

    def __init__(
        self,
        directory: Path,
        part: str,
        split: str,
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        block_tokens: int = DEFAULT_BLOCK_TOKENS,
        level: int = DEFAULT_LEVEL,
    ) -> None:
        self.directory = directory
        self.part = part
        self.split = split
        self.shard_tokens = shard_tokens
        self.block_tokens = block_tokens
        self.compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self.finished: list[ShardInfo] = []
        self.tokens = 0
        self.documents = 0
        self._buffer = np.empty(block_tokens, dtype="<u2")
        self._fill = 0
        self._file: BinaryIO | None = None
        self._tmp: Path | None = None
        self._index: list[tuple[int, int, int]] = []
        self._shard_tokens = 0  # tokens in the open shard, flushed blocks only
        self._shard_documents = 0
        self._offset = HEADER_SIZE

    def shard_name(self, number: int) -> str:
        return f"{self.part}-{self.split}-{number:05d}{SHARD_SUFFIX}"

    def write(self, tokens: np.ndarray) -> None:
        """Append ids (whole or partial documents, terminators included)."""
        with self._naming_errors():
            self._write(tokens)

    @contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """A failed write (disk full, file too large) names the shard it was writing."""
        try:
            yield
        except OSError as error:
            if error.filename is None:
                error.filename = str(self.directory / self.shard_name(len(self.finished)))
            raise

    def _write(self, tokens: np.ndarray) -> None:
        position = 0
        total = len(tokens)
        while position < total:
            room = min(
                self.block_tokens - self._fill, self.shard_tokens - self._shard_tokens - self._fill
            )
            take = min(room, total - position)
            self._buffer[self._fill : self._fill + take] = tokens[position : position + take]
            self._fill += take
            position += take
            if self._fill == self.block_tokens or (
                self._shard_tokens + self._fill == self.shard_tokens
            ):
                self._flush_block()
                if self._shard_tokens == self.shard_tokens:
                    self._finish_shard()

    def _flush_block(self) -> None:
        if self._fill == 0:
            return
        if self._file is None:
            name = self.shard_name(len(self.finished))
            self._tmp = self.directory / f".{name}.tmp-{os.getpid()}"
            self._file = create_new(self._tmp)
            self._file.write(b"\0" * HEADER_SIZE)
        block = self._buffer[: self._fill]
        frame = self.compressor.compress(block.tobytes())
        self._file.write(frame)
        self._index.append((self._offset, len(frame), zlib.crc32(frame)))
        self._offset += len(frame)
        eots = int(np.count_nonzero(block == EOT))
        self._shard_tokens += self._fill
        self._shard_documents += eots
        self.tokens += self._fill
        self.documents += eots
        self._fill = 0

    def _finish_shard(self) -> None:
        if self._file is None:
            return
        index = np.array(self._index, dtype=INDEX_ENTRY).tobytes()
        header = ShardHeader(
            FORMAT_VERSION,
            DTYPE_UINT16,
            VOCAB_SIZE,
            self.block_tokens,
            len(self._index),
            self._shard_tokens,
            self._shard_documents,
            self._offset,
            zlib.crc32(index),
        )
        self._file.write(index)
        self._file.seek(0)
        self._file.write(header.pack())
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), file_mode())
        self._file.close()
        self._file = None
        assert self._tmp is not None
        name = self.shard_name(len(self.finished))
        size = self._tmp.stat().st_size
        digest = sha256_file(self._tmp)
        os.replace(self._tmp, self.directory / name)
        self._tmp = None
        self.finished.append(
            ShardInfo(
                name, self.split, self._shard_tokens, self._shard_documents, size, digest, self.part
            )
        )
        self._index = []
        self._offset = HEADER_SIZE
        self._shard_tokens = 0
        self._shard_documents = 0

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every shard written."""
        with self._naming_errors():
            self._flush_block()
            self._finish_shard()
        return self.finished

    def abort(self) -> None:
        """Remove everything this writer created (temp file and finished shards); each step
        survives errors of its own (closing a file on a full disk fails again)."""
        if self._file is not None:
            file, self._file = self._file, None
            with suppress(OSError):
                file.close()
        paths = [self.directory / info.name for info in self.finished]
        if self._tmp is not None:
            paths.append(self._tmp)
        for path in paths:
            with suppress(OSError):
                path.unlink(missing_ok=True)
