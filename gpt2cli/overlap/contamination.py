"""Build, merge and check n-gram Bloom filters (the core of ``gpt2 overlap``; no CLI here).

Documents are read as bounded pieces (``gpt2cli.text.readers.iter_pieces``), normalised,
and hashed in batches of about ``BATCH_CHARS`` characters with numpy, so memory
is the filter (memory-mapped) plus a bounded buffer. An n-gram never crosses a
document boundary; it may cross a piece boundary inside one document.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write
from gpt2cli.overlap import bloom
from gpt2cli.text.readers import Piece, iter_documents, iter_pieces

BATCH_CHARS = 1 << 21
CAPACITY_MARGIN = 1.05  # HyperLogLog estimate (std. error 0.8% at p=14) times this


@dataclass(slots=True)
class DocInfo:
    """One document: where it is, and its counts so far."""

    index: int
    source: str
    line: int
    fields: dict | None = None
    text_parts: list[str] | None = None
    ngrams: int = 0
    found: int = 0

    @property
    def text(self) -> str:
        return "".join(self.text_parts or [])


_UNTRACKED = DocInfo(-1, "", 0)  # stands for every document when documents are not tracked


@dataclass
class Batch:
    hashes: np.ndarray  # uint64 n-gram hashes
    doc: np.ndarray  # index into ``docs`` of each n-gram
    docs: list[DocInfo]
    finished: list[DocInfo]  # documents whose last piece is in this batch, in order
    chars: int  # characters of text read in this batch
    nbytes: int  # UTF-8 bytes of text read in this batch


@dataclass
class _Carry:
    doc: DocInfo | None = None
    word_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))


class NgramBatcher:
    """Turns pieces of documents into batches of n-gram hashes."""

    def __init__(
        self, n: int, keep_text: bool = False, batch_chars: int = BATCH_CHARS, track: bool = True
    ) -> None:
        """``keep_text``: keep each document's text and JSON fields (to write it out);
        ``track``: give each document a ``DocInfo`` (off for building: only hashes count)."""
        if n < 1:
            raise UsageError(f"--n must be at least 1, not {n}")
        self.n = n
        self.keep_text = keep_text
        self.track = track or keep_text
        self.batch_chars = batch_chars
        self.documents = 0
        self._carry = _Carry()

    def batches(self, pieces: Iterable[Piece]) -> Iterator[Batch]:
        pending: list[Piece] = []
        size = 0
        for piece in pieces:
            pending.append(piece)
            size += len(piece.text)
            if size >= self.batch_chars:
                yield self._process(pending)
                pending, size = [], 0
        if pending or self._carry.doc is not None:
            yield self._process(pending)

    def _process(self, pieces: list[Piece]) -> Batch:
        n = self.n
        docs: list[DocInfo] = []
        finished: list[DocInfo] = []
        owner: list[int] = []  # index into docs of every piece
        current = self._carry.doc
        if current is not None:
            docs.append(current)
        keep_text, track = self.keep_text, self.track
        for piece in pieces:
            if current is None:
                current = (
                    DocInfo(
                        self.documents,
                        piece.source,
                        piece.line,
                        piece.fields if keep_text else None,
                        [] if keep_text else None,
                    )
                    if track
                    else _UNTRACKED
                )
                self.documents += 1
                docs.append(current)
            if keep_text:
                current.text_parts.append(piece.text)
            owner.append(len(docs) - 1)
            if piece.last:
                finished.append(current)
                current = None
        piece_doc = np.array(owner, dtype=np.int64)
        texts = [piece.text for piece in pieces]
        joined = " ".join(texts)  # a space never joins two words
        lengths = np.fromiter((len(text) + 1 for text in texts), dtype=np.int64, count=len(texts))
        chars = int(lengths.sum()) - len(texts)
        if joined.isascii():  # one translate for the whole batch; offsets are character counts
            buffer = bloom.normalised_bytes(joined)
            nbytes = chars
        else:
            encoded = [bloom.normalised_bytes(text) for text in texts]
            buffer = b" ".join(encoded)
            lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
            nbytes = sum(
                len(text) if text.isascii() else len(text.encode("utf-8")) for text in texts
            )
        piece_start = np.concatenate(([0], np.cumsum(lengths)[:-1])) if texts else lengths
        data = np.frombuffer(buffer, dtype=np.uint8)
        word_hash, starts = bloom.word_hashes(data)
        word_doc = piece_doc[np.searchsorted(piece_start, starts, side="right") - 1]
        carried = self._carry.word_hashes
        if carried.size:
            word_hash = np.concatenate((carried, word_hash))
            word_doc = np.concatenate((np.zeros(carried.size, dtype=np.int64), word_doc))
        hashes = bloom.ngram_hashes(word_hash, n)
        doc = word_doc[: hashes.size]
        if n > 1 and hashes.size:
            same = doc == word_doc[n - 1 :]
            hashes, doc = hashes[same], doc[same]
        # the document still open at the end of the batch carries its last n-1 words over
        if current is not None and n > 1:
            mine = word_hash[word_doc == len(docs) - 1]
            self._carry = _Carry(current, mine[-(n - 1) :].copy())
        else:
            self._carry = _Carry(current)
        return Batch(hashes, doc, docs, finished, chars, nbytes)


def open_pieces(
    inputs: list[str], fmt: str | None, field_name: str, delimiter: str, errors: str
) -> Iterator[Piece]:
    return iter_pieces(inputs, fmt, field_name, delimiter, errors)


def document_pieces(
    inputs: list[str], fmt: str | None, field_name: str, delimiter: str, errors: str
) -> Iterator[Piece]:
    """Whole documents as single pieces (when each document's text is needed whole)."""
    for document in iter_documents(inputs, fmt, field_name, delimiter, errors):
        yield Piece(document.text, True, document.source, document.line, document.fields)


# ---------------------------------------------------------------------------------------------
# build


@dataclass
class BuildResult:
    header: bloom.Header
    documents: int
    nbytes: int
    distinct_estimate: float
    capacity_from: str  # "option" or "estimate"
    seconds_counting: float = 0.0


def estimate_distinct(
    pieces: Iterable[Piece], n: int, on_batch: Callable[[Batch], None] | None = None
) -> tuple[float, int, int]:
    """(HyperLogLog estimate of distinct n-grams, documents, bytes) in one pass."""
    registers = np.zeros(bloom.HLL_REGISTERS, dtype=np.uint8)
    batcher = NgramBatcher(n, track=False)
    nbytes = 0
    for batch in batcher.batches(pieces):
        bloom.hll_update(registers, batch.hashes)
        nbytes += batch.nbytes
        if on_batch:
            on_batch(batch)
    return bloom.hll_estimate(registers), batcher.documents, nbytes


def capacity_from_estimate(estimate: float) -> int:
    return max(1, math.ceil(estimate * CAPACITY_MARGIN))


def spool_stdin(directory: Path) -> Path:
    """Copy stdin into a hidden temp file in ``directory`` (stdin cannot be read twice)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".gpt2-overlap-stdin.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 22)
    return Path(name)


def build_filter(
    pieces: Callable[[], Iterable[Piece]],
    output: Path,
    n: int,
    fp_rate: float,
    capacity: int | None,
    on_batch: Callable[[Batch], None] | None = None,
    on_pass: Callable[[str], None] | None = None,
    in_memory: bool | None = None,
    hashes: int | None = None,
) -> BuildResult:
    """Build a filter from ``pieces()`` (called twice when the capacity must be counted first)."""
    if not 0.0 < fp_rate < 1.0:
        raise UsageError(f"--fp-rate must be between 0 and 1 (exclusive), not {fp_rate:g}")
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}")
    if hashes is not None:
        bloom.optimal_shape(1, fp_rate, hashes)  # validate before any counting pass
    capacity_from = "option"
    if capacity is None:
        if on_pass:
            on_pass("count")
        estimate, documents, _ = estimate_distinct(pieces(), n, on_batch)
        if estimate < 0.5:
            what = "no documents" if documents == 0 else f"{documents:,} documents but no {n}-grams"
            raise Gpt2Error(
                f"empty input: {what}, nothing to size the filter from",
                f"documents need at least {n} words; or give --capacity to write an empty filter",
            )
        capacity = capacity_from_estimate(estimate)
        capacity_from = "estimate"
    m, k = bloom.optimal_shape(capacity, fp_rate, hashes)
    header = bloom.Header(n=n, k=k, m=m, capacity=capacity, fp_rate=fp_rate)
    if on_pass:
        on_pass("build")
    batcher = NgramBatcher(n, track=False)
    nbytes = 0
    with atomic_write(output, "w+b") as handle:
        bloom_filter = bloom.BloomFilter.create(handle, header, in_memory)
        for batch in batcher.batches(pieces()):
            bloom_filter.add(batch.hashes)
            nbytes += batch.nbytes
            if on_batch:
                on_batch(batch)
        bloom_filter.finish(handle)
        distinct = bloom_filter.distinct_estimate
        del bloom_filter
    return BuildResult(header, batcher.documents, nbytes, distinct, capacity_from)


# ---------------------------------------------------------------------------------------------
# merge


def merge_filters(inputs: list[str], output: Path) -> tuple[bloom.Header, float]:
    """OR of filters with the same n, m, k and normalisation; written atomically to ``output``."""
    if not inputs:
        raise UsageError("merge needs at least one filter file")
    filters = [bloom.BloomFilter.open(name) for name in inputs]
    first = filters[0]
    for other in filters[1:]:
        if other.header.shape() != first.header.shape():
            raise Gpt2Error(
                f"cannot merge {other.path} ({other.header.describe()}) with {first.path} "
                f"({first.header.describe()}): filters differ in shape",
                "build every part with the same --n, --capacity and --fp-rate",
            )
    header = bloom.Header(
        n=first.header.n,
        k=first.header.k,
        m=first.header.m,
        capacity=max(f.header.capacity for f in filters),
        fp_rate=first.header.fp_rate,
        items=sum(f.header.items for f in filters),
    )
    registers = first.registers.copy()
    for other in filters[1:]:
        np.maximum(registers, other.registers, out=registers)
    with atomic_write(output, "w+b") as handle:
        merged = bloom.BloomFilter.create(handle, header)
        merged.registers[:] = registers
        for part in bloom.iter_chunks(merged.words.size):
            block = np.array(first.words[part])
            for other in filters[1:]:
                block |= other.words[part]
            merged.words[part] = block
        merged.finish(handle)
        distinct = merged.distinct_estimate
        del merged
    return header, distinct


# ---------------------------------------------------------------------------------------------
# check


@dataclass
class Counts:
    name: str
    ngrams: int = 0
    found: int = 0
    documents: int = 0
    line: int | None = None
    index: int | None = None

    @property
    def fraction(self) -> float | None:
        return self.found / self.ngrams if self.ngrams else None

    @property
    def percent(self) -> float | None:
        return None if self.fraction is None else 100.0 * self.fraction


def check_batches(
    bloom_filter: bloom.BloomFilter, batches: Iterable[Batch]
) -> Iterator[tuple[Batch, list[DocInfo]]]:
    """Count n-grams and found n-grams per document; yields each batch's finished documents."""
    for batch in batches:
        if batch.hashes.size:
            found = bloom_filter.contains(batch.hashes)
            totals = np.bincount(batch.doc, minlength=len(batch.docs))
            hits = np.bincount(batch.doc[found], minlength=len(batch.docs))
            for info, total, hit in zip(batch.docs, totals.tolist(), hits.tolist()):
                info.ngrams += total
                info.found += hit
        yield batch, batch.finished


@dataclass
class ProbeResult:
    probes: int
    false_positives: int
    estimated_fp_rate: float

    @property
    def measured_fp_rate(self) -> float:
        return self.false_positives / self.probes if self.probes else 0.0


PROBE_WORD_CHARS = 12
_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)


def probe(
    bloom_filter: bloom.BloomFilter, count: int, seed: int = 0, chunk: int = 1 << 20
) -> ProbeResult:
    """Query ``count`` random n-grams (random 12-character words) and count the hits.

    Random words of 36**12 possibilities almost surely never occur in real text, so
    every hit is a false positive. Overlapping windows of one random word stream
    give ``count`` distinct n-grams from ``count + n - 1`` words.
    """
    if count < 1:
        raise UsageError(f"--probe must be a positive number, not {count}")
    n = bloom_filter.header.n
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    tail = np.zeros(0, dtype=np.uint64)
    while done < count:
        take = min(chunk, count - done)
        need = take + n - 1 - tail.size
        letters = _ALPHABET[rng.integers(0, _ALPHABET.size, (need, PROBE_WORD_CHARS + 1))]
        letters[:, -1] = 32
        word_hash, _ = bloom.word_hashes(letters.reshape(-1))
        word_hash = np.concatenate((tail, word_hash))
        hashes = bloom.ngram_hashes(word_hash, n)[:take]
        hits += int(np.count_nonzero(bloom_filter.contains(hashes)))
        tail = word_hash[-(n - 1) :] if n > 1 else np.zeros(0, dtype=np.uint64)
        done += take
    return ProbeResult(count, hits, bloom_filter.estimated_fp_rate)
