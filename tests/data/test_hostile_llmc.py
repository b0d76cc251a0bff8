"""Hostile llm.c token files: counts beyond the file (2^31 - 1, negative), foreign magic and
versions, ids past the vocabulary, truncation at every token boundary, files and pipes. Each
is one error line naming the file, and `pack --from-llmc` writes nothing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from _errors import pack_refuses  # tests/ is on sys.path
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2cli.data import llmc
from gpt2cli.errors import Gpt2Error


def llmc_bytes(ids: list[int], magic: int = llmc.MAGIC, version: int = 1, count=None) -> bytes:
    header = np.zeros(llmc.HEADER_INTS, dtype="<i4")
    header[:3] = (magic, version, len(ids) if count is None else count)
    return header.tobytes() + np.array(ids, dtype="<u2").tobytes()


IDS = [50256, 10, 11, 12, 50256, 20, 21]


def read_pipe(data: bytes) -> list[int]:
    """The ids of ``data`` read as from a pipe (its size not known up front), 3 at a time."""
    blocks = llmc.read_blocks(io.BytesIO(data), "pipe", 3)
    return np.concatenate([np.empty(0, np.uint16), *blocks]).tolist()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (llmc_bytes(IDS, count=2**31 - 1), "header gives 2,147,483,647 tokens"),
        (llmc_bytes(IDS, count=-1), "negative token count"),
        (llmc_bytes(IDS, count=-(2**31)), "negative token count"),
        (llmc_bytes(IDS, count=len(IDS) + 1), "header gives 8 tokens"),
        (llmc_bytes(IDS, magic=llmc.LLAMA3_MAGIC), "LLaMA-3"),
        (llmc_bytes(IDS, magic=0), "not an llm.c token file"),
        (llmc_bytes(IDS, version=2), "version 2 is not supported"),
        (llmc_bytes(IDS, version=-1), "version -1 is not supported"),
        (llmc_bytes([*IDS, 50257]), "token id 50257 is not below 50257"),
        (llmc_bytes([*IDS, 65535]), "token id 65535"),
        (llmc_bytes(IDS) + b"\0", "bytes, but its llm.c header"),
        (b"", "not an llm.c token file"),
    ],
)
def test_a_hostile_file_is_one_error_line_and_nothing_is_written(
    gpt2, tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "fineweb_train_000001.bin"
    line = pack_refuses(gpt2, path, data, "--from-llmc")
    assert message in line and str(path) in line, line


def test_truncation_at_every_token_boundary(tmp_path: Path) -> None:
    data = llmc_bytes(IDS)
    path = tmp_path / "cut.bin"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(Gpt2Error):
            llmc.check_file(path)
        with pytest.raises(Gpt2Error):
            read_pipe(data[:cut])
    assert read_pipe(data) == IDS


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(-(2**31), 2**31 - 1),
    ids=st.lists(st.integers(0, 2**16 - 1), max_size=20),
    tail=st.binary(max_size=3),
)
def test_any_header_and_ids_are_an_error_or_exactly_the_ids(
    count: int, ids: list[int], tail: bytes
) -> None:
    data = llmc_bytes(ids, count=count) + tail
    try:
        got = read_pipe(data)
    except Gpt2Error as error:
        assert "\n" not in str(error)
        return
    assert count == len(ids) and not tail and got == ids and max(ids, default=0) < 50257
