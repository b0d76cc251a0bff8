"""Text normalisation, word n-gram hashing and the Bloom filter file (``gpt2 overlap``).

Normalisation, version 1 (the GPT-2 paper, §4: "lower-cased alphanumeric words
with a single space as a delimiter"):

1. lower-case the text with Python's ``str.lower`` (full Unicode case mapping);
2. a *word* is a maximal run of characters for which ``str.isalnum()`` is true
   (Unicode letters and digits of any script); every other character (spaces,
   punctuation, symbols, underscores, combining marks) separates words;
3. the normalised text is the words joined by single spaces; an *n-gram* is n
   consecutive words of one document (never across documents).

ASCII text is normalised identically everywhere; characters outside ASCII follow
the Unicode database of the running Python (``unicodedata.unidata_version``).

Hashing, version 1 (stable: independent of ``PYTHONHASHSEED``, platform and run;
all arithmetic is uint64 with wrap-around, vectorised with numpy; ``mix`` is
splitmix64's finaliser, the constants are below):

* word: ``h = mix((len * GOLDEN ^ SEED_WORD) + c0)`` then ``h = mix(h + cj)`` for
  j = 1, 2, ... where ``cj`` is bytes 8j..8j+7 of the word's UTF-8 read as a
  little-endian uint64, zero-padded past the word's end;
* n-gram of words w0..w(n-1): ``g = mix((sum_j h(wj) * R_j) ^ SEED_NGRAM ^ n)`` with
  ``R_j = mix(j + 1) | 1``;
* the filter is *blocked* (a split-block Bloom filter): the m bits are B blocks of k
  64-bit words (m = 64 k B) and an n-gram sets one bit in each word of one block:
  block ``b = g mod B``; in its word j (j = 0..k-1) the bit
  ``(h_(j div 8) >> 8 (j mod 8)) mod 64`` (the low 6 bits of byte j mod 8 of h_(j div 8))
  where ``h_i = mix(g + (i + 1) GOLDEN)``.
  So the whole n-gram lives in k*8 consecutive bytes (one to four cache lines), read or
  written at once, instead of k random places of a classic Bloom filter.

Filter file, version 2 (little-endian); see ``HEADER_FORMAT`` and the README:

    offset  size   field
    0       8      magic b"G2BLOOM\\x1a"
    8       4      format version (2; covers the hashing scheme and the block layout)
    12      4      normalisation version (1)
    16      4      n (words per n-gram)
    20      4      k (bits per n-gram = 64-bit words per block)
    24      8      m (bits in the bit array, a multiple of 64 k)
    32      8      capacity (distinct n-grams the filter was sized for)
    40      8      items added (n-grams inserted, repeats counted)
    48      8      bits set (population count of the bit array)
    56      8      target false-positive rate (float64)
    64      4      HyperLogLog precision p (14)
    68      8      false-positive rate at the current fill (float64, computed from the bits)
    76      4      CRC-32 of bytes 0..75 and of the HLL registers
    80      48     zero
    128     2**p   HyperLogLog registers (uint8), distinct n-gram estimate
    20480   m/8    the bit array: bit i is bit (i % 8) of byte i // 8
"""

from __future__ import annotations

import errno
import functools
import math
import mmap
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import open_file
from gpt2cli.splitmix import GOLDEN, mix, mix_array

MAGIC = b"G2BLOOM\x1a"
FORMAT_VERSION = 2
NORMALISATION_VERSION = 1
HEADER_FORMAT = "<8sIIIIQQQQdIdI"
HEADER_FIELDS = struct.calcsize(HEADER_FORMAT)  # 80
HEADER_SIZE = 128
HLL_PRECISION = 14
HLL_REGISTERS = 1 << HLL_PRECISION
DATA_OFFSET = 20480
assert HEADER_SIZE + HLL_REGISTERS <= DATA_OFFSET

_U64 = np.uint64
_MASK64 = (1 << 64) - 1

# ---------------------------------------------------------------------------------------------
# normalisation

_NON_WORD = re.compile(r"[\W_]+")
_WORD = re.compile(r"[^\W_]+")
# ASCII fast path: upper-case letters to lower case, every other non-alphanumeric byte to a space.
_ASCII_TABLE = bytes(
    (c + 32 if 65 <= c <= 90 else c) if chr(c).isalnum() else 32 for c in range(128)
) + bytes(range(128, 256))


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (normalisation version 1)."""
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    """``text`` as lower-cased alphanumeric words separated by single spaces."""
    return " ".join(words(text))


_SPACE_TABLE = np.zeros(256, dtype=bool)
_SPACE_TABLE[list(b" \n\t\r\v\f")] = True


def _normalise_token(token: bytes) -> bytes:
    return _NON_WORD.sub(" ", token.decode("utf-8").lower()).encode("utf-8")


def normalised_bytes(text: str) -> bytes:
    """UTF-8 of the words of ``text``, separated by one or more spaces (fast; same words).

    ASCII bytes go through one ``bytes.translate``. Only the whitespace-delimited tokens
    that hold a non-ASCII character are decoded, lower-cased and split with the regular
    expression: ASCII whitespace is neither cased nor case-ignorable, so lower-casing a
    token alone (Greek final sigma included) equals lower-casing the whole text.
    """
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE)
    data = text.encode("utf-8")
    array = np.frombuffer(data, dtype=np.uint8)
    spaces = np.flatnonzero(_SPACE_TABLE[array])
    non_ascii = np.flatnonzero(array >= 0x80)
    after = np.searchsorted(spaces, non_ascii)  # index of the first space after each byte
    token_ends = np.append(spaces, array.size)[after]
    token_starts = np.insert(spaces + 1, 0, 0)[after]
    first = np.flatnonzero(np.diff(token_starts, prepend=-1))  # one entry per token
    out: list[bytes] = []
    done = 0
    for begin, end in zip(token_starts[first].tolist(), token_ends[first].tolist()):
        out.append(data[done:begin])
        out.append(_normalise_token(data[begin:end]))
        done = end
    out.append(data[done:])
    return b"".join(out).translate(_ASCII_TABLE)


# ---------------------------------------------------------------------------------------------
# hashing (version 1)

_GOLDEN = _U64(GOLDEN)
_SEED_WORD = _U64(0x2545F4914F6CDD1D)
_SEED_NGRAM = _U64(0xD6E8FEB86659FD93)
_SEED_HLL = _U64(0xE7037ED1A0B428DB)


def _multipliers(n: int) -> np.ndarray:
    return np.array([mix(j + 1) | 1 for j in range(n)], dtype=np.uint64)


_ONES = _U64(0xFFFFFFFFFFFFFFFF)


def word_hashes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the words in ``data`` (uint8 array of words separated by spaces).

    A word's UTF-8 bytes are read 8 at a time as little-endian uint64 (the last
    chunk zero-padded) and chained through the mixer, seeded with the word length.
    Returns ``(hashes, starts)``: one uint64 per word and the byte offset where it starts.
    """
    size = data.size
    padded = np.empty(size + 16, dtype=np.uint8)
    padded[0] = 32
    padded[1 : size + 1] = data
    padded[size + 1 :] = 32
    is_space = padded[: size + 2] == 32
    edges = np.flatnonzero(is_space[1:] != is_space[:-1])  # start, end, start, end, ...
    starts = edges[0::2]
    if starts.size == 0:
        return np.zeros(0, dtype=np.uint64), starts
    lengths = edges[1::2] - starts
    # 8 bytes at every offset (unaligned little-endian loads, no copy)
    eight = np.ndarray((size + 9,), dtype="<u8", buffer=padded, offset=0, strides=(1,))
    first = starts + 1  # offset in ``padded``
    kept = np.minimum(lengths, 8).astype(np.uint64)
    chunk = eight[first] & (_ONES >> (_U64(64) - _U64(8) * kept))
    value = lengths.astype(np.uint64)
    value *= _GOLDEN
    value ^= _SEED_WORD
    value += chunk
    hashes = mix_array(value)
    rest = np.flatnonzero(lengths > 8)
    j = 1
    while rest.size:
        left = lengths[rest] - 8 * j
        kept = np.minimum(left, 8).astype(np.uint64)
        chunk = eight[first[rest] + 8 * j] & (_ONES >> (_U64(64) - _U64(8) * kept))
        hashes[rest] = mix_array(hashes[rest] + chunk)
        rest = rest[left > 8]
        j += 1
    return hashes, starts


def ngram_hashes(word_hash: np.ndarray, n: int) -> np.ndarray:
    """One uint64 per window of ``n`` consecutive word hashes (``len - n + 1`` of them)."""
    count = word_hash.size - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    multipliers = _multipliers(n)
    total = word_hash[:count] * multipliers[0]
    for j in range(1, n):
        total += word_hash[j : j + count] * multipliers[j]
    total ^= _SEED_NGRAM ^ _U64(n)
    return mix_array(total)


def text_ngram_hashes(text: str, n: int) -> np.ndarray:
    """All n-gram hashes of one document (convenience for tests and probes)."""
    data = np.frombuffer(normalised_bytes(text), dtype=np.uint8)
    hashes, _ = word_hashes(data)
    return ngram_hashes(hashes, n)


# ---------------------------------------------------------------------------------------------
# sizing


def _log_factorials(count: int) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, count, dtype=np.float64)))))


def fp_rate_at_load(load: float, k: int) -> float:
    """False-positive rate of a blocked filter whose blocks hold ``load`` distinct n-grams on
    average: a block holds c of them with probability Poisson(c; load), each of its k words
    then has a given bit set with probability 1 - (63/64)^c, and a new n-gram is a false
    positive when its k bits (one per word) are all set: sum_c P(c) (1 - (63/64)^c)^k."""
    if load <= 0.0:
        return 0.0
    count = np.arange(int(load + 12.0 * math.sqrt(load) + 40.0))
    log_pmf = -load + count * math.log(load) - _log_factorials(count.size)
    per_word = -np.expm1(count * math.log1p(-1.0 / 64.0))
    return float(np.sum(np.exp(log_pmf) * per_word**k))


def fp_rate_from_items(items: float, m: int, k: int) -> float:
    """The expected false-positive rate after ``items`` distinct n-grams (m bits, k per n-gram)."""
    return fp_rate_at_load(items / (m // (64 * k)), k)


def _max_load(fp_rate: float, k: int, steps: int = 60) -> float:
    """The largest average block load that keeps the false-positive rate at most ``fp_rate``."""
    low, high = 0.0, 64.0 * k
    while fp_rate_at_load(high, k) <= fp_rate:
        low, high = high, 2 * high
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if fp_rate_at_load(middle, k) <= fp_rate else (low, middle)
    return low


MAX_HASHES = 64
DEFAULT_HASHES_LIMIT = 32  # more words per block cost build time for a few % of memory


@functools.lru_cache(maxsize=16)
def default_hashes(fp_rate: float) -> int:
    """k for ``fp_rate``: the fewest bits per n-gram whose filter is within 10% of the smallest
    (over k <= 32); at 1e-8 that is 18, a filter 1.31x the size of a classic Bloom filter's."""
    loads = {k: _max_load(fp_rate, k, 24) for k in range(1, DEFAULT_HASHES_LIMIT + 1)}
    bits = {k: 64 * k / load for k, load in loads.items() if load > 0}
    smallest = min(bits.values())
    return min(k for k, per_item in bits.items() if per_item <= 1.1 * smallest)


def optimal_shape(capacity: int, fp_rate: float, hashes: int | None = None) -> tuple[int, int]:
    """(m bits, k bits per n-gram) of the smallest blocked filter that holds ``capacity``
    distinct n-grams at a false-positive rate of at most ``fp_rate`` (see ``fp_rate_at_load``).

    k is ``hashes`` when given (fewer: less work per n-gram, a larger filter), else
    ``default_hashes(fp_rate)``; m is 64 k times the number of blocks.
    """
    if not 0.0 < fp_rate < 1.0:
        raise UsageError(f"--fp-rate must be between 0 and 1 (exclusive), not {fp_rate:g}")
    if capacity < 1:
        raise UsageError(f"--capacity must be at least 1, not {capacity}")
    if hashes is not None and not 1 <= hashes <= MAX_HASHES:
        raise UsageError(f"--hashes must be from 1 to {MAX_HASHES}, not {hashes}")
    k = hashes or default_hashes(fp_rate)
    blocks = max(1, math.ceil(capacity / _max_load(fp_rate, k)))
    return 64 * k * blocks, k


def hll_update(registers: np.ndarray, hashes: np.ndarray) -> None:
    """Add n-gram hashes to HyperLogLog registers (uint8, 2**HLL_PRECISION of them)."""
    if hashes.size == 0:
        return
    x = mix_array(hashes ^ _SEED_HLL)
    index = (x >> _U64(64 - HLL_PRECISION)).astype(np.intp)
    rest_bits = 64 - HLL_PRECISION  # 50 bits: exact in float64
    rest = (x & _U64((1 << rest_bits) - 1)).astype(np.float64)
    _, exponent = np.frexp(rest)  # rest = mantissa * 2**exponent, floor(log2 rest) = exponent - 1
    rank = (rest_bits + 1 - exponent).astype(np.uint8)  # leading zeros + 1; 51 when rest == 0
    higher = rank > registers[index]
    if higher.any():
        np.maximum.at(registers, index[higher], rank[higher])


def hll_estimate(registers: np.ndarray) -> float:
    """HyperLogLog cardinality estimate (with linear counting for small sets)."""
    size = registers.size
    alpha = 0.7213 / (1 + 1.079 / size)
    estimate = alpha * size * size / float(np.sum(np.ldexp(1.0, -registers.astype(np.int64))))
    zeros = int(np.count_nonzero(registers == 0))
    if estimate <= 2.5 * size and zeros:
        estimate = size * math.log(size / zeros)
    return estimate


# ---------------------------------------------------------------------------------------------
# the filter file


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

    @property
    def file_size(self) -> int:
        return DATA_OFFSET + self.m // 8

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
    if len(head) < 8 or head[:8] != MAGIC:
        raise Gpt2Error(
            f"{name}: not a gpt2 overlap filter (bad magic)",
            "build one with `gpt2 overlap build -o FILE`",
        )
    if len(head) < HEADER_SIZE + HLL_REGISTERS:
        raise Gpt2Error(f"{name}: truncated filter file (header incomplete)")
    version = struct.unpack_from("<I", head, 8)[0]
    if version != FORMAT_VERSION:
        raise Gpt2Error(
            f"{name}: filter format version {version}, this gpt2 reads version {FORMAT_VERSION}",
            "rebuild the filter with this version",
        )
    (_, _, norm, n, k, m, capacity, items, bits_set, fp_rate, precision, fill_fp_rate, crc) = (
        struct.unpack_from(HEADER_FORMAT, head, 0)
    )
    registers = np.frombuffer(head[HEADER_SIZE:], dtype=np.uint8).copy()
    if zlib.crc32(registers.tobytes(), zlib.crc32(head[: HEADER_FIELDS - 4])) != crc:
        raise Gpt2Error(f"{name}: corrupt filter header (checksum mismatch)")
    if norm != NORMALISATION_VERSION:
        raise Gpt2Error(
            f"{name}: normalisation version {norm}, this gpt2 uses version {NORMALISATION_VERSION}",
            "rebuild the filter with this version",
        )
    if precision != HLL_PRECISION or k == 0 or m == 0 or m % (64 * k) or n == 0:
        raise Gpt2Error(f"{name}: corrupt filter header")
    header = Header(n, k, m, capacity, fp_rate, items, bits_set, fill_fp_rate, version, norm)
    return header, registers


class BloomFilter:
    """A Bloom filter over a memory-mapped bit array (read-only, or writable while building)."""

    def __init__(
        self, header: Header, registers: np.ndarray, words: np.ndarray, path: Path | None = None
    ) -> None:
        self.header = header
        self.registers = registers
        self.words = words  # little-endian uint64 view of the bit array
        self.path = path
        self.blocks = words.view(np.dtype((np.void, 8 * header.k)))  # one item per block

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BloomFilter:
        """Open an existing filter read-only through a memory map."""
        path = Path(path)
        with open_file(path, "filter file") as handle:  # the map outlives it
            header, registers = _read_header(path, handle)
            size = os.fstat(handle.fileno()).st_size
            if size != header.file_size:
                what = "truncated" if size < header.file_size else "trailing bytes after"
                raise Gpt2Error(
                    f"{path}: {what} filter file ({size:,} bytes, expected {header.file_size:,})"
                )
            mapped = np.memmap(
                handle, dtype="<u8", mode="r", offset=DATA_OFFSET, shape=(header.m // 64,)
            )
        # a plain ndarray view of the map (it keeps the map alive): numpy's memmap subclass
        # adds overhead to every take()
        return cls(header, registers, mapped.view(np.ndarray), path)

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
            mixed[:, i] = mix_array(hashes + _U64(((i + 1) * int(_GOLDEN)) & _MASK64))
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
