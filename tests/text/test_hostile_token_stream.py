"""Hostile token streams: truncation at every byte, stray 0xFFFF marks, foreign versions, ids
past the vocabulary, any bytes at all. Each is one error line naming the input, or exactly
the documents that were written (a cut at a document boundary is a shorter valid stream)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from _errors import pack_refuses  # tests/ is on sys.path
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2cli.errors import Gpt2Error
from gpt2cli.text import token_stream
from gpt2cli.text.token_stream import TokenStreamReader

DOCUMENTS = [[1, 2, 3], [], [50255, 7], [9] * 5]


def stream(documents: list[list[int]]) -> bytes:
    return token_stream.HEADER + b"".join(token_stream.encode_document(d) for d in documents)


def read(data: bytes, read_bytes: int = 6) -> list[list[int]]:
    reader = TokenStreamReader(io.BytesIO(data), "in.tok", read_bytes)
    return [document.tolist() for document in reader]


def test_truncation_at_every_byte_is_an_error_or_a_prefix_of_the_documents() -> None:
    data = stream(DOCUMENTS)
    assert read(data) == DOCUMENTS
    for cut in range(len(data)):
        try:
            got = read(data[:cut])
        except Gpt2Error as error:
            assert "\n" not in str(error) and "in.tok" in str(error)
            continue
        assert got == DOCUMENTS[: len(got)] and cut >= len(token_stream.HEADER)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (stream([[1]]) + b"\xff\xff", "truncated token stream (cut inside a header)"),
        (stream([[1]]) + b"\xff\xff\x00\x00\x01\x00\x02\x00", "id 65535 at byte 12"),
        (token_stream.MAGIC + b"\x02\x00" + b"\x00\x00\xa8\xc4", "version 2 is not supported"),
        (stream([[50257]]), "token id 50257 is not below 50257"),
        (stream([[1]]) + b"\x01", "odd number of bytes"),
        (stream([[1]]) + b"\x01\x00", "last document not terminated"),
        (b"\x00\x00" + stream([[1]]), "not a gpt2 token stream"),
        (b"", "empty input"),
    ],
)
def test_a_hostile_stream_is_one_error_line(
    gpt2, tmp_path: Path, data: bytes, message: str
) -> None:
    with pytest.raises(Gpt2Error, match=re.escape(message)):
        read(data)
    assert message in pack_refuses(gpt2, tmp_path / "in.tok", data)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=40), read_bytes=st.sampled_from([2, 4, 6, 64]))
def test_any_bytes_after_a_header_are_an_error_or_documents(body: bytes, read_bytes: int) -> None:
    data = token_stream.HEADER + body
    try:
        got = read(data, read_bytes)
    except Gpt2Error as error:
        assert "\n" not in str(error)
        return
    words = np.frombuffer(body, dtype="<u2").tolist() if len(body) % 2 == 0 else None
    assert words is not None
    assert all(word < 50257 or word == 0xFFFF for word in words)
    assert sum(len(document) + 1 for document in got) <= len(words)
