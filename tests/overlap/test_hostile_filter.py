"""Hostile Bloom filter files: header fields forged with a valid checksum (k, m, n, region
size, versions, 2^63 bit counts), truncation at every region boundary, flipped bytes. Each
is one error line (`overlap check`, `overlap verify`), never an allocation of the declared
size; `overlap verify` of several files reports each and exits 1."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt2cli.errors import Gpt2Error
from gpt2cli.overlap.filter_file import (
    DATA_OFFSET,
    HEADER_FIELDS,
    HEADER_FORMAT,
    HEADER_SIZE,
    BloomFilter,
)
from gpt2cli.overlap.hyperloglog import HLL_REGISTERS

NAMES = ["magic", "version", "norm", "n", "k", "m", "capacity", "items", "bits_set",
         "fp_rate", "precision", "fill_fp_rate", "region_bytes", "table_crc", "crc"]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, gpt2) -> Path:
    root = tmp_path_factory.mktemp("hostile-filter")
    text = root / "train.txt"
    text.write_text(" ".join(f"w{i}" for i in range(400)) + "\n")
    path = root / "f.bloom"
    run = gpt2("overlap", "build", "-n", "3", "--fp-rate", "1e-3", "-o", path, text)
    assert run.code == 0, run.stderr
    return path


def forged(data: bytes, **fields: object) -> bytes:
    values = dict(zip(NAMES, struct.unpack_from(HEADER_FORMAT, data, 0), strict=True))
    values.update(fields)
    head = struct.pack(HEADER_FORMAT[:-1], *list(values.values())[:-1])
    registers = data[HEADER_SIZE : HEADER_SIZE + HLL_REGISTERS]
    crc = zlib.crc32(registers, zlib.crc32(head))
    return head + struct.pack("<I", crc) + data[HEADER_FIELDS:]


def opened(path: Path) -> BloomFilter:
    bloom_filter = BloomFilter.open(path, verify=True)
    bloom_filter.contains(np.arange(10, dtype=np.uint64))
    return bloom_filter


@pytest.mark.parametrize(
    "fields",
    [
        {"k": 0}, {"k": 65}, {"k": 2**32 - 1}, {"m": 0}, {"m": 2**63}, {"m": 2**64 - 64},
        {"m": 64}, {"n": 0}, {"region_bytes": 0}, {"region_bytes": 7}, {"region_bytes": 8},
        {"region_bytes": 2**32 - 8}, {"version": 99}, {"version": 2}, {"norm": 7},
        {"precision": 30}, {"table_crc": 1},
    ],
)  # fmt: skip
def test_a_forged_header_is_an_error_without_allocating(
    built: Path, tmp_path: Path, fields: dict
) -> None:
    path = tmp_path / "forged.bloom"
    path.write_bytes(forged(built.read_bytes(), **fields))
    with pytest.raises(Gpt2Error) as caught:
        opened(path)
    assert "\n" not in str(caught.value)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    k=st.integers(0, 2**32 - 1),
    m=st.integers(0, 2**64 - 1),
    region_bytes=st.integers(0, 2**32 - 1),
    n=st.integers(0, 2**32 - 1),
)
def test_any_forged_shape_is_an_error_or_the_same_filter(
    built: Path, tmp_path: Path, k: int, m: int, region_bytes: int, n: int
) -> None:
    path = tmp_path / "any.bloom"
    path.write_bytes(forged(built.read_bytes(), k=k, m=m, region_bytes=region_bytes, n=n))
    try:
        bloom_filter = opened(path)
    except Gpt2Error:
        return
    original = BloomFilter.open(built)
    assert (bloom_filter.header.k, bloom_filter.header.m) == (original.header.k, original.header.m)


def test_truncation_and_flipped_bytes(built: Path, tmp_path: Path) -> None:
    data = built.read_bytes()
    path = tmp_path / "cut.bloom"
    for cut in (0, 7, 8, HEADER_SIZE, DATA_OFFSET - 1, DATA_OFFSET, DATA_OFFSET + 8, len(data) - 4,
                len(data) - 1):  # fmt: skip
        path.write_bytes(data[:cut])
        with pytest.raises(Gpt2Error):
            opened(path)
    for position in [*range(0, HEADER_SIZE), *range(HEADER_SIZE, DATA_OFFSET, 97),
                     *range(DATA_OFFSET, len(data), 61)]:  # fmt: skip
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(Gpt2Error):
            opened(path)


def test_verify_reports_every_file_and_goes_on(gpt2, built: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.bloom"
    bad.write_bytes(forged(built.read_bytes(), k=0))
    text = tmp_path / "text.txt"
    text.write_text("not a filter\n")
    run = gpt2("overlap", "verify", "--json", tmp_path / "missing", bad, text, built)
    assert run.code == 1
    records = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [r["ok"] for r in records] == [False, False, False, True]
    assert [r["path"] for r in records[:3]] == [str(tmp_path / "missing"), str(bad), str(text)]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "cannot vouch for" in errors[0]
    assert f"{built}: ok" in run.stderr
