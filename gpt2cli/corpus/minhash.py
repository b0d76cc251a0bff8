"""MinHash signatures of word n-grams, computed for a batch of documents at once in numpy.

Normalisation: the text is lower-cased (``str.lower``) and split into words, maximal runs of
word characters: ASCII letters and digits and every other character except U+0080-U+00BF
(Latin-1 controls and symbols), U+2000-U+207F (general punctuation, spaces, dashes, quotes)
and U+3000-U+303F (CJK punctuation). A shingle is ``ngram`` consecutive words of one
document; a document with fewer words has one shingle, all its words.

Hashing works on the UTF-8 bytes of the whole batch: a word's hash is the polynomial
``sum(b_j * P^j)`` (mod 2^64) over its bytes, computed from one prefix sum for every word at
once, then mixed with splitmix64; a shingle's hash combines its words' hashes the same way.

The signature is one-permutation MinHash (Li, Owen and Zhang, 2012) with optimal
densification (Shrivastava, 2017), each shingle put in ``COPIES`` bins: each of its
``COPIES`` 64-bit hashes chooses one of ``num_perm`` bins by its top bits, and its low 32
bits are the value; a signature holds each bin's minimum, and a bin still empty borrows the
minimum of the first non-empty bin on its own fixed probe sequence. Two documents agree in a
bin with probability equal to their Jaccard similarity, as with ``num_perm`` independent
permutations, for two hashes per shingle instead of ``num_perm``. (With one copy a document
of 150 shingles leaves a third of 128 bins to densification, whose copies make bands agree
together: measured, recall at J = 0.6 fell 1 point below the S-curve; two copies hold it.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gpt2cli.splitmix import MASK64, mix, mix_array

EMPTY = np.uint32(0xFFFFFFFF)
_P = 0x100000001B3  # the FNV-64 prime: odd, so invertible modulo 2^64
_P_INV = pow(_P, -1, 1 << 64)
_Q = 0x9E3779B97F4A7C15  # combines the words of a shingle
_WORD_TAG = 0x243F6A8885A308D3
_SEPARATOR = b"\n"
COPIES = 2  # bins each shingle goes to: fewer empty bins in short documents
_COPY_SALT = 0x6A09E667F3BCC909
WORD_PATTERN = re.compile("[0-9a-z\u00c0-\u1fff\u2080-\u2fff\u3040-\U0010ffff]+")


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (the reference the numpy path is tested against)."""
    return WORD_PATTERN.findall(text.lower())


def shingles(text: str, ngram: int) -> set[tuple[str, ...]]:
    """The word n-grams of ``text`` as a set (reference; a short document has one)."""
    found = words(text)
    if len(found) < ngram:
        return {tuple(found)} if found else set()
    return {tuple(found[i : i + ngram]) for i in range(len(found) - ngram + 1)}


def word_hash(word: str) -> int:
    """One word's 64-bit hash, as the batch computes it."""
    value = 0
    for j, byte in enumerate(word.encode("utf-8", "surrogatepass")):
        value = (value + (byte + 1) * pow(_P, j, 1 << 64)) & MASK64
    return mix(value ^ _WORD_TAG)


def shingle_hash(shingle: Sequence[str]) -> int:
    """One shingle's 64-bit hash, as the batch computes it."""
    value = 0
    for k, word in enumerate(shingle):
        value = (value + word_hash(word) * pow(_Q, k, 1 << 64)) & MASK64
    return mix(value)


def _byte_classes() -> np.ndarray:
    """For each byte: 1 word character, 0 separator, 2 UTF-8 continuation, 3/4/5 a lead byte
    whose class depends on the next byte (C2, E2, E3)."""
    table = np.zeros(256, dtype=np.uint8)
    for byte in b"0123456789abcdefghijklmnopqrstuvwxyz":
        table[byte] = 1
    table[0x80:0xC0] = 2
    table[0xC3:0x100] = 1
    table[0xC2], table[0xE2], table[0xE3] = 3, 4, 5
    return table


_CLASSES = _byte_classes()


@lru_cache(maxsize=4)
def _powers(base: int, size: int) -> np.ndarray:
    powers = np.full(size, base, dtype=np.uint64)
    powers[0] = 1
    return np.cumprod(powers, dtype=np.uint64)


def _positions(size: int, starts: np.ndarray) -> np.ndarray:
    """Each element's distance from the last of ``starts`` (ascending, ``starts[0] == 0``)
    at or before it."""
    last = np.zeros(size, dtype=np.int64)
    last[starts] = starts
    np.maximum.accumulate(last, out=last)
    return np.arange(size, dtype=np.int64) - last


def _word_mask(data: np.ndarray) -> np.ndarray:
    """Whether each byte belongs to a word (see the module's normalisation)."""
    classes = _CLASSES[data]
    lead = classes >= 3
    if lead.any():
        following = np.empty_like(data)
        following[:-1] = data[1:]
        following[-1] = 0
        separator = (
            (classes == 3)
            | ((classes == 4) & ((following == 0x80) | (following == 0x81)))
            | ((classes == 5) & (following == 0x80))
        )
        classes = np.where(lead, np.where(separator, 0, 1).astype(np.uint8), classes)
    # a continuation byte takes the class of its character's lead byte (at most 3 back)
    for _ in range(3):
        continuation = classes == 2
        if not continuation.any():
            break
        shifted = np.empty_like(classes)
        shifted[1:] = classes[:-1]
        shifted[0] = 0
        classes = np.where(continuation, shifted, classes)
    return classes == 1


@dataclass
class Words:
    """The words of a batch: ``hashes[i]`` is word ``i``'s hash, ``doc[i]`` its document."""

    hashes: np.ndarray  # uint64
    doc: np.ndarray  # int64
    counts: np.ndarray  # words per document


def batch_words(texts: Sequence[str]) -> Words:
    """Every word hash of a batch, in order, from one pass over its UTF-8 bytes."""
    encoded = [text.lower().encode("utf-8", "surrogatepass") for text in texts]
    lengths = np.fromiter((len(item) + 1 for item in encoded), dtype=np.int64, count=len(encoded))
    data = np.frombuffer(_SEPARATOR.join(encoded) + _SEPARATOR, dtype=np.uint8)
    doc_of_byte_start = np.concatenate(([0], np.cumsum(lengths)))
    is_word = _word_mask(data)
    edges = np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    word_lengths = np.flatnonzero(edges == -1) - starts
    if len(starts) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Words(empty.astype(np.uint64), empty, np.zeros(len(texts), dtype=np.int64))
    # sum((b_j + 1) * P^j) over each word's bytes, j counted from the word's start
    word_bytes = data[is_word]
    packed_starts = np.cumsum(word_lengths) - word_lengths
    position = _positions(len(word_bytes), packed_starts)
    with np.errstate(over="ignore"):
        powers = _powers(_P, 1 << max(6, int(word_lengths.max() - 1).bit_length()))
        weighted = (word_bytes.astype(np.uint64) + np.uint64(1)) * powers[position]
        raw = np.add.reduceat(weighted, packed_starts)
        hashes = mix_array(raw ^ np.uint64(_WORD_TAG))
    doc = np.searchsorted(doc_of_byte_start, starts, side="right") - 1
    return Words(hashes, doc, np.bincount(doc, minlength=len(texts)))


def shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Every shingle hash of a batch: ``(hashes, document)``, uint64 and int64 arrays."""
    return words_to_shingles(batch_words(texts), ngram)


def words_to_shingles(found: Words, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    word, doc, counts = found.hashes, found.doc, found.counts
    first_word = np.concatenate(([0], np.cumsum(counts)[:-1]))
    with np.errstate(over="ignore"):
        # full shingles: words i .. i+ngram-1 of one document
        total = len(word)
        span = max(total - ngram + 1, 0)
        full = np.zeros(span, dtype=np.uint64)
        for k in range(ngram):
            full += word[k : k + span] * np.uint64(pow(_Q, k, 1 << 64))
        valid = doc[:span] == doc[ngram - 1 : ngram - 1 + span] if span else np.zeros(0, bool)
        hashes = [full[valid]]
        owners = [doc[:span][valid]]
        # a short document (1 .. ngram-1 words): one shingle of all its words
        short = np.flatnonzero((counts > 0) & (counts < ngram))
        if len(short):
            position = np.arange(total) - first_word[doc]
            weights = _powers(_Q, ngram)[np.minimum(position, ngram - 1)]
            in_short = np.isin(doc, short)
            summed = np.zeros(len(counts), dtype=np.uint64)
            np.add.at(summed, doc[in_short], word[in_short] * weights[in_short])
            hashes.append(summed[short])
            owners.append(short)
        return mix_array(np.concatenate(hashes)), np.concatenate(owners)


@lru_cache(maxsize=8)
def _probe_table(num_perm: int, attempts: int) -> np.ndarray:
    """Bin ``j``'s densification probes: ``table[j, t]`` is the bin tried at attempt ``t``."""
    j = np.arange(num_perm, dtype=np.uint64)[:, None]
    t = np.arange(attempts, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        keys = mix_array(j * np.uint64(0x100000001) + t + np.uint64(0x5851F42D4C957F2D))
    return (keys % np.uint64(num_perm)).astype(np.int64)


def signatures(found: Words, ngram: int, num_perm: int) -> np.ndarray:
    """``(documents, num_perm)`` uint32 signatures; a document without words gets all EMPTY."""
    hashes, owner = words_to_shingles(found, ngram)
    documents = len(found.counts)
    signature = np.full(documents * num_perm, EMPTY, dtype=np.uint32)
    base = owner * num_perm
    for copy in range(COPIES):
        hashed = hashes if copy == 0 else mix_array(hashes ^ np.uint64(_COPY_SALT * copy))
        bins = ((hashed >> np.uint64(32)) * np.uint64(num_perm)) >> np.uint64(32)
        values = (hashed & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        np.minimum.at(signature, base + bins.astype(np.int64), values)
    signature = signature.reshape(documents, num_perm)
    return densify(signature)


def densify(signature: np.ndarray) -> np.ndarray:
    """Fill empty bins from the first non-empty bin of each bin's probe sequence."""
    num_perm = signature.shape[1]
    original = signature.copy()
    filled = original != EMPTY
    has_any = filled.any(axis=1)
    rows, cols = np.nonzero(~filled & has_any[:, None])
    attempts = 4 * num_perm
    attempt = 0
    while len(rows):
        if attempt == attempts:
            attempts *= 2
        probe = _probe_table(num_perm, attempts)[cols, attempt]
        hit = filled[rows, probe]
        signature[rows[hit], cols[hit]] = original[rows[hit], probe[hit]]
        rows, cols = rows[~hit], cols[~hit]
        attempt += 1
    return signature


def document_keys(found: Words) -> np.ndarray:
    """One 64-bit key per document from its sequence of words (0 for a document without)."""
    first = np.cumsum(found.counts) - found.counts
    position = _positions(len(found.doc), first[found.counts > 0])
    keys = np.zeros(len(found.counts), dtype=np.uint64)
    nonempty = found.counts > 0
    if nonempty.any():
        with np.errstate(over="ignore"):
            salted = mix_array(found.hashes + position.astype(np.uint64) * np.uint64(_Q))
            keys[nonempty] = mix_array(np.add.reduceat(salted, first[nonempty]))
    return keys


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(documents, bands)`` uint64 LSH keys: band ``b`` hashes bins ``b*rows .. b*rows+rows-1``
    together with ``b``, so equal keys mean an equal band."""
    documents = signature.shape[0]
    keys = np.zeros((documents, bands), dtype=np.uint64)
    used = signature[:, : bands * rows].astype(np.uint64).reshape(documents, bands, rows)
    with np.errstate(over="ignore"):
        for r in range(rows):
            keys = mix_array(keys ^ used[:, :, r])
        keys = mix_array(keys + np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(_Q))
    return keys


def band_parameters(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows for a Jaccard threshold: the ``(b, r)`` with ``b * r <= num_perm`` that
    minimise the area of false positives below the threshold plus false negatives above it
    under the S-curve ``1 - (1 - s^r)^b`` (the rule datasketch's MinHashLSH uses)."""
    pairs = np.array(
        [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=float
    )
    nodes, weights = np.polynomial.legendre.leggauss(64)

    def integral(low: float, high: float, function) -> np.ndarray:
        points = (high - low) / 2 * nodes + (high + low) / 2
        return function(points[None, :]) @ weights * (high - low) / 2

    b, r = pairs[:, 0:1], pairs[:, 1:2]
    false_positive = integral(0.0, threshold, lambda s: 1.0 - (1.0 - s**r) ** b)
    false_negative = integral(threshold, 1.0, lambda s: (1.0 - s**r) ** b)
    best = int(np.argmin(0.5 * false_positive + 0.5 * false_negative))
    return int(pairs[best, 0]), int(pairs[best, 1])
