"""Scoring a corpus document by document, as ``gpt2 score`` does: reading the inputs (documents
in any format `gpt2 tokenize` reads, or token streams), scoring them in chunks of about
``CHUNK_TOKENS`` tokens, and counting each document's and the corpus's tokens, characters,
bytes, words and nll (:class:`~gpt2cli.infer.scoring.DocumentMetrics`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from gpt2cli.data import llmc
from gpt2cli.fileio import open_binary_input
from gpt2cli.infer import scoring
from gpt2cli.text import token_stream
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.tokenizer import EOT, decode_bytes, encode

CHUNK_TOKENS = 1 << 18  # documents are read and scored in chunks of about this many tokens


@dataclass
class Document:
    ids: list[int]
    text: str
    source: str
    line: int | None  # None for a token stream


@dataclass
class ScoredDocument:
    number: int  # 1-based, over all inputs
    document: Document
    score: scoring.SequenceScore
    metrics: scoring.DocumentMetrics


@dataclass
class Totals:
    """What the documents scored so far add up to."""

    documents: int = 0
    tokens: int = 0
    characters: int = 0
    bytes: int = 0
    words: int = 0
    nll: float = 0.0

    def add(self, metrics: scoring.DocumentMetrics) -> None:
        self.documents += 1
        self.tokens += metrics.tokens
        self.characters += metrics.characters
        self.bytes += metrics.bytes
        self.words += metrics.words
        self.nll += metrics.nll

    def metrics(self) -> scoring.DocumentMetrics:
        return scoring.document_metrics(
            self.nll, self.tokens, self.characters, self.bytes, self.words
        )


def read_documents(inputs: list[str], reading: ReadOptions) -> Iterator[Document]:
    """The documents of each input ('-' is stdin): a token stream's or an llm.c token file's
    documents, else the documents `gpt2 tokenize` reads from it (as ``reading`` says),
    encoded."""
    for name in inputs:
        handle = open_binary_input(name)
        source = "<stdin>" if name == "-" else name
        peek = getattr(handle, "peek", None)
        head = peek(len(token_stream.MAGIC))[: len(token_stream.MAGIC)] if peek else b""
        if token_stream.looks_like_token_stream(head) or llmc.looks_like_llmc(head):
            if llmc.looks_like_llmc(head):
                arrays = llmc.documents(llmc.read_blocks(handle, source))
            else:
                arrays = iter(token_stream.TokenStreamReader(handle, source))
            try:
                for array in arrays:
                    ids = array.tolist()
                    yield Document(ids, decode_bytes(ids).decode("utf-8", "replace"), source, None)
            finally:
                if handle is not sys.stdin.buffer:
                    handle.close()
            continue
        if handle is not sys.stdin.buffer:
            handle.close()
        for document in reading.documents([name]):
            yield Document(encode(document.text), document.text, document.source, document.line)


def joined(documents: Iterable[Document], max_tokens: int | None = None) -> Iterator[Document]:
    """All documents as one, each after the first preceded by <|endoftext|> (the first is
    preceded by the scoring prefix): the ids of an llm.c file after its leading 50256, scored
    in disjoint windows as llm.c and nanoGPT compute their val loss. ``max_tokens``: only
    the first N ids (the predicted tokens)."""
    ids: list[int] = []
    sources: list[str] = []
    for document in documents:
        if ids or sources:
            ids.append(EOT)
        ids.extend(document.ids)
        if document.source not in sources:
            sources.append(document.source)
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    if max_tokens is not None:
        del ids[max_tokens:]
    if sources:
        text = decode_bytes(ids).decode("utf-8", "replace")
        yield Document(ids, text, " ".join(sources), None)


def score_corpus(
    score: Callable[[list[Sequence[int]]], list[scoring.SequenceScore]],
    documents: Iterable[Document],
    totals: Totals,
) -> Iterator[list[ScoredDocument]]:
    """Chunks of scored documents, in order; ``score`` scores a list of documents' ids (as
    ``LanguageModel.score_documents``); ``totals`` is updated as each chunk is yielded."""
    for chunk in scoring.chunked(documents, CHUNK_TOKENS, weight=lambda d: len(d.ids) + 1):
        scores = score([d.ids for d in chunk])
        scored = []
        for document, document_score in zip(chunk, scores):
            metrics = scoring.document_metrics(
                0.0 - document_score.total,
                len(document.ids),
                len(document.text),
                len(document.text.encode("utf-8")),
                len(document.text.split()),
            )
            totals.add(metrics)
            scored.append(ScoredDocument(totals.documents, document, document_score, metrics))
        yield scored
