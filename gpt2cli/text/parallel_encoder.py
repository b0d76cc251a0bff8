"""Parallel, ordered, bounded-memory encoding of document pieces.

tiktoken releases the GIL while it encodes, so batches of pieces are encoded on
a thread pool; at most ``2 * threads`` batches are in flight, so memory stays
bounded whatever the input size, and results come back in input order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from gpt2cli.text.readers import Piece
from gpt2cli.text.tokenizer import EOT, get_encoding

BATCH_CHARS = 1 << 20


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass
class EncodedBatch:
    ids: list[np.ndarray] | list[list[int]]  # one uint32 array (or list) per piece
    last: list[bool]  # whether each piece ends its document
    text_bytes: int

    def stream_bytes(self) -> bytes:
        """The batch in token-stream layout: ids, with 50256 after each finished document."""
        arrays = []
        for ids, last in zip(self.ids, self.last):
            arrays.append(np.asarray(ids, dtype="<u2"))
            if last:
                arrays.append(np.array([EOT], dtype="<u2"))
        return np.concatenate(arrays).tobytes() if arrays else b""


def _encode(texts: list[str], last: list[bool]) -> EncodedBatch:
    encoding = get_encoding()
    to_numpy = getattr(encoding, "encode_to_numpy", None)
    if to_numpy is not None:
        # Ordinary encoding (no special token allowed, none refused) straight into a uint32
        # buffer, the GIL released: no Python list of ints to build and convert.
        ids = [to_numpy(text, allowed_special=set(), disallowed_special=()) for text in texts]
    else:
        ids = [encoding.encode_ordinary(text) for text in texts]
    text_bytes = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
    return EncodedBatch(ids, last, text_bytes)


def _batches(pieces: Iterable[Piece], batch_chars: int) -> Iterator[tuple[list[str], list[bool]]]:
    texts: list[str] = []
    last: list[bool] = []
    size = 0
    for piece in pieces:
        texts.append(piece.text)
        last.append(piece.last)
        size += len(piece.text)
        if size >= batch_chars:
            yield texts, last
            texts, last, size = [], [], 0
    if texts:
        yield texts, last


def encode_pieces(
    pieces: Iterable[Piece], threads: int | None = None, batch_chars: int = BATCH_CHARS
) -> Iterator[EncodedBatch]:
    """Encoded batches, in input order, computed on ``threads`` threads."""
    threads = threads or default_threads()
    get_encoding()  # load (and verify) the ranks once, before the workers start
    if threads == 1:
        for texts, last in _batches(pieces, batch_chars):
            yield _encode(texts, last)
        return
    in_flight: deque[Future[EncodedBatch]] = deque()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        try:
            for texts, last in _batches(pieces, batch_chars):
                in_flight.append(pool.submit(_encode, texts, last))
                if len(in_flight) >= 2 * threads:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            for future in in_flight:
                future.cancel()
