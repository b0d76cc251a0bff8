"""Word and n-gram hashes, version 1 (covered by the filter's format version).

Stable: independent of ``PYTHONHASHSEED``, platform and run; all arithmetic is uint64 with
wrap-around, vectorised with numpy; ``mix`` is splitmix64's finaliser (``gpt2cli.splitmix``):

* word: ``h = mix((len * GOLDEN ^ SEED_WORD) + c0)`` then ``h = mix(h + cj)`` for
  j = 1, 2, ... where ``cj`` is bytes 8j..8j+7 of the word's UTF-8 read as a
  little-endian uint64, zero-padded past the word's end;
* n-gram of words w0..w(n-1): ``g = mix((sum_j h(wj) * R_j) ^ SEED_NGRAM ^ n)`` with
  ``R_j = mix(j + 1) | 1``.

Where g puts its bits in the filter is the file's block layout (``filter_file``).
"""

from __future__ import annotations

import numpy as np

from gpt2cli.overlap.normalise import normalised_bytes
from gpt2cli.splitmix import GOLDEN, mix, mix_array

_U64 = np.uint64
_GOLDEN = _U64(GOLDEN)
_SEED_WORD = _U64(0x2545F4914F6CDD1D)
_SEED_NGRAM = _U64(0xD6E8FEB86659FD93)
_ONES = _U64(0xFFFFFFFFFFFFFFFF)


def _multipliers(n: int) -> np.ndarray:
    return np.array([mix(j + 1) | 1 for j in range(n)], dtype=np.uint64)


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
