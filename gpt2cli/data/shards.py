"""Token shards: the zstd shard format, the manifest, packing, verification, and the data loader.

Shard file, format version 1 (all integers little-endian)::

    header   64 bytes   struct "<8sHHIIIQQQIIII":
                        magic b"GPT2SHRD", version (1), dtype (1 = uint16), vocab_size,
                        block_tokens, num_blocks, tokens, documents, index_offset,
                        index_crc32, 0, 0, header_crc32 (crc32 of the first 60 bytes)
    blocks   num_blocks independent zstd frames; frame i holds tokens
             [i * block_tokens, min((i + 1) * block_tokens, tokens)) as uint16
             (content size and zstd's content checksum are in every frame)
    index    num_blocks entries "<QII": frame offset, frame length, crc32 of the frame;
             it ends the file: file size == index_offset + 16 * num_blocks

Tokens are the ids of whole documents, each followed by ``<|endoftext|>`` (50256), so
a model sees the boundaries; a shard is cut at exactly ``shard_tokens`` ids, so a
document may continue in the next shard of its split. ``tokens`` counts every stored
id (terminators included); ``documents`` counts the terminators in the shard.

A pack directory holds shards ``NAME-SPLIT-NNNNN.shard``, one part manifest
``manifest.NAME.yaml`` per pack run (written after its shards), and ``manifest.yaml``,
the union of all parts, which is what readers use. Every file is written to a temp
name and renamed, so a killed pack leaves whole files only, and no manifest lists a
shard that is not whole.
"""

from __future__ import annotations

import bisect
import datetime
import fcntl
import hashlib
import math
import os
import re
import stat
import struct
import sys
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import yaml
import zstandard

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write, fsync_directory, open_binary_input, sha256_file
from gpt2cli.splitmix import MASK64, mix_array, splitmix64, splitmix64_array
from gpt2cli.text.token_stream import TokenStreamReader
from gpt2cli.text.tokenizer import EOT, VOCAB_SIZE

MAGIC = b"GPT2SHRD"
FORMAT_VERSION = 1
DTYPE_UINT16 = 1
HEADER = struct.Struct("<8sHHIIIQQQIIII")
HEADER_SIZE = HEADER.size  # 64
INDEX_ENTRY = np.dtype([("offset", "<u8"), ("length", "<u4"), ("crc", "<u4")])
SHARD_SUFFIX = ".shard"
MANIFEST = "manifest.yaml"
MANIFEST_FORMAT = "gpt2cli-shards"
MANIFEST_VERSION = 1
SPLITS = ("train", "val")
DEFAULT_SHARD_TOKENS = 100_000_000
DEFAULT_BLOCK_TOKENS = 8192
DEFAULT_LEVEL = 3
DEFAULT_NAME = "data"
DEFAULT_CACHE_BYTES = 256 << 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

assert HEADER_SIZE == 64


# --------------------------------------------------------------------------------------------
# The shard file


@dataclass
class ShardHeader:
    version: int
    dtype: int
    vocab_size: int
    block_tokens: int
    num_blocks: int
    tokens: int
    documents: int
    index_offset: int
    index_crc: int

    def pack(self) -> bytes:
        head = HEADER.pack(
            MAGIC,
            self.version,
            self.dtype,
            self.vocab_size,
            self.block_tokens,
            self.num_blocks,
            self.tokens,
            self.documents,
            self.index_offset,
            self.index_crc,
            0,
            0,
            0,
        )
        return head[:60] + struct.pack("<I", zlib.crc32(head[:60]))

    @classmethod
    def unpack(cls, data: bytes, name: str) -> ShardHeader:
        if len(data) < HEADER_SIZE:
            raise Gpt2Error(f"{name}: truncated shard (no complete header)")
        fields = HEADER.unpack(data[:HEADER_SIZE])
        if fields[0] != MAGIC:
            raise Gpt2Error(f"{name}: not a gpt2 shard (bad magic)")
        if fields[1] != FORMAT_VERSION:
            raise Gpt2Error(
                f"{name}: shard format version {fields[1]} is not supported "
                f"(this gpt2cli reads version {FORMAT_VERSION})"
            )
        if zlib.crc32(data[:60]) != fields[12]:
            raise Gpt2Error(f"{name}: corrupt shard header (checksum mismatch)")
        header = cls(*fields[1:10])
        if header.dtype != DTYPE_UINT16:
            raise Gpt2Error(f"{name}: unknown token dtype code {header.dtype}")
        if header.vocab_size > 65535 or header.block_tokens == 0:
            raise Gpt2Error(f"{name}: corrupt shard header (impossible values)")
        if header.num_blocks != math.ceil(header.tokens / header.block_tokens):
            raise Gpt2Error(f"{name}: corrupt shard header (block count disagrees with tokens)")
        return header


def _corrupt(name: str, block: int, header: ShardHeader, why: str) -> Gpt2Error:
    first = block * header.block_tokens
    last = min(first + header.block_tokens, header.tokens) - 1
    return Gpt2Error(
        f"{name}: block {block} (tokens {first}-{last}) is corrupt: {why}",
        "re-pack this shard; `gpt2 pack --verify DIR` checks them all",
    )


class ShardReader:
    """Random access to one shard file: header, index, and any block, checked on read."""

    def __init__(self, path: str | os.PathLike[str], expected_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            raise Gpt2Error(f"{self.name}: shard is missing from {self.path.parent}") from None
        except OSError as error:
            raise Gpt2Error(f"{self.name}: cannot open shard ({error.strerror})") from None
        self._handle = handle
        size = os.fstat(handle.fileno()).st_size
        self.size = size
        if expected_bytes is not None and size != expected_bytes:
            handle.close()
            raise Gpt2Error(
                f"{self.name}: shard is {size:,} bytes but the manifest says {expected_bytes:,} "
                "(truncated or replaced)",
                "re-pack it; `gpt2 pack --verify DIR` checks every shard",
            )
        try:
            self.header = ShardHeader.unpack(handle.read(HEADER_SIZE), self.name)
            end = self.header.index_offset + INDEX_ENTRY.itemsize * self.header.num_blocks
            if end != size or self.header.index_offset < HEADER_SIZE:
                raise Gpt2Error(
                    f"{self.name}: truncated or damaged shard ({size:,} bytes, "
                    f"the header says {end:,})"
                )
            self._fd = handle.fileno()
        except BaseException:
            handle.close()
            raise
        self._index: np.ndarray | None = None
        self._entries: list[tuple[int, int, int]] = []
        self._decompressor = zstandard.ZstdDecompressor()

    def _pread(self, offset: int, length: int) -> bytes:
        """Bytes at ``offset`` (pread: no mapping that would count the file in our RSS)."""
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise Gpt2Error(f"{self.name}: truncated shard (short read at byte {offset:,})")
        return data

    @property
    def index(self) -> np.ndarray:
        if self._index is None:
            start = self.header.index_offset
            raw = self._pread(start, INDEX_ENTRY.itemsize * self.header.num_blocks)
            if zlib.crc32(raw) != self.header.index_crc:
                raise Gpt2Error(
                    f"{self.name}: the block index is corrupt (checksum mismatch)",
                    "re-pack this shard",
                )
            index = np.frombuffer(raw, dtype=INDEX_ENTRY).copy()
            ends = index["offset"].astype(np.int64) + index["length"]
            if index.size and (
                int(index["offset"][0]) < HEADER_SIZE
                or int(ends.max()) > start
                or np.any(index["offset"][1:] < ends[:-1])
            ):
                raise Gpt2Error(f"{self.name}: the block index is corrupt (bad offsets)")
            self._index = index
            self._entries = list(
                zip(index["offset"].tolist(), index["length"].tolist(), index["crc"].tolist())
            )
        return self._index

    def block_size(self, block: int) -> int:
        header = self.header
        return min(header.block_tokens, header.tokens - block * header.block_tokens)

    def block(self, block: int) -> np.ndarray:
        """Block ``block``'s tokens (uint16), checksum-verified."""
        if self._index is None:
            self.index  # noqa: B018 - loads and checks the index
        offset, length, crc = self._entries[block]
        frame = self._pread(offset, length)
        if zlib.crc32(frame) != crc:
            raise _corrupt(self.name, block, self.header, "checksum mismatch")
        header = self.header
        expected = min(header.block_tokens, header.tokens - block * header.block_tokens)
        try:
            data = self._decompressor.decompress(frame, max_output_size=2 * expected)
        except zstandard.ZstdError as error:
            raise _corrupt(self.name, block, self.header, f"zstd: {error}") from None
        if len(data) != 2 * expected:
            raise _corrupt(
                self.name, block, self.header, f"{len(data) // 2} tokens instead of {expected}"
            )
        return np.frombuffer(data, dtype="<u2")

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of this shard (decompresses only the blocks needed)."""
        if start < 0 or start + length > self.header.tokens:
            raise IndexError(f"{self.name}: tokens {start}..{start + length} out of range")
        bt = self.header.block_tokens
        parts = []
        position = start
        while position < start + length:
            b = position // bt
            data = self.block(b)
            lo = position - b * bt
            hi = min(len(data), start + length - b * bt)
            parts.append(data[lo:hi])
            position += hi - lo
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint16)

    def blocks(self) -> Iterator[np.ndarray]:
        for b in range(self.header.num_blocks):
            yield self.block(b)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ShardInfo:
    """One manifest entry."""

    name: str
    split: str
    tokens: int
    documents: int
    bytes: int
    sha256: str
    part: str = DEFAULT_NAME

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ShardInfo:
        try:
            info = cls(
                name=str(data["name"]),
                split=str(data["split"]),
                tokens=int(data["tokens"]),
                documents=int(data["documents"]),
                bytes=int(data["bytes"]),
                sha256=str(data["sha256"]),
                part=str(data.get("part", DEFAULT_NAME)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise Gpt2Error(f"{where}: malformed shard entry ({error})") from None
        if "/" in info.name or info.name.startswith("."):
            raise Gpt2Error(f"{where}: bad shard name {info.name!r}")
        return info


class ShardWriter:
    """Writes one split's shards: blocks of ``block_tokens`` compressed as they fill,
    a shard finished (index, header, fsync, rename) every ``shard_tokens`` ids."""

    def __init__(
        self,
        directory: Path,
        part: str,
        split: str,
        shard_tokens: int = DEFAULT_SHARD_TOKENS,
        block_tokens: int = DEFAULT_BLOCK_TOKENS,
        level: int = DEFAULT_LEVEL,
    ) -> None:
        self.directory = directory
        self.part = part
        self.split = split
        self.shard_tokens = shard_tokens
        self.block_tokens = block_tokens
        self.compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self.finished: list[ShardInfo] = []
        self.tokens = 0
        self.documents = 0
        self._buffer = np.empty(block_tokens, dtype="<u2")
        self._fill = 0
        self._file: BinaryIO | None = None
        self._tmp: Path | None = None
        self._index: list[tuple[int, int, int]] = []
        self._shard_tokens = 0  # tokens in the open shard, flushed blocks only
        self._shard_documents = 0
        self._offset = HEADER_SIZE

    def shard_name(self, number: int) -> str:
        return f"{self.part}-{self.split}-{number:05d}{SHARD_SUFFIX}"

    def write(self, tokens: np.ndarray) -> None:
        """Append ids (whole or partial documents, terminators included)."""
        position = 0
        total = len(tokens)
        while position < total:
            room = min(
                self.block_tokens - self._fill, self.shard_tokens - self._shard_tokens - self._fill
            )
            take = min(room, total - position)
            self._buffer[self._fill : self._fill + take] = tokens[position : position + take]
            self._fill += take
            position += take
            if self._fill == self.block_tokens or (
                self._shard_tokens + self._fill == self.shard_tokens
            ):
                self._flush_block()
                if self._shard_tokens == self.shard_tokens:
                    self._finish_shard()

    def _flush_block(self) -> None:
        if self._fill == 0:
            return
        if self._file is None:
            name = self.shard_name(len(self.finished))
            self._tmp = self.directory / f".{name}.tmp-{os.getpid()}"
            self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in _finish_shard
            self._file.write(b"\0" * HEADER_SIZE)
        block = self._buffer[: self._fill]
        frame = self.compressor.compress(block.tobytes())
        self._file.write(frame)
        self._index.append((self._offset, len(frame), zlib.crc32(frame)))
        self._offset += len(frame)
        eots = int(np.count_nonzero(block == EOT))
        self._shard_tokens += self._fill
        self._shard_documents += eots
        self.tokens += self._fill
        self.documents += eots
        self._fill = 0

    def _finish_shard(self) -> None:
        if self._file is None:
            return
        index = np.array(self._index, dtype=INDEX_ENTRY).tobytes()
        header = ShardHeader(
            FORMAT_VERSION,
            DTYPE_UINT16,
            VOCAB_SIZE,
            self.block_tokens,
            len(self._index),
            self._shard_tokens,
            self._shard_documents,
            self._offset,
            zlib.crc32(index),
        )
        self._file.write(index)
        self._file.seek(0)
        self._file.write(header.pack())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        assert self._tmp is not None
        name = self.shard_name(len(self.finished))
        size = self._tmp.stat().st_size
        digest = sha256_file(self._tmp)
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.directory / name)
        self._tmp = None
        self.finished.append(
            ShardInfo(
                name, self.split, self._shard_tokens, self._shard_documents, size, digest, self.part
            )
        )
        self._index = []
        self._offset = HEADER_SIZE
        self._shard_tokens = 0
        self._shard_documents = 0

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every shard written."""
        self._flush_block()
        self._finish_shard()
        return self.finished

    def abort(self) -> None:
        """Remove everything this writer created (temp file and finished shards)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        for info in self.finished:
            (self.directory / info.name).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Manifests


def part_manifest_name(part: str) -> str:
    return f"manifest.{part}.yaml"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _manifest_dict(shards: list[ShardInfo], **extra: Any) -> dict[str, Any]:
    splits: dict[str, dict[str, int]] = {}
    for info in shards:
        entry = splits.setdefault(info.split, {"shards": 0, "tokens": 0, "documents": 0})
        entry["shards"] += 1
        entry["tokens"] += info.tokens
        entry["documents"] += info.documents
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dtype": "uint16",
        "vocab_size": VOCAB_SIZE,
        "eot": EOT,
        **extra,
        "splits": splits,
        "shards": [asdict(info) for info in shards],
    }


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False, allow_unicode=True)
    fsync_directory(path.parent)


def read_manifest(path: Path) -> tuple[dict[str, Any], list[ShardInfo]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Gpt2Error(f"{path}: no such manifest") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise Gpt2Error(f"{path}: malformed YAML ({error})".replace("\n", " ")) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise Gpt2Error(f"{path}: not a gpt2 shard manifest")
    if data.get("version") != MANIFEST_VERSION:
        raise Gpt2Error(f"{path}: manifest version {data.get('version')} is not supported")
    if data.get("vocab_size", VOCAB_SIZE) != VOCAB_SIZE or data.get("dtype", "uint16") != "uint16":
        raise Gpt2Error(f"{path}: shards for another vocabulary or dtype")
    entries = data.get("shards") or []
    if not isinstance(entries, list):
        raise Gpt2Error(f"{path}: malformed manifest ('shards' is not a list)")
    shards = [ShardInfo.from_dict(entry, str(path)) for entry in entries]
    names = [info.name for info in shards]
    if len(set(names)) != len(names):
        raise Gpt2Error(f"{path}: a shard is listed twice")
    return data, shards


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on DIR/.manifest.lock around manifest updates (best effort)."""
    try:
        handle = open(directory / ".manifest.lock", "a")  # noqa: SIM115
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        handle.close()


def part_names(directory: Path) -> list[str]:
    names = []
    for path in directory.glob("manifest.*.yaml"):
        part = path.name[len("manifest.") : -len(".yaml")]
        if _NAME_RE.match(part):
            names.append(part)
    return sorted(names)


@dataclass
class MergeResult:
    parts: list[str]
    shards: list[ShardInfo]


def merge(directory: str | os.PathLike[str]) -> MergeResult:
    """Rebuild DIR/manifest.yaml as the union of every part manifest ``manifest.NAME.yaml``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise Gpt2Error(f"{directory}: no such directory")
    with _directory_lock(directory):
        parts = part_names(directory)
        if not parts:
            raise Gpt2Error(
                f"{directory}: no part manifests (manifest.NAME.yaml) to merge",
                "write some with `gpt2 pack -o DIR --name NAME`",
            )
        shards: list[ShardInfo] = []
        for part in parts:
            _, listed = read_manifest(directory / part_manifest_name(part))
            for info in listed:
                path = directory / info.name
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    raise Gpt2Error(
                        f"{part_manifest_name(part)} lists {info.name}, which is missing"
                    ) from None
                if size != info.bytes:
                    raise Gpt2Error(
                        f"{info.name}: {size:,} bytes but {part_manifest_name(part)} says "
                        f"{info.bytes:,}"
                    )
            shards.extend(listed)
        names = [info.name for info in shards]
        if len(set(names)) != len(names):
            raise Gpt2Error(f"{directory}: two parts list the same shard")
        _write_yaml(directory / MANIFEST, _manifest_dict(shards, created=_now(), parts=parts))
    return MergeResult(parts, shards)


# --------------------------------------------------------------------------------------------
# Packing: token streams -> split -> shuffle -> shards


def _unit(seed: int, salt: int, index: int) -> float:
    """A deterministic uniform number in [0, 1) for (seed, salt, index)."""
    return splitmix64(splitmix64(splitmix64(seed & MASK64) ^ salt) ^ index) / 2.0**64


@dataclass
class PackOptions:
    name: str = DEFAULT_NAME
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    val_tokens: int = 0
    val_fraction: float = 0.0
    seed: int = 0
    shuffle_buffer: int = 0
    append: bool = False
    level: int = DEFAULT_LEVEL


@dataclass
class PackResult:
    directory: Path
    part: str
    documents: int = 0
    tokens: int = 0  # stored ids, terminators included
    input_bytes: int = 0
    shards: list[ShardInfo] = field(default_factory=list)
    val_rate: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def split_totals(self, split: str) -> tuple[int, int, int]:
        chosen = [info for info in self.shards if info.split == split]
        return (len(chosen), sum(i.tokens for i in chosen), sum(i.documents for i in chosen))


def check_options(options: PackOptions) -> None:
    if not _NAME_RE.match(options.name) or options.name == "manifest":
        raise UsageError(
            f"--name {options.name!r} is not a usable part name",
            "letters, digits, '.', '_' and '-', not starting with a dot",
        )
    if options.shard_tokens < 1 or options.block_tokens < 1:
        raise UsageError("--shard-tokens and the block size must be positive")
    if options.block_tokens > 1 << 24:
        raise UsageError("the block size must be at most 16777216 tokens")
    if options.val_tokens < 0:
        raise UsageError("--val-tokens must not be negative")
    if not 0.0 <= options.val_fraction < 1.0:
        raise UsageError("--val-fraction must be in [0, 1)")
    if options.val_tokens and options.val_fraction:
        raise UsageError("give --val-tokens or --val-fraction, not both")
    if options.shuffle_buffer < 0:
        raise UsageError("--shuffle-buffer must not be negative")


def prepare_directory(directory: Path, options: PackOptions) -> bool:
    """Check (and create) the output directory; returns whether pack created it."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"-o {directory}: is a file, not a directory")
    if not directory.exists():
        try:
            directory.mkdir(parents=True)
            return True
        except FileExistsError:
            pass  # a parallel pack made it just now
        except OSError as error:
            raise Gpt2Error(f"-o {directory}: cannot create ({error.strerror})") from None
    entries = [entry for entry in directory.iterdir() if entry.name != ".manifest.lock"]
    if entries and not options.append:
        raise UsageError(
            f"-o {directory}: directory is not empty",
            "pass --append --name NAME to add a part, or choose an empty directory",
        )
    if (directory / part_manifest_name(options.name)).exists():
        raise UsageError(
            f"-o {directory}: already holds a part named {options.name!r}", "choose another --name"
        )
    # Leftovers of a killed run of this part (unlisted by construction): remove them.
    pattern = re.compile(
        rf"^\.?{re.escape(options.name)}-({'|'.join(SPLITS)})-\d{{5}}\{SHARD_SUFFIX}(\.tmp-\d+)?$"
    )
    listed: set[str] = set()
    if (directory / MANIFEST).exists():
        try:
            listed = {info.name for info in read_manifest(directory / MANIFEST)[1]}
        except Gpt2Error:
            listed = set()
    for entry in entries:
        if pattern.match(entry.name) and entry.name not in listed:
            entry.unlink(missing_ok=True)
    return False


def _input_token_estimate(inputs: list[str]) -> int | None:
    total = 0
    for name in inputs:
        if name == "-":
            return None
        try:
            info = os.stat(name)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        total += info.st_size // 2
    return total


def _units(seed: int, salt: int, indices: np.ndarray) -> np.ndarray:
    """Deterministic uniform numbers in [0, 1), one per index (vectorized)."""
    base = np.uint64(splitmix64(splitmix64(seed & MASK64) ^ salt))
    mixed = splitmix64_array(indices.astype(np.uint64) ^ base)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def choose_val_documents(inputs: list[str], val_tokens: int, seed: int, estimate: int) -> set[int]:
    """For --val-tokens on files: a first pass over the streams picks whole documents
    (numbered in input order) in the order of a seeded hash until they hold at least
    ``val_tokens`` tokens, so the val split is a sample of the whole input. Memory
    grows with the candidates only (documents whose hash falls under a threshold)."""
    threshold = min(1.0, 4.0 * val_tokens / max(estimate, 1))
    while True:
        units, numbers, lengths = [], [], []
        document = 0
        for name in inputs:
            with open(name, "rb") as handle:
                carry = 0
                for words in TokenStreamReader(handle, name).blocks():
                    ends = np.flatnonzero(words == EOT)
                    if not ends.size:
                        carry += words.size
                        continue
                    sizes = np.diff(ends, prepend=-1)
                    sizes[0] += carry
                    carry = int(words.size - 1 - ends[-1])
                    index = np.arange(document, document + ends.size, dtype=np.int64)
                    u = _units(seed, 0x5A11, index)
                    keep = u < threshold
                    units.append(u[keep])
                    numbers.append(index[keep])
                    lengths.append(sizes[keep])
                    document += ends.size
        if not units:
            return set()
        u, index, size = np.concatenate(units), np.concatenate(numbers), np.concatenate(lengths)
        order = np.argsort(u, kind="stable")
        total = np.cumsum(size[order])
        if (total.size and total[-1] >= val_tokens) or threshold >= 1.0:
            take = int(np.searchsorted(total, val_tokens)) + 1
            return set(index[order[:take]].tolist())
        threshold = 1.0


class _Splitter:
    """Decides, document by document (numbered in input order), train or val;
    deterministic from the seed."""

    def __init__(self, options: PackOptions, chosen: set[int] | None = None) -> None:
        self.seed = options.seed
        self.val_tokens = options.val_tokens
        self.chosen = chosen
        if chosen is not None:
            self.rate = 1.0 if chosen else 0.0  # (rate 0: no per-document work)
        elif options.val_fraction:
            self.rate = options.val_fraction
        elif options.val_tokens:
            # On a pipe, whose length is unknown: every other document (on average) from
            # the start, until N tokens are chosen.
            self.rate = 0.5
        else:
            self.rate = 0.0
        self.val_taken = 0

    def is_val(self, index: int) -> bool:
        if self.rate == 0.0:
            return False
        if self.chosen is not None:
            return index in self.chosen
        if self.val_tokens and self.val_taken >= self.val_tokens:
            return False
        return _unit(self.seed, 0x5A11, index) < self.rate


class _Shuffler:
    """Reservoir-style shuffle buffer of ``size`` documents."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.buffer: list[tuple[str, np.ndarray]] = []
        self.rng = np.random.default_rng([seed, 0x5B0F])

    def push(self, document: tuple[str, np.ndarray]) -> tuple[str, np.ndarray] | None:
        if len(self.buffer) < self.size:
            self.buffer.append(document)
            return None
        slot = int(self.rng.integers(self.size))
        out, self.buffer[slot] = self.buffer[slot], document
        return out

    def drain(self) -> Iterator[tuple[str, np.ndarray]]:
        order = self.rng.permutation(len(self.buffer))
        buffer, self.buffer = self.buffer, []
        for slot in order:
            yield buffer[int(slot)]


class Packer:
    """Routes whole documents from token streams to the train/val shard writers."""

    def __init__(
        self, directory: Path, options: PackOptions, chosen: set[int] | None = None
    ) -> None:
        self.directory = directory
        self.options = options
        self.splitter = _Splitter(options, chosen)
        self.writers: dict[str, ShardWriter] = {}
        self.doc_index = 0  # documents started so far
        self.open_split: str | None = None  # split of the document in progress
        self.input_bytes = 0

    def writer(self, split: str) -> ShardWriter:
        if split not in self.writers:
            o = self.options
            self.writers[split] = ShardWriter(
                self.directory, o.name, split, o.shard_tokens, o.block_tokens, o.level
            )
        return self.writers[split]

    def _start_document(self) -> str:
        split = "val" if self.splitter.is_val(self.doc_index) else "train"
        self.doc_index += 1
        return split

    def add_block(self, words: np.ndarray) -> None:
        """Ids straight from a stream (documents may start and end anywhere)."""
        if not words.size:
            return
        if self.splitter.rate == 0.0:  # everything is train: no per-document work
            self.writer("train").write(words)
            return
        ends = np.flatnonzero(words == EOT)
        bounds = [0, *(ends + 1).tolist()]
        if bounds[-1] != len(words):
            bounds.append(len(words))
        labels: list[str] = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if self.open_split is None:
                self.open_split = self._start_document()
            labels.append(self.open_split)
            if self.open_split == "val":
                self.splitter.val_taken += hi - lo
            if words[hi - 1] == EOT:
                self.open_split = None
        if len(set(labels)) <= 1:
            if labels:
                self.writer(labels[0]).write(words)
            return
        lengths = np.diff(bounds)
        is_val = np.repeat(np.array([label == "val" for label in labels]), lengths)
        self.writer("val").write(words[is_val])
        self.writer("train").write(words[~is_val])

    def label_document(self, document: np.ndarray) -> str:
        """The split of the next whole document (terminator included), in input order."""
        split = self._start_document()
        if split == "val":
            self.splitter.val_taken += len(document)
        return split

    def close(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        for split in SPLITS:
            if split in self.writers:
                shards.extend(self.writers[split].close())
        return shards

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


def pack(
    inputs: list[str],
    directory: str | os.PathLike[str],
    options: PackOptions,
    progress: Any = None,
) -> PackResult:
    """Pack token streams into DIR as part ``options.name``; writes the part manifest last,
    then refreshes DIR/manifest.yaml. On any failure, removes what this run wrote."""
    check_options(options)
    directory = Path(directory)
    created = prepare_directory(directory, options)
    result = PackResult(directory, options.name)
    estimate = _input_token_estimate(inputs)
    packer = Packer(directory, options)
    shuffler = _Shuffler(options.shuffle_buffer, options.seed) if options.shuffle_buffer else None
    task = progress.add_task("pack", total=None, status="") if progress else None
    try:
        if options.val_tokens and estimate is not None:
            chosen = choose_val_documents(inputs, options.val_tokens, options.seed, estimate)
            packer = Packer(directory, options, chosen)
        result.val_rate = packer.splitter.rate
        for name in inputs:
            handle = open_binary_input(name)
            source = "<stdin>" if name == "-" else name
            reader = TokenStreamReader(handle, source)
            try:
                if shuffler is None:
                    for words in reader.blocks():
                        packer.add_block(words)
                        if progress:
                            progress.update(
                                task, status=f"{reader.tokens + reader.documents:,} tokens"
                            )
                else:
                    for document in reader:
                        doc = np.append(document, np.uint16(EOT))
                        out = shuffler.push((packer.label_document(doc), doc))
                        if out is not None:
                            packer.writer(out[0]).write(out[1])
            finally:
                if handle is not sys.stdin.buffer:
                    handle.close()
            result.input_bytes += reader.bytes_read
        if shuffler is not None:
            for split, doc in shuffler.drain():
                packer.writer(split).write(doc)
        result.shards = packer.close()
        manifest = _manifest_dict(
            result.shards,
            part=options.name,
            created=_now(),
            options={
                "seed": options.seed,
                "val_tokens": options.val_tokens,
                "val_fraction": options.val_fraction,
                "shuffle_buffer": options.shuffle_buffer,
                "shard_tokens": options.shard_tokens,
                "block_tokens": options.block_tokens,
                "zstd_level": options.level,
            },
        )
        fsync_directory(directory)
        _write_yaml(directory / part_manifest_name(options.name), manifest)
    except BaseException:
        packer.abort()
        if created and {entry.name for entry in directory.iterdir()} <= {".manifest.lock"}:
            try:
                (directory / ".manifest.lock").unlink(missing_ok=True)
                directory.rmdir()
            except OSError:
                pass
        raise
    merge(directory)
    result.documents = sum(info.documents for info in result.shards)
    result.tokens = sum(info.tokens for info in result.shards)
    if options.val_tokens and packer.splitter.val_taken < options.val_tokens:
        result.warnings.append(
            f"the val split has {packer.splitter.val_taken:,} tokens, fewer than the "
            f"{options.val_tokens:,} asked for (the input is too small"
            + (
                "; on a pipe, val documents are drawn from its start, one in two)"
                if estimate is None
                else ")"
            )
        )
    return result


# --------------------------------------------------------------------------------------------
# Verification


@dataclass
class ShardCheck:
    name: str
    split: str
    tokens: int
    documents: int
    bytes: int
    ok: bool
    error: str | None = None


@dataclass
class VerifyReport:
    directory: str
    shards: list[ShardCheck]
    unlisted: list[str]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    def splits(self) -> dict[str, dict[str, int | float]]:
        table: dict[str, dict[str, int | float]] = {}
        for check in self.shards:
            row = table.setdefault(
                check.split, {"shards": 0, "tokens": 0, "documents": 0, "bytes": 0, "bad": 0}
            )
            row["shards"] += 1
            row["tokens"] += check.tokens
            row["documents"] += check.documents
            row["bytes"] += check.bytes
            row["bad"] += 0 if check.ok else 1
        for row in table.values():
            row["compression"] = round(2 * row["tokens"] / row["bytes"], 3) if row["bytes"] else 0
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "ok": self.ok,
            "splits": self.splits(),
            "shards": [asdict(check) for check in self.shards],
            "unlisted": self.unlisted,
            "errors": self.errors,
        }


def verify_shard(path: Path, info: ShardInfo) -> int:
    """Re-read one shard completely; raises Gpt2Error naming the shard (and the block).

    Returns the shard's last token (to check that a split ends with a whole document).
    """
    digest_ok = sha256_file(path) == info.sha256
    with ShardReader(path, info.bytes) as reader:
        header = reader.header
        tokens = documents = 0
        last = EOT
        for number, block in enumerate(reader.blocks()):
            if block.size and int(block.max()) >= header.vocab_size:
                raise _corrupt(
                    info.name, number, header, f"token id {int(block.max())} >= {header.vocab_size}"
                )
            tokens += block.size
            documents += int(np.count_nonzero(block == EOT))
            if block.size:
                last = int(block[-1])
    if tokens != header.tokens or documents != header.documents:
        raise Gpt2Error(
            f"{info.name}: holds {tokens:,} tokens / {documents:,} documents, "
            f"its header says {header.tokens:,} / {header.documents:,}"
        )
    if tokens != info.tokens or documents != info.documents:
        raise Gpt2Error(
            f"{info.name}: holds {tokens:,} tokens / {documents:,} documents, "
            f"the manifest says {info.tokens:,} / {info.documents:,}"
        )
    if not digest_ok:
        raise Gpt2Error(f"{info.name}: sha256 differs from the manifest's")
    return last


def verify(directory: str | os.PathLike[str], progress: Any = None) -> VerifyReport:
    """Re-read every listed shard: sha256, header, index, block checksums, counts, ids."""
    directory = Path(directory)
    if not directory.is_dir():
        raise Gpt2Error(f"{directory}: no such directory")
    _, shards = read_manifest(_manifest_path(directory))
    checks: list[ShardCheck] = []
    errors: list[str] = []
    task = progress.add_task("verify", total=len(shards), status="") if progress else None
    last_token: dict[str, int] = {}
    for info in shards:
        path = directory / info.name
        check = ShardCheck(info.name, info.split, info.tokens, info.documents, info.bytes, True)
        try:
            if not path.exists():
                raise Gpt2Error(f"the manifest lists {info.name}, which is missing")
            last_token[info.split] = verify_shard(path, info)
        except Gpt2Error as error:
            check.ok = False
            check.error = str(error)
            errors.append(str(error))
        checks.append(check)
        if progress:
            progress.advance(task)
    for split, token in last_token.items():
        if token != EOT:
            errors.append(f"the {split} split does not end with a whole document")
    listed = {info.name for info in shards}
    unlisted = sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.name.endswith(SHARD_SUFFIX) and entry.name not in listed
    )
    return VerifyReport(str(directory), checks, unlisted, errors)


# --------------------------------------------------------------------------------------------
# Reading a pack directory


def _manifest_path(directory: Path) -> Path:
    path = directory / MANIFEST
    if not path.exists():
        if not directory.exists():
            raise Gpt2Error(f"{directory}: no such directory")
        if part_names(directory):
            raise Gpt2Error(
                f"{directory}: has part manifests but no {MANIFEST}",
                f"run `gpt2 pack --merge {directory}`",
            )
        raise Gpt2Error(
            f"{directory}: no {MANIFEST}, not a pack directory", "make one with `gpt2 pack -o DIR`"
        )
    return path


class _Split:
    def __init__(self, name: str, infos: list[ShardInfo]) -> None:
        self.name = name
        self.infos = infos
        self.starts = [0]
        for info in infos:
            self.starts.append(self.starts[-1] + info.tokens)
        self.tokens = self.starts[-1]
        self.documents = sum(info.documents for info in infos)
        self.block_tokens = [0] * len(infos)  # filled from the headers as shards are opened
        digest = hashlib.sha256()
        for info in infos:
            digest.update(f"{info.name}:{info.sha256}\n".encode())
        self.fingerprint = digest.hexdigest()[:16]


class ShardDataset:
    """A pack directory: validated manifest, per-split token counts, random reads with a
    bounded cache of decompressed blocks."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_open: int = 64,
    ) -> None:
        self.directory = Path(directory)
        path = _manifest_path(self.directory)
        self.manifest, shards = read_manifest(path)
        self._splits: dict[str, _Split] = {}
        for split in dict.fromkeys(info.split for info in shards):
            self._splits[split] = _Split(split, [i for i in shards if i.split == split])
        for info in shards:
            shard_path = self.directory / info.name
            if not shard_path.exists():
                raise Gpt2Error(
                    f"{path}: lists {info.name}, which is missing", "re-pack, or restore the shard"
                )
            size = shard_path.stat().st_size
            if size != info.bytes:
                raise Gpt2Error(
                    f"{info.name}: shard is {size:,} bytes but the manifest says "
                    f"{info.bytes:,} (truncated or replaced)",
                    "re-pack it; `gpt2 pack --verify DIR` checks every shard",
                )
        self.cache_bytes = cache_bytes
        self.max_open = max_open
        self._readers: OrderedDict[str, ShardReader] = OrderedDict()
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cached = 0

    @property
    def splits(self) -> list[str]:
        return list(self._splits)

    def _split(self, split: str) -> _Split:
        try:
            return self._splits[split]
        except KeyError:
            have = ", ".join(self._splits) or "none"
            raise Gpt2Error(
                f"{self.directory}: no {split!r} split (splits: {have})",
                "pack with --val-tokens or --val-fraction for a val split"
                if split == "val"
                else None,
            ) from None

    def num_tokens(self, split: str) -> int:
        """Stored ids of the split, one ``<|endoftext|>`` per document included."""
        return self._split(split).tokens if split in self._splits else 0

    def num_documents(self, split: str) -> int:
        return self._split(split).documents if split in self._splits else 0

    def shards(self, split: str | None = None) -> list[ShardInfo]:
        if split is None:
            return [info for s in self._splits.values() for info in s.infos]
        return list(self._split(split).infos)

    def fingerprint(self, split: str) -> str:
        return self._split(split).fingerprint

    def reader(self, info: ShardInfo) -> ShardReader:
        reader = self._readers.get(info.name)
        if reader is not None:
            self._readers.move_to_end(info.name)
            return reader
        reader = ShardReader(self.directory / info.name, info.bytes)
        if reader.header.tokens != info.tokens or reader.header.documents != info.documents:
            reader.close()
            raise Gpt2Error(
                f"{info.name}: its header disagrees with the manifest "
                f"({reader.header.tokens:,} tokens, manifest {info.tokens:,})"
            )
        self._readers[info.name] = reader
        while len(self._readers) > self.max_open:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def _block(self, info: ShardInfo, block: int) -> np.ndarray:
        key = (info.name, block)
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            return data
        data = self.reader(info).block(block)
        self._cache[key] = data
        self._cached += data.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes
        return data

    def read_into(self, split: str, start: int, out: np.ndarray) -> None:
        """Fill ``out`` with the split's tokens from ``start`` on (across shards and blocks)."""
        s = self._splits.get(split) or self._split(split)
        length = len(out)
        if start < 0 or start + length > s.tokens:
            raise IndexError(f"tokens {start}..{start + length} outside the {split} split")
        filled = 0
        position = start
        starts = s.starts
        cache = self._cache
        while filled < length:
            k = bisect.bisect_right(starts, position) - 1
            local = position - starts[k]
            bt = s.block_tokens[k]
            if not bt:
                bt = s.block_tokens[k] = self.reader(s.infos[k]).header.block_tokens
            b = local // bt
            key = (s.infos[k].name, b)
            data = cache.get(key)
            if data is None:
                data = self._block(s.infos[k], b)
            else:
                cache.move_to_end(key)
            offset = local - b * bt
            n = min(length - filled, len(data) - offset)
            out[filled : filled + n] = data[offset : offset + n]
            filled += n
            position += n

    def read(self, split: str, start: int, length: int) -> np.ndarray:
        out = np.empty(length, dtype=np.uint16)
        self.read_into(split, start, out)
        return out

    def iter_tokens(self, split: str) -> Iterator[np.ndarray]:
        """The split's ids, block by block, in order (not cached)."""
        for info in self._split(split).infos:
            yield from self.reader(info).blocks()

    def iter_documents(self, split: str) -> Iterator[np.ndarray]:
        """Each document's ids, without its terminator."""
        pending: list[np.ndarray] = []
        for block in self.iter_tokens(split):
            ends = np.flatnonzero(block == EOT)
            start = 0
            for end in ends.tolist():
                pending.append(block[start:end])
                yield np.concatenate(pending) if len(pending) > 1 else pending[0].copy()
                pending = []
                start = end + 1
            if start < len(block):
                pending.append(block[start:].copy())
        if pending:
            yield np.concatenate(pending)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._cache.clear()
        self._cached = 0

    def __enter__(self) -> ShardDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# The data loader


class _Permutation:
    """A pseudo-random permutation of [0, n) (Feistel network + cycle walking), computed
    index by index in O(1) memory: window order without replacement for any corpus size."""

    ROUNDS = 4

    def __init__(self, n: int, key: int) -> None:
        self.n = n
        bits = max(2, (max(n, 1) - 1).bit_length())
        bits += bits % 2
        self.half = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        keys = []
        value = key & MASK64
        for _ in range(self.ROUNDS):
            value = splitmix64(value)
            keys.append(value)
        self.keys = [np.uint64(k) for k in keys]

    def _once(self, x: np.ndarray) -> np.ndarray:
        left = x >> self.half
        right = x & self.mask
        for key in self.keys:
            left, right = right, left ^ (mix_array(right ^ key) & self.mask)
        return (left << self.half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = self._once(positions.astype(np.uint64))
            outside = x >= self.n
            while outside.any():
                x[outside] = self._once(x[outside])
                outside = x >= self.n
        return x.astype(np.int64)


GLOBAL_SHUFFLE_TOKENS = 1 << 26  # splits up to this size: one permutation of all windows
CHUNK_TOKENS = 1 << 16  # larger splits: chunks of consecutive windows of about this many tokens,
BUFFER_TOKENS = 1 << 25  # shuffled together in groups of about this many tokens


class _EpochOrder:
    """One epoch's order of the windows, position -> window, in O(1) memory.

    A split of up to GLOBAL_SHUFFLE_TOKENS tokens gets one pseudo-random permutation
    of all its windows (the decompressed-block cache holds it all anyway). A larger
    split is cut into chunks of C consecutive windows (about CHUNK_TOKENS tokens); the
    chunks are permuted, taken K at a time (about BUFFER_TOKENS tokens), and the K*C
    windows of each group are permuted among themselves. Every window still comes
    exactly once per epoch, each batch mixes windows from K places all over the split,
    and each block is decompressed about once per epoch instead of once per window.
    The last n mod C windows are left out of such an epoch (under 0.1% of it).
    """

    def __init__(self, n: int, seq_len: int, key: int) -> None:
        if n * seq_len <= GLOBAL_SHUFFLE_TOKENS:
            self.chunk = 0
            self.size = n
            self._global = _Permutation(n, key)
            return
        self.chunk = max(1, CHUNK_TOKENS // seq_len)
        chunks = n // self.chunk
        self.group = max(2, BUFFER_TOKENS // (self.chunk * seq_len))
        self.chunks = chunks
        self.size = chunks * self.chunk
        self.key = key
        self._chunks = _Permutation(chunks, splitmix64(key ^ 0xC4C4))
        self._groups: dict[int, _Permutation] = {}

    def _group(self, g: int) -> _Permutation:
        perm = self._groups.get(g)
        if perm is None:
            count = min(self.group, self.chunks - g * self.group)
            perm = _Permutation(count * self.chunk, splitmix64(self.key ^ (g + 1)))
            if len(self._groups) > 4:
                self._groups.clear()
            self._groups[g] = perm
        return perm

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        if not self.chunk:
            return self._global(positions)
        span = self.group * self.chunk
        groups = positions // span
        slots = np.empty_like(positions)
        for g in np.unique(groups).tolist():
            where = groups == g
            slots[where] = self._group(g)(positions[where] - g * span)
        chunk_numbers = groups * self.group + slots // self.chunk
        return self._chunks(chunk_numbers) * self.chunk + slots % self.chunk


LOADER_STATE_FORMAT = "gpt2cli-token-loader"


class TokenLoader:
    """(x, y) batches of int64 tensors (B, T): windows of T+1 consecutive tokens of a split
    (across document boundaries), x = tokens[:-1], y = tokens[1:].

    Window w starts at token w*T, so each token is a target once per epoch. Each epoch
    visits the windows in a fresh pseudo-random order (without replacement) drawn from
    (seed, epoch), chunked for large splits (see ``_EpochOrder``); rank r of world_size
    takes global positions r, r + world_size, ...;
    every rank gets the same number of batches per epoch (the remainder is dropped).
    Iterating never ends unless ``epochs`` is given. ``state_dict()`` /
    ``load_state_dict()`` resume exactly at the next batch.
    """

    CHUNK_WINDOWS = 1 << 14

    def __init__(
        self,
        directory: str | os.PathLike[str] | ShardDataset,
        split: str,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epochs: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if seq_len < 1 or batch_size < 1:
            raise UsageError("sequence length and batch size must be positive")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"rank {rank} is not in [0, {world_size})")
        self.dataset = (
            directory
            if isinstance(directory, ShardDataset)
            else ShardDataset(directory, cache_bytes=cache_bytes)
        )
        self.split = split
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epochs = epochs
        tokens = self.dataset.num_tokens(split) if split in self.dataset.splits else 0
        self.dataset._split(split)  # a clear error for an absent split
        self.num_windows = max(0, (tokens - 1) // seq_len)
        self.windows_per_epoch = _EpochOrder(self.num_windows, seq_len, 0).size
        self.batches_per_epoch = self.windows_per_epoch // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise Gpt2Error(
                f"the {split} split of {self.dataset.directory} has {tokens:,} tokens: too few "
                f"for one batch of {batch_size} x {seq_len + 1} tokens"
                + (f" on each of {world_size} ranks" if world_size > 1 else ""),
                "lower --seq-len or the batch size, or pack more data",
            )
        self.epoch = 0
        self.step = 0  # batches taken in the current epoch
        self._permutation: _EpochOrder | None = None
        self._permutation_epoch = -1
        self._chunk: tuple[int, int, int, np.ndarray] | None = None

    def _order(self, epoch: int) -> _EpochOrder:
        if self._permutation is None or self._permutation_epoch != epoch:
            key = splitmix64(splitmix64(self.seed & MASK64) ^ epoch)
            self._permutation = _EpochOrder(self.num_windows, self.seq_len, key)
            self._permutation_epoch = epoch
        return self._permutation

    def window_indices(self, epoch: int, step: int) -> np.ndarray:
        """The window numbers of batch ``step`` of ``epoch`` for this rank."""
        chunk = self._chunk
        if chunk is None or chunk[0] != epoch or not chunk[1] <= step < chunk[2]:
            # Permute many batches' positions at once: numpy's per-call cost is then shared.
            first = step
            last = min(self.batches_per_epoch, step + max(1, self.CHUNK_WINDOWS // self.batch_size))
            positions = np.arange(first * self.batch_size, last * self.batch_size, dtype=np.int64)
            windows = self._order(epoch)(positions * self.world_size + self.rank)
            chunk = self._chunk = (epoch, first, last, windows.reshape(-1, self.batch_size))
        return chunk[3][step - chunk[1]]

    def next_numpy(self) -> np.ndarray:
        """The next batch as a (B, T+1) uint16 array (a fresh array each call)."""
        if self.step >= self.batches_per_epoch:
            self.epoch += 1
            self.step = 0
        if self.epochs is not None and self.epoch >= self.epochs:
            raise StopIteration
        windows = self.window_indices(self.epoch, self.step)
        out = np.empty((self.batch_size, self.seq_len + 1), dtype=np.uint16)
        read_into = self.dataset.read_into
        split = self.split
        t = self.seq_len
        for row, window in enumerate(windows.tolist()):
            read_into(split, window * t, out[row])
        self.step += 1
        return out

    def __iter__(self) -> TokenLoader:
        return self

    def __next__(self) -> tuple[Any, Any]:
        import torch

        batch = torch.from_numpy(self.next_numpy().astype(np.int64))
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": LOADER_STATE_FORMAT,
            "version": 1,
            "split": self.split,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "world_size": self.world_size,
            "rank": self.rank,
            "dataset": self.dataset.fingerprint(self.split),
            "num_windows": self.num_windows,
            "epoch": self.epoch,
            "consumed": self.step * self.batch_size * self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != LOADER_STATE_FORMAT:
            raise Gpt2Error("not a token loader state")
        for key in ("split", "seq_len", "batch_size", "seed"):
            if state.get(key) != getattr(self, key):
                raise Gpt2Error(
                    f"cannot resume the data position: {key} was {state.get(key)!r}, "
                    f"now {getattr(self, key)!r}"
                )
        if state.get("dataset") != self.dataset.fingerprint(self.split):
            raise Gpt2Error(
                "cannot resume the data position: the shards of the "
                f"{self.split} split changed since it was saved"
            )
        per_step = self.batch_size * self.world_size
        consumed = int(state["consumed"])
        if consumed % per_step:
            raise Gpt2Error(
                f"cannot resume the data position on {self.world_size} ranks: "
                f"{consumed} windows taken is not a whole number of batches"
            )
        self.epoch = int(state["epoch"])
        self.step = consumed // per_step
