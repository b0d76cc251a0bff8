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
* bit positions (double hashing): ``a = g mod m``, ``b = 1 + mix(g ^ SEED_STEP) mod (m - 1)``,
  position i = ``(a + i*b) mod m`` for i = 0..k-1.

Filter file, version 1 (little-endian); see ``HEADER_FORMAT`` and docs/overlap.md:

    offset  size   field
    0       8      magic b"G2BLOOM\\x1a"
    8       4      format version (1; covers the hashing scheme)
    12      4      normalisation version (1)
    16      4      n (words per n-gram)
    20      4      k (hash functions)
    24      8      m (bits in the bit array, a multiple of 64)
    32      8      capacity (distinct n-grams the filter was sized for)
    40      8      items added (n-grams inserted, repeats counted)
    48      8      bits set (population count of the bit array)
    56      8      target false-positive rate (float64)
    64      4      HyperLogLog precision p (14)
    68      4      CRC-32 of bytes 0..67 and of the HLL registers
    72      56     zero
    128     2**p   HyperLogLog registers (uint8), distinct n-gram estimate
    20480   m/8    the bit array: bit i is bit (i % 8) of byte i // 8
"""

from __future__ import annotations

import errno
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

MAGIC = b"G2BLOOM\x1a"
FORMAT_VERSION = 1
NORMALISATION_VERSION = 1
HEADER_FORMAT = "<8sIIIIQQQQdII"
HEADER_FIELDS = struct.calcsize(HEADER_FORMAT)  # 72
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

_C1 = _U64(0xBF58476D1CE4E5B9)
_C2 = _U64(0x94D049BB133111EB)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_SEED_WORD = _U64(0x2545F4914F6CDD1D)
_SEED_NGRAM = _U64(0xD6E8FEB86659FD93)
_SEED_STEP = _U64(0xA0761D6478BD642F)
_SEED_HLL = _U64(0xE7037ED1A0B428DB)
_S30, _S27, _S31 = _U64(30), _U64(27), _U64(31)


def _mix_int(x: int) -> int:
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (in place when ``x`` is a temporary)."""
    x = x ^ (x >> _S30)
    x *= _C1
    x ^= x >> _S27
    x *= _C2
    x ^= x >> _S31
    return x


_SIX, _LOW6, _EXPONENT = _U64(6), _U64(63), _U64(1023)
_FIFTY_TWO = _U64(52)


def bit_masks(position: np.ndarray) -> np.ndarray:
    """``1 << (position % 64)`` as uint64, built as the float 2**s (numpy's shift is slow)."""
    exponent = position & _LOW6
    exponent += _EXPONENT
    exponent <<= _FIFTY_TWO
    return exponent.view(np.float64).astype(np.uint64)


def _advance(position: np.ndarray, step: np.ndarray, m: np.uint64) -> None:
    """``position = (position + step) % m`` in place, for position, step < m < 2**63."""
    position += step
    np.minimum(position, position - m, out=position)  # position - m wraps above when < m


def _multipliers(n: int) -> np.ndarray:
    return np.array([_mix_int(j + 1) | 1 for j in range(n)], dtype=np.uint64)


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
    hashes = mix64(value)
    rest = np.flatnonzero(lengths > 8)
    j = 1
    while rest.size:
        left = lengths[rest] - 8 * j
        kept = np.minimum(left, 8).astype(np.uint64)
        chunk = eight[first[rest] + 8 * j] & (_ONES >> (_U64(64) - _U64(8) * kept))
        hashes[rest] = mix64(hashes[rest] + chunk)
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
    return mix64(total)


def text_ngram_hashes(text: str, n: int) -> np.ndarray:
    """All n-gram hashes of one document (convenience for tests and probes)."""
    data = np.frombuffer(normalised_bytes(text), dtype=np.uint8)
    hashes, _ = word_hashes(data)
    return ngram_hashes(hashes, n)


# ---------------------------------------------------------------------------------------------
# sizing


def optimal_shape(capacity: int, fp_rate: float, hashes: int | None = None) -> tuple[int, int]:
    """(m bits rounded up to a multiple of 64, k hashes) for ``capacity`` items at ``fp_rate``.

    By default the optimum: m = -n ln p / (ln 2)^2 and k = (m / n) ln 2 rounded to the
    nearest integer (at least 1). With ``hashes`` (fewer than optimal: fewer memory
    accesses, a faster build) k is that number and m the least size that still keeps
    (1 - e^(-k n / m))^k <= p: m = -k n / ln(1 - p^(1/k)).
    """
    if not 0.0 < fp_rate < 1.0:
        raise UsageError(f"--fp-rate must be between 0 and 1 (exclusive), not {fp_rate:g}")
    if capacity < 1:
        raise UsageError(f"--capacity must be at least 1, not {capacity}")
    if hashes is not None:
        if not 1 <= hashes <= 64:
            raise UsageError(f"--hashes must be from 1 to 64, not {hashes}")
        raw = -hashes * capacity / math.log1p(-(fp_rate ** (1.0 / hashes)))
        return max(64, 64 * math.ceil(raw / 64)), hashes
    raw = -capacity * math.log(fp_rate) / (math.log(2) ** 2)
    m = max(64, 64 * math.ceil(raw / 64))
    k = max(1, round(m / capacity * math.log(2)))
    return m, k


def fp_rate_from_fill(bits_set: int, m: int, k: int) -> float:
    """Probability that a new item finds all its k bits set, at the current fill."""
    return (bits_set / m) ** k if m else 1.0


def fp_rate_from_items(items: float, m: int, k: int) -> float:
    """The textbook estimate (1 - e^(-k n / m))^k."""
    return (1.0 - math.exp(-k * items / m)) ** k


def hll_update(registers: np.ndarray, hashes: np.ndarray) -> None:
    """Add n-gram hashes to HyperLogLog registers (uint8, 2**HLL_PRECISION of them)."""
    if hashes.size == 0:
        return
    x = mix64(hashes ^ _SEED_HLL)
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
    format_version: int = FORMAT_VERSION
    normalisation_version: int = NORMALISATION_VERSION

    @property
    def file_size(self) -> int:
        return DATA_OFFSET + self.m // 8

    def pack(self, registers: np.ndarray) -> bytes:
        fields = struct.pack(
            "<8sIIIIQQQQdI", MAGIC, self.format_version, self.normalisation_version, self.n,
            self.k, self.m, self.capacity, self.items, self.bits_set, self.fp_rate, HLL_PRECISION,
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
        raise Gpt2Error(f"{name}: not a gpt2 overlap filter (bad magic)",
                        "build one with `gpt2 overlap build -o FILE`")
    if len(head) < HEADER_SIZE + HLL_REGISTERS:
        raise Gpt2Error(f"{name}: truncated filter file (header incomplete)")
    version = struct.unpack_from("<I", head, 8)[0]
    if version != FORMAT_VERSION:
        raise Gpt2Error(f"{name}: filter format version {version}, this gpt2 reads version "
                        f"{FORMAT_VERSION}", "rebuild the filter with this version")
    (_, _, norm, n, k, m, capacity, items, bits_set, fp_rate, precision,
     crc) = struct.unpack_from(HEADER_FORMAT, head, 0)
    registers = np.frombuffer(head[HEADER_SIZE:], dtype=np.uint8).copy()
    if zlib.crc32(registers.tobytes(), zlib.crc32(head[: HEADER_FIELDS - 4])) != crc:
        raise Gpt2Error(f"{name}: corrupt filter header (checksum mismatch)")
    if norm != NORMALISATION_VERSION:
        raise Gpt2Error(f"{name}: normalisation version {norm}, this gpt2 uses version "
                        f"{NORMALISATION_VERSION}", "rebuild the filter with this version")
    if precision != HLL_PRECISION or m % 64 or m == 0 or k == 0 or n == 0:
        raise Gpt2Error(f"{name}: corrupt filter header")
    header = Header(n, k, m, capacity, fp_rate, items, bits_set, version, norm)
    return header, registers


class BloomFilter:
    """A Bloom filter over a memory-mapped bit array (read-only, or writable while building)."""

    def __init__(self, header: Header, registers: np.ndarray, words: np.ndarray,
                 path: Path | None = None) -> None:
        self.header = header
        self.registers = registers
        self.words = words  # little-endian uint64 view of the bit array
        self.path = path
        self._multipliers = _multipliers(header.n)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BloomFilter:
        """Open an existing filter read-only through a memory map."""
        path = Path(path)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below; the map outlives it
        except FileNotFoundError:
            raise Gpt2Error(f"{path}: no such filter file") from None
        except IsADirectoryError:
            raise Gpt2Error(f"{path}: is a directory, not a filter file") from None
        except PermissionError:
            raise Gpt2Error(f"{path}: permission denied") from None
        with handle:
            header, registers = _read_header(path, handle)
            size = os.fstat(handle.fileno()).st_size
            if size != header.file_size:
                what = "truncated" if size < header.file_size else "trailing bytes after"
                raise Gpt2Error(f"{path}: {what} filter file ({size:,} bytes, expected "
                                f"{header.file_size:,})")
            mapped = np.memmap(handle, dtype="<u8", mode="r", offset=DATA_OFFSET,
                               shape=(header.m // 64,))
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
            words = np.memmap(handle, dtype="<u8", mode="r+", offset=DATA_OFFSET,
                              shape=(header.m // 64,))
        return cls(header, registers, words)

    def finish(self, handle) -> None:
        """Count the set bits, write or flush the bit array and rewrite the header."""
        self.header.bits_set = popcount(self.words)
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

    def _start(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = _U64(self.header.m)
        first = hashes % m
        step = mix64(hashes ^ _SEED_STEP)
        step %= _U64(self.header.m - 1)
        step += _U64(1)
        return first, step

    def positions(self, hashes: np.ndarray) -> np.ndarray:
        """All k bit positions of each hash, shape (len, k) (for tests and documentation)."""
        position, step = self._start(hashes)
        m = _U64(self.header.m)
        out = np.empty((hashes.size, self.header.k), dtype=np.uint64)
        for i in range(self.header.k):
            out[:, i] = position
            position = position.copy()
            _advance(position, step, m)
        return out

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
        words = self.words
        m = _U64(self.header.m)
        position, step = self._start(hashes)
        for i in range(self.header.k):
            index = (position >> _SIX).astype(np.intp)
            mask = bit_masks(position)
            current = words.take(index)
            current |= mask
            words[index] = current  # duplicate indices: the last write wins...
            lost = (words.take(index) & mask) == 0
            if lost.any():  # ...so redo those few with an unbuffered OR
                np.bitwise_or.at(words, index[lost], mask[lost])
            if i + 1 < self.header.k:
                _advance(position, step, m)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean array: True where all k bits are set (present, or a false positive)."""
        found = np.zeros(hashes.size, dtype=bool)
        for start in range(0, hashes.size, ADD_CHUNK):
            part = hashes[start : start + ADD_CHUNK]
            found[start + self._contains(part)] = True
        return found

    def _contains(self, hashes: np.ndarray) -> np.ndarray:
        """Indices of the hashes whose k bits are all set; stops probing a hash at its first 0."""
        words = self.words
        m = _U64(self.header.m)
        position, step = self._start(hashes)
        alive = np.arange(hashes.size)
        for i in range(self.header.k):
            bits = words.take((position >> _SIX).astype(np.intp))
            bits &= bit_masks(position)
            keep = bits != 0
            if not keep.all():
                alive, position, step = alive[keep], position[keep], step[keep]
                if alive.size == 0:
                    break
            if i + 1 < self.header.k:
                _advance(position, step, m)
        return alive

    # -- reporting -------------------------------------------------------------------------

    @property
    def fill(self) -> float:
        return self.header.bits_set / self.header.m

    @property
    def estimated_fp_rate(self) -> float:
        return fp_rate_from_fill(self.header.bits_set, self.header.m, self.header.k)

    @property
    def distinct_estimate(self) -> float:
        """HyperLogLog estimate of the distinct n-grams added (never above ``items``)."""
        return min(hll_estimate(self.registers), float(self.header.items))


ADD_CHUNK = 1 << 14  # n-grams per round of k bit updates (keeps re-reads in cache)
CHUNK_WORDS = 1 << 23  # 64 MiB of bit array at a time


def iter_chunks(total: int, chunk: int = CHUNK_WORDS) -> Iterator[slice]:
    for start in range(0, total, chunk):
        yield slice(start, min(start + chunk, total))


def popcount(words: np.ndarray) -> int:
    count = 0
    for part in iter_chunks(words.size):
        count += int(np.bitwise_count(np.asarray(words[part])).sum(dtype=np.int64))
    return count


def _reserve(handle, size: int) -> None:
    """Allocate the file's disk blocks now: a full disk fails here, with a message, rather
    than as SIGBUS in the middle of writing through the memory map."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise Gpt2Error(f"no room for a {size:,}-byte filter file: {error.strerror}",
                            "free disk space or write the filter elsewhere") from None
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
