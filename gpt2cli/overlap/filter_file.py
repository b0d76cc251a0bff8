"""The Bloom filter file (``gpt2 overlap``): its format, the blocked bit array, and adding
and querying n-gram hashes (``hashing``) through it. The one home of the format in the code.

Format and block layout: docs/formats.md#bloom-filter-file (see also ``HEADER_FORMAT``).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2cli import console
from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import open_file
from gpt2cli.overlap.hyperloglog import HLL_PRECISION, HLL_REGISTERS, hll_estimate, hll_update
from gpt2cli.overlap.normalise import NORMALISATION_VERSION
from gpt2cli.overlap.sizing import MAX_HASHES
from gpt2cli.splitmix import GOLDEN, MASK64, mix_array

MAGIC = b"G2BLOOM\x1a"
FORMAT_VERSION = 3
UNVERIFIABLE_VERSION = 2  # read, but it has no checksums
HEADER_FORMAT = "<8sIIIIQQQQdIdIII"
HEADER_FIELDS = struct.calcsize(HEADER_FORMAT)  # 88
HEADER_FORMAT_V2 = "<8sIIIIQQQQdIdI"
HEADER_SIZE = 128
REGION_BYTES = 1 << 20
DATA_OFFSET = 20480
assert HEADER_SIZE + HLL_REGISTERS <= DATA_OFFSET

_U64 = np.uint64


@dataclass
class Header:
    n: int
    k: int
    m: int
    capacity: int
    fp_rate: float
    items: int = 0
    bits_set: int = 0
    fill_fp_rate: float = 0.0
    format_version: int = FORMAT_VERSION
    normalisation_version: int = NORMALISATION_VERSION
    region_bytes: int = REGION_BYTES  # 0: no checksums (version 2)
    table_crc: int = 0

    @property
    def regions(self) -> int:
        return -(-self.m // 8 // self.region_bytes) if self.region_bytes else 0

    @property
    def table_offset(self) -> int:
        return DATA_OFFSET + self.m // 8

    @property
    def file_size(self) -> int:
        return self.table_offset + 4 * self.regions

    def pack(self, registers: np.ndarray) -> bytes:
        fields = struct.pack(
            HEADER_FORMAT[:-1],
            MAGIC,
            self.format_version,
            self.normalisation_version,
            self.n,
            self.k,
            self.m,
            self.capacity,
            self.items,
            self.bits_set,
            self.fp_rate,
            HLL_PRECISION,
            self.fill_fp_rate,
            self.region_bytes,
            self.table_crc,
        )
        crc = zlib.crc32(registers.tobytes(), zlib.crc32(fields))
        head = fields + struct.pack("<I", crc)
        return head + bytes(HEADER_SIZE - len(head)) + registers.tobytes()

    def shape(self) -> tuple[int, int, int, int]:
        return (self.normalisation_version, self.n, self.k, self.m)

    def describe(self) -> str:
        return f"n={self.n}, m={self.m:,} bits, k={self.k}"


def _read_header(path: Path, handle) -> tuple[Header, np.ndarray]:
    name = str(path)
    head = handle.read(HEADER_SIZE + HLL_REGISTERS)
    padding = handle.read(DATA_OFFSET - len(head))
    if len(head) < 8 or head[:8] != MAGIC:
        raise Gpt2Error(
            f"{name}: not a gpt2 overlap filter (bad magic)",
            "build one with `gpt2 overlap build -o FILE`",
        )
    if len(head) < HEADER_SIZE + HLL_REGISTERS:
        raise Gpt2Error(f"{name}: truncated filter file (header incomplete)")
    version = struct.unpack_from("<I", head, 8)[0]
    if version not in (FORMAT_VERSION, UNVERIFIABLE_VERSION):
        raise Gpt2Error(
            f"{name}: filter format version {version}, this gpt2 reads version {FORMAT_VERSION}",
            "rebuild the filter with this version",
        )
    layout = HEADER_FORMAT if version == FORMAT_VERSION else HEADER_FORMAT_V2
    fields = struct.unpack_from(layout, head, 0)
    if version == UNVERIFIABLE_VERSION:
        fields = fields[:-1] + (0, 0, fields[-1])  # no region size, no checksum table
    (_, _, norm, n, k, m, capacity, items, bits_set, fp_rate, precision, fill_fp_rate) = fields[:12]
    region_bytes, table_crc, crc = fields[12:]
    covered = struct.calcsize(layout) - 4
    registers = np.frombuffer(head[HEADER_SIZE:], dtype=np.uint8).copy()
    if zlib.crc32(registers.tobytes(), zlib.crc32(head[:covered])) != crc:
        raise Gpt2Error(f"{name}: corrupt filter header (checksum mismatch)")
    if norm != NORMALISATION_VERSION:
        raise Gpt2Error(
            f"{name}: normalisation version {norm}, this gpt2 uses version {NORMALISATION_VERSION}",
            "rebuild the filter with this version",
        )
    if precision != HLL_PRECISION or not 1 <= k <= MAX_HASHES or m == 0 or m % (64 * k) or n == 0:
        raise Gpt2Error(f"{name}: corrupt filter header")
    if version == FORMAT_VERSION and region_bytes != REGION_BYTES:  # the one size written
        raise Gpt2Error(f"{name}: corrupt filter header")
    # the bytes no checksum covers are zeros as written: a flipped one is found too
    unused = head[struct.calcsize(layout) : HEADER_SIZE] + padding
    if unused.count(0) != len(unused):
        raise Gpt2Error(f"{name}: corrupt filter header (non-zero padding)")
    header = Header(
        n, k, m, capacity, fp_rate, items, bits_set, fill_fp_rate, version, norm, region_bytes
    )
    header.table_crc = table_crc
    return header, registers


class BloomFilter:
    """A Bloom filter over a memory-mapped bit array (read-only, or writable while building)."""

    def __init__(
        self,
        header: Header,
        registers: np.ndarray,
        words: np.ndarray,
        path: Path | None = None,
        checksums: np.ndarray | None = None,
    ) -> None:
        self.header = header
        self.registers = registers
        self.words = words  # little-endian uint64 view of the bit array
        self.path = path
        self.checksums = checksums  # CRC-32 per region (None: a version 2 file)
        self.blocks = words.view(np.dtype((np.void, 8 * header.k)))  # one item per block

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: bool = True) -> BloomFilter:
        """Open an existing filter read-only through a memory map; with ``verify``, every
        region of its bit array is checked against its checksum first."""
        path = Path(path)
        checksums = None
        with open_file(path, "filter file") as handle:  # the map outlives it
            header, registers = _read_header(path, handle)
            size = os.fstat(handle.fileno()).st_size
            if size != header.file_size:
                what = "truncated" if size < header.file_size else "trailing bytes after"
                raise Gpt2Error(
                    f"{path}: {what} filter file ({size:,} bytes, expected {header.file_size:,})"
                )
            if header.regions:
                handle.seek(header.table_offset)
                table = handle.read(4 * header.regions)
                if zlib.crc32(table) != header.table_crc:
                    raise Gpt2Error(f"{path}: corrupt filter: damaged checksum table", REBUILD)
                checksums = np.frombuffer(table, dtype="<u4")
            mapped = np.memmap(
                handle, dtype="<u8", mode="r", offset=DATA_OFFSET, shape=(header.m // 64,)
            )
        # a plain ndarray view of the map (it keeps the map alive): numpy's memmap subclass
        # adds overhead to every take()
        bloom_filter = cls(header, registers, mapped.view(np.ndarray), path, checksums)
        if checksums is None:
            console.warn(
                "overlap",
                f"{path}: filter format version {header.format_version} has no checksums, so "
                "it cannot be verified (rebuild it with this gpt2 to get them)",
            )
        elif verify:
            bloom_filter.raise_if_corrupt()
        return bloom_filter

    # -- checksums -------------------------------------------------------------------------

    def corrupt_regions(self) -> list[int] | None:
        """Regions of the bit array whose CRC-32 is not the stored one (None: no checksums)."""
        if self.checksums is None:
            return None
        actual = region_checksums(self.words, self.header.region_bytes)
        return np.flatnonzero(actual != self.checksums).tolist()

    def raise_if_corrupt(self) -> None:
        bad = self.corrupt_regions()
        if bad:
            region = self.header.region_bytes
            raise Gpt2Error(
                f"{self.path}: corrupt filter: checksum mismatch in {len(bad):,} of "
                f"{self.header.regions:,} regions of the bit array (the first at byte "
                f"{DATA_OFFSET + bad[0] * region:,})",
                REBUILD,
            )

    @classmethod
    def create(cls, handle, header: Header, in_memory: bool | None = None) -> BloomFilter:
        """A new, empty filter whose file is ``handle`` (opened for reading and writing).

        The bit array lives in anonymous memory (transparent huge pages where the kernel
        allows: random access is several times faster than through a file map) when it
        fits comfortably in RAM, else in a map of the file itself. ``finish`` writes it.
        """
        handle.seek(0)
        handle.truncate(header.file_size)  # sparse zeros
        _reserve(handle, header.file_size)
        registers = np.zeros(HLL_REGISTERS, dtype=np.uint8)
        handle.write(header.pack(registers))
        handle.flush()
        if in_memory is None:
            in_memory = header.m // 8 <= available_memory() // 2
        if in_memory:
            anonymous = mmap.mmap(-1, header.m // 8)
            if hasattr(mmap, "MADV_HUGEPAGE"):
                try:
                    anonymous.madvise(mmap.MADV_HUGEPAGE)
                except OSError:
                    pass
            words = np.frombuffer(anonymous, dtype="<u8")
        else:
            words = np.memmap(
                handle, dtype="<u8", mode="r+", offset=DATA_OFFSET, shape=(header.m // 64,)
            )
        return cls(header, registers, words)

    def finish(self, handle) -> None:
        """Count the set bits, write or flush the bit array and rewrite the header."""
        self.header.bits_set, self.header.fill_fp_rate = bit_statistics(self.words, self.header.k)
        if isinstance(self.words, np.memmap):
            self.words.flush()
        else:
            handle.seek(DATA_OFFSET)
            for part in iter_chunks(self.words.size):
                handle.write(memoryview(np.ascontiguousarray(self.words[part])).cast("B"))
        self.checksums = region_checksums(self.words, self.header.region_bytes)
        table = self.checksums.astype("<u4").tobytes()
        self.header.table_crc = zlib.crc32(table)
        handle.seek(self.header.table_offset)
        handle.write(table)
        handle.seek(0)
        handle.write(self.header.pack(self.registers))
        handle.flush()

    # -- hashing ---------------------------------------------------------------------------

    def _locate(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(block of each hash, its bit within each word of the block: shape (len, k), 0..63)."""
        k = self.header.k
        block = (hashes % _U64(self.header.m // (64 * k))).astype(np.intp)
        mixed = np.empty((hashes.size, -(-k // 8)), dtype="<u8")  # 8 byte-sized fields each
        for i in range(mixed.shape[1]):
            mixed[:, i] = mix_array(hashes + _U64(((i + 1) * GOLDEN) & MASK64))
        bits = np.empty((hashes.size, k), dtype=np.uint64)
        np.bitwise_and(mixed.view(np.uint8)[:, :k], np.uint8(63), out=bits, casting="unsafe")
        return block, bits

    def _masks(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(block of each hash, the words to OR into it: shape (len, k))."""
        block, bits = self._locate(hashes)
        return block, np.left_shift(_U64(1), bits, out=bits)

    def positions(self, hashes: np.ndarray) -> np.ndarray:
        """All k bit positions of each hash, shape (len, k) (for tests and documentation)."""
        block, bits = self._locate(hashes)
        k = self.header.k
        word = block.astype(np.uint64)[:, None] * _U64(k) + np.arange(k, dtype=np.uint64)
        return word * _U64(64) + bits

    # -- adding and querying ---------------------------------------------------------------

    def add(self, hashes: np.ndarray) -> None:
        """Set the k bits of every n-gram hash."""
        if hashes.size == 0:
            return
        self.header.items += int(hashes.size)
        hll_update(self.registers, hashes)
        for start in range(0, hashes.size, ADD_CHUNK):
            self._add(hashes[start : start + ADD_CHUNK])

    def _add(self, hashes: np.ndarray) -> None:
        blocks, k = self.blocks, self.header.k
        block, masks = self._masks(hashes)
        while block.size:
            rows = blocks.take(block).view(np.uint64).reshape(-1, k)
            rows |= masks
            blocks[block] = rows.view(blocks.dtype).reshape(-1)  # a repeated block: one wins...
            written = blocks.take(block).view(np.uint64).reshape(-1, k)
            lost = np.flatnonzero((written != rows).any(axis=1))
            block, masks = block[lost], masks[lost]  # ...the others go again

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean array: True where all k bits are set (present, or a false positive)."""
        found = np.zeros(hashes.size, dtype=bool)
        for start in range(0, hashes.size, ADD_CHUNK):
            block, masks = self._masks(hashes[start : start + ADD_CHUNK])
            rows = self.blocks.take(block).view(np.uint64).reshape(-1, self.header.k)
            rows &= masks
            found[start : start + block.size] = (rows == masks).all(axis=1)
        return found

    # -- reporting -------------------------------------------------------------------------

    def summary(self) -> dict:
        """The filter's figures, as `--json` reports them."""
        header = self.header
        return {
            "path": str(self.path) if self.path else None,
            "n": header.n,
            "hashes": header.k,
            "bits": header.m,
            "bytes": header.file_size,
            "capacity": header.capacity,
            "items_added": header.items,
            "distinct_estimate": round(self.distinct_estimate),
            "bits_set": header.bits_set,
            "fill": self.fill,
            "target_fp_rate": header.fp_rate,
            "estimated_fp_rate": self.estimated_fp_rate,
            "normalisation_version": header.normalisation_version,
            "format_version": header.format_version,
        }

    @property
    def fill(self) -> float:
        return self.header.bits_set / self.header.m

    @property
    def estimated_fp_rate(self) -> float:
        """The chance that an n-gram never added finds its bits set, from the bits themselves."""
        return self.header.fill_fp_rate

    @property
    def distinct_estimate(self) -> float:
        """HyperLogLog estimate of the distinct n-grams added (never above ``items``)."""
        return min(hll_estimate(self.registers), float(self.header.items))


REBUILD = "rebuild it with `gpt2 overlap build`, or restore it from a copy"


def region_checksums(words: np.ndarray, region_bytes: int) -> np.ndarray:
    """CRC-32 of each ``region_bytes`` bytes of the bit array, computed on several threads
    (zlib releases the GIL)."""
    data = words.view(np.uint8)
    starts = range(0, data.size, region_bytes)

    def crc(start: int) -> int:
        return zlib.crc32(data[start : start + region_bytes])

    if len(starts) <= 1:
        return np.array([crc(start) for start in starts], dtype=np.uint32)
    with ThreadPoolExecutor(max_workers=min(len(starts), os.cpu_count() or 1)) as pool:
        return np.fromiter(pool.map(crc, starts), dtype=np.uint32, count=len(starts))


ADD_CHUNK = 1 << 12  # n-grams per round of block updates (fewer repeated blocks, in cache)
CHUNK_WORDS = 1 << 23  # 64 MiB of bit array at a time


def iter_chunks(total: int, chunk: int = CHUNK_WORDS) -> Iterator[slice]:
    for start in range(0, total, chunk):
        yield slice(start, min(start + chunk, total))


def bit_statistics(words: np.ndarray, k: int) -> tuple[int, float]:
    """(bits set, false-positive rate): the mean over blocks of the product over a block's
    words of the share of bits set in the word, the exact chance that a random n-gram
    never added finds all its bits set."""
    count, hits = 0, 0.0
    for part in iter_chunks(words.size, CHUNK_WORDS - CHUNK_WORDS % k):
        ones = np.bitwise_count(np.asarray(words[part]))
        count += int(ones.sum(dtype=np.int64))
        hits += float(np.prod(ones.reshape(-1, k) / 64.0, axis=1).sum())
    return count, hits / (words.size // k)


def _reserve(handle, size: int) -> None:
    """Allocate the file's disk blocks now: a full disk fails here, with a message, rather
    than as SIGBUS in the middle of writing through the memory map."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise Gpt2Error(
                f"no room for a {size:,}-byte filter file: {error.strerror}",
                "free disk space or write the filter elsewhere",
            ) from None
        # the filesystem cannot preallocate (EOPNOTSUPP, EINVAL): carry on with a sparse file


def available_memory() -> int:
    """Bytes of memory available without swapping (MemAvailable), or a guess."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 30
