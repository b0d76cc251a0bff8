"""Hostile shards and manifests: declared sizes beyond what the file or pack could hold,
flipped bytes, truncation at every block boundary, names that leave the directory. Each is
one error line (or a Gpt2Error from the reader), never an allocation of the declared size,
a traceback or tokens that are not the ones packed."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt2cli.data.manifest import MAX_BLOCK_TOKENS, ShardInfo
from gpt2cli.data.shard_format import HEADER, HEADER_SIZE, ShardReader
from gpt2cli.errors import Gpt2Error
from gpt2cli.text import token_stream

HUGE = [2**63, 2**64 - 1, 2**32 - 1, 2**31, MAX_BLOCK_TOKENS + 1, 2**28]


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpt2cli.data.pack import PackOptions, pack

    root = tmp_path_factory.mktemp("hostile-shards")
    stream = root / "in.tok"
    rng = np.random.default_rng(1)
    with open(stream, "wb") as handle:
        handle.write(token_stream.HEADER)
        for _ in range(30):
            handle.write(token_stream.encode_document(rng.integers(0, 50000, 40)))
    pack([str(stream)], root / "p", PackOptions(block_tokens=128, val_tokens=100))
    return root / "p"


def shard_of(packed: Path) -> Path:
    return packed / "data-train-00000.shard"


def all_tokens(path: Path) -> np.ndarray:
    with ShardReader(path) as reader:
        return np.concatenate(list(reader.blocks()))


def with_header(data: bytes, **fields: int) -> bytes:
    """``data`` with header fields replaced and its checksum recomputed (what a forger does)."""
    names = ["magic", "version", "dtype", "vocab_size", "block_tokens", "num_blocks", "tokens",
             "documents", "index_offset", "index_crc", "r0", "r1", "crc"]  # fmt: skip
    values = dict(zip(names, HEADER.unpack(data[:HEADER_SIZE]), strict=True))
    for name, value in fields.items():
        values[name] = value
    head = HEADER.pack(*values.values())
    head = head[:60] + struct.pack("<I", zlib.crc32(head[:60]))
    return head + data[HEADER_SIZE:]


@pytest.mark.parametrize("field", ["tokens", "block_tokens", "num_blocks", "documents",
                                   "index_offset", "vocab_size", "dtype", "version"])  # fmt: skip
@pytest.mark.parametrize("value", [0, *HUGE])
def test_a_forged_header_is_refused_without_allocating(
    packed: Path, tmp_path: Path, field: str, value: int
) -> None:
    original = shard_of(packed).read_bytes()
    u16, u32 = 2**16 - 1, 2**32 - 1
    formats = {"version": u16, "dtype": u16, "vocab_size": u32, "block_tokens": u32,
               "num_blocks": u32, "index_crc": u32}  # fmt: skip
    value = min(value, formats.get(field, 2**64 - 1))
    forged = with_header(original, **{field: value})
    path = tmp_path / "forged.shard"
    path.write_bytes(forged)
    try:
        got = all_tokens(path)
    except Gpt2Error as error:
        assert "\n" not in str(error)
        return
    # a value that changes nothing (the field's own value) reads the same tokens
    assert np.array_equal(got, all_tokens(shard_of(packed)))


def test_every_flipped_byte_is_found(packed: Path, tmp_path: Path) -> None:
    original = shard_of(packed).read_bytes()
    path = tmp_path / "flipped.shard"
    with ShardReader(shard_of(packed)) as reader:
        index_start = reader.header.index_offset
    # every byte of the header and the index, a spread of the frames' bytes (all are covered)
    positions = [*range(HEADER_SIZE), *range(HEADER_SIZE, index_start, 5)]
    for position in [*positions, *range(index_start, len(original))]:
        data = bytearray(original)
        data[position] ^= 0x10
        path.write_bytes(bytes(data))
        with pytest.raises(Gpt2Error):
            all_tokens(path)


def test_truncation_at_every_block_boundary_and_in_the_header(packed: Path, tmp_path: Path) -> None:
    original = shard_of(packed).read_bytes()
    with ShardReader(shard_of(packed)) as reader:
        boundaries = {int(offset) for offset in reader.index["offset"]}
        boundaries |= {int(o + n) for o, n in zip(reader.index["offset"], reader.index["length"])}
    cuts = sorted(boundaries | set(range(0, HEADER_SIZE + 1)) | {len(original) - 1})
    path = tmp_path / "cut.shard"
    for cut in cuts:
        path.write_bytes(original[:cut])
        with pytest.raises(Gpt2Error) as caught:
            all_tokens(path)
        assert "\n" not in str(caught.value)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=st.fixed_dictionaries({
    "block_tokens": st.integers(0, 2**32 - 1),
    "num_blocks": st.integers(0, 2**32 - 1),
    "tokens": st.integers(0, 2**64 - 1),
    "documents": st.integers(0, 2**64 - 1),
    "index_offset": st.integers(0, 2**64 - 1),
}))  # fmt: skip
def test_any_forged_header_is_an_error_or_the_packed_tokens(
    packed: Path, tmp_path: Path, fields: dict[str, int]
) -> None:
    path = tmp_path / "any.shard"
    path.write_bytes(with_header(shard_of(packed).read_bytes(), **fields))
    try:
        got = all_tokens(path)
    except Gpt2Error:
        return
    assert np.array_equal(got, all_tokens(shard_of(packed)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokens": 2**63}, "cannot be stored in"),
        ({"tokens": 10**30}, "cannot be stored in"),
        ({"tokens": -1}, "negative count"),
        ({"bytes": -5}, "negative count"),
        ({"documents": 10**9}, "cannot be stored in"),
        ({"tokens": "1e400"}, "malformed shard entry"),
        ({"tokens": float("inf")}, "malformed shard entry"),
        ({"tokens": [1]}, "malformed shard entry"),
        ({"name": "../../etc/passwd"}, "bad shard name"),
        ({"name": ".hidden"}, "bad shard name"),
        ({"bytes": 10**12}, "manifest says"),
    ],
)
def test_a_forged_manifest_is_one_error_line(
    gpt2, packed: Path, tmp_path: Path, change: dict, message: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(packed, copy)
    data = yaml.safe_load((copy / "manifest.yaml").read_text())
    data["shards"][0].update(change)
    (copy / "manifest.yaml").write_text(yaml.safe_dump(data))
    for args in (["pack", "--to-llmc", copy, "-o", tmp_path / "llmc"],
                 ["train", "--data", copy, "-o", tmp_path / "run", "--size", "tiny",
                  "--device", "cpu", "--max-steps", "1"]):  # fmt: skip
        run = gpt2(*args)
        assert run.code == 1, run.stderr
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], run.stderr
    assert not (tmp_path / "llmc").exists()
    assert not (tmp_path / "run").exists()


def test_the_bound_on_declared_tokens_admits_what_pack_writes() -> None:
    info = ShardInfo("a.shard", "train", MAX_BLOCK_TOKENS, 1, HEADER_SIZE + 16 + 13, "0" * 64)
    assert ShardInfo.from_dict(info.__dict__, "m").tokens == MAX_BLOCK_TOKENS
    with pytest.raises(Gpt2Error, match="cannot be stored"):
        ShardInfo.from_dict({**info.__dict__, "tokens": MAX_BLOCK_TOKENS * 2}, "m")


def test_blocks_larger_than_pack_writes_are_refused_before_decompressing(
    packed: Path, tmp_path: Path
) -> None:
    """A 33 KB shard declaring one block of 2^28 tokens would need 512 MB to check."""
    original = shard_of(packed).read_bytes()
    with ShardReader(shard_of(packed)) as reader:
        first = reader.index[:1].tobytes()
    size = HEADER_SIZE + int(reader.index["length"][0])
    body = original[HEADER_SIZE:size]
    forged = with_header(
        original[:HEADER_SIZE] + body + first,
        block_tokens=2**28, num_blocks=1, tokens=2**28, documents=0,
        index_offset=size, index_crc=zlib.crc32(first),
    )  # fmt: skip
    path = tmp_path / "big-blocks.shard"
    path.write_bytes(forged)
    with pytest.raises(Gpt2Error, match="corrupt shard header"):
        ShardReader(path)
