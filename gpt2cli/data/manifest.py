"""Pack-directory manifests: the part manifests, their union, ``--merge`` and the manifest lock.

Format: docs/formats.md#pack-directory and docs/formats.md#manifest.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import NAME_RE, atomic_write, fsync_directory, open_own_file
from gpt2cli.text.tokenizer import EOT, VOCAB_SIZE

MANIFEST = "manifest.yaml"
MANIFEST_FORMAT = "gpt2cli-shards"
MANIFEST_VERSION = 1
LOCK_NAME = ".manifest.lock"
SPLITS = ("train", "val")
DEFAULT_NAME = "data"
# The most tokens a shard block holds (pack --block-tokens refuses more): a header or manifest
# declaring more was not written by pack. Each block costs a shard at least its 16-byte index
# entry after the 64-byte header, which bounds the tokens a shard of N bytes can hold.
MAX_BLOCK_TOKENS = 1 << 24
_SHARD_HEADER_BYTES = 64
_INDEX_ENTRY_BYTES = 16


def max_shard_tokens(size: int) -> int:
    """The most tokens a shard file of ``size`` bytes could hold."""
    return max(0, size - _SHARD_HEADER_BYTES) // _INDEX_ENTRY_BYTES * MAX_BLOCK_TOKENS


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
        except KeyError as error:
            raise Gpt2Error(f"{where}: malformed shard entry (no {error.args[0]!r} key)") from None
        except (TypeError, ValueError, OverflowError) as error:
            raise Gpt2Error(f"{where}: malformed shard entry ({error})") from None
        if "/" in info.name or info.name.startswith(".") or "\0" in info.name:
            raise Gpt2Error(f"{where}: bad shard name {info.name!r}")
        if min(info.tokens, info.documents, info.bytes) < 0:
            raise Gpt2Error(f"{where}: {info.name}: negative count in its manifest entry")
        if info.documents > info.tokens or info.tokens > max_shard_tokens(info.bytes):
            raise Gpt2Error(
                f"{where}: {info.name}: {info.tokens:,} tokens ({info.documents:,} documents) "
                f"cannot be stored in {info.bytes:,} bytes: not a manifest pack wrote",
                "re-pack it; `gpt2 pack --verify DIR` checks every shard",
            )
        return info


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
def directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on DIR/.manifest.lock around manifest updates (best effort)."""
    try:
        handle = os.fdopen(open_own_file(directory / LOCK_NAME, os.O_WRONLY | os.O_CREAT), "ab")
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
        if NAME_RE.match(part):  # a part name becomes file names: the one rule for names
            names.append(part)
    return sorted(names)


def write_part_manifest(
    directory: Path, part: str, shards: list[ShardInfo], options: dict[str, Any]
) -> None:
    """Write DIR/manifest.NAME.yaml for a finished pack run, after its shards are durable."""
    manifest = _manifest_dict(shards, part=part, created=_now(), options=options)
    fsync_directory(directory)
    _write_yaml(directory / part_manifest_name(part), manifest)


@dataclass
class MergeResult:
    directory: Path
    parts: list[str]
    shards: list[ShardInfo]

    @property
    def tokens(self) -> int:
        return sum(info.tokens for info in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "parts": self.parts,
            "shards": len(self.shards),
            "tokens": self.tokens,
        }


def check_directory(directory: Path) -> None:
    """A pack directory given to --verify or --merge must be one."""
    if not directory.exists():
        raise Gpt2Error(f"{directory}: no such directory")
    if not directory.is_dir():
        raise Gpt2Error(f"{directory}: is a file, not a pack directory")


def check_part(directory: Path, part: str) -> list[ShardInfo]:
    """The shards part manifest ``manifest.PART.yaml`` lists, each present with its size
    (what --merge requires and --verify reports)."""
    listed = read_manifest(directory / part_manifest_name(part))[1]
    for info in listed:
        try:
            size = (directory / info.name).stat().st_size
        except FileNotFoundError:
            raise Gpt2Error(
                f"{part_manifest_name(part)} lists {info.name}, which is missing"
            ) from None
        if size != info.bytes:
            raise Gpt2Error(
                f"{info.name}: {size:,} bytes but {part_manifest_name(part)} says {info.bytes:,}"
            )
    return listed


def merge(directory: str | os.PathLike[str]) -> MergeResult:
    """Rebuild DIR/manifest.yaml as the union of every part manifest ``manifest.NAME.yaml``."""
    directory = Path(directory)
    check_directory(directory)
    with directory_lock(directory):
        parts = part_names(directory)
        if not parts:
            raise Gpt2Error(
                f"{directory}: no part manifests (manifest.NAME.yaml) to merge",
                "write some with `gpt2 pack -o DIR --name NAME`",
            )
        shards: list[ShardInfo] = []
        for part in parts:
            shards.extend(check_part(directory, part))
        names = [info.name for info in shards]
        if len(set(names)) != len(names):
            raise Gpt2Error(f"{directory}: two parts list the same shard")
        _write_yaml(directory / MANIFEST, _manifest_dict(shards, created=_now(), parts=parts))
    return MergeResult(directory, parts, shards)


def manifest_path(directory: Path) -> Path:
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
