"""A pack directory for reading: its splits, their token counts, and random reads of
token windows through a bounded cache of decompressed blocks."""

from __future__ import annotations

import bisect
import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gpt2cli.data.manifest import ShardInfo, manifest_path, read_manifest
from gpt2cli.data.shard_format import ShardReader
from gpt2cli.errors import Gpt2Error
from gpt2cli.text.tokenizer import EOT

DEFAULT_CACHE_BYTES = 256 << 20


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
        path = manifest_path(self.directory)
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

    def check_split(self, split: str) -> None:
        """Raise the error that names the splits there are if ``split`` is not one."""
        self._split(split)

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
