"""Documents to batches of n-gram hashes, each n-gram tagged with its document.

Documents are read as bounded pieces (``gpt2cli.text.readers.iter_pieces``), normalised,
and hashed in batches of about ``BATCH_CHARS`` characters with numpy, so memory
is the filter (memory-mapped) plus a bounded buffer. An n-gram never crosses a
document boundary; it may cross a piece boundary inside one document.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gpt2cli.errors import UsageError
from gpt2cli.overlap.hashing import ngram_hashes, word_hashes
from gpt2cli.overlap.normalise import normalised_bytes
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.readers import Piece

BATCH_CHARS = 1 << 21


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
            buffer = normalised_bytes(joined)
            nbytes = chars
        else:
            encoded = [normalised_bytes(text) for text in texts]
            buffer = b" ".join(encoded)
            lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
            nbytes = sum(
                len(text) if text.isascii() else len(text.encode("utf-8")) for text in texts
            )
        piece_start = np.concatenate(([0], np.cumsum(lengths)[:-1])) if texts else lengths
        data = np.frombuffer(buffer, dtype=np.uint8)
        word_hash, starts = word_hashes(data)
        word_doc = piece_doc[np.searchsorted(piece_start, starts, side="right") - 1]
        carried = self._carry.word_hashes
        if carried.size:
            word_hash = np.concatenate((carried, word_hash))
            word_doc = np.concatenate((np.zeros(carried.size, dtype=np.int64), word_doc))
        hashes = ngram_hashes(word_hash, n)
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


def document_pieces(inputs: list[str], reading: ReadOptions) -> Iterator[Piece]:
    """Whole documents as single pieces (when each document's text is needed whole)."""
    for document in reading.documents(inputs):
        yield Piece(document.text, True, document.source, document.line, document.fields)
