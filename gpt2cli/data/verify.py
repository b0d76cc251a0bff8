"""``gpt2 pack --verify``: re-read every listed shard of a pack directory and report."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpt2cli.data.manifest import (
    MANIFEST,
    ShardInfo,
    check_directory,
    check_part,
    manifest_path,
    part_manifest_name,
    part_names,
    read_manifest,
)
from gpt2cli.data.shard_format import SHARD_SUFFIX, ShardReader, corrupt_block
from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import sha256_file
from gpt2cli.text.tokenizer import EOT

_TEMP_SHARD = re.compile(rf"^\..*\{SHARD_SUFFIX}\.tmp-\d+$")


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

    def totals(self) -> dict[str, int | float]:
        """The splits' rows summed, with the compression ratio of the whole directory."""
        total: dict[str, int | float] = dict.fromkeys(
            ("shards", "tokens", "documents", "bytes", "bad"), 0
        )
        for row in self.splits().values():
            for key in total:
                total[key] += int(row[key])
        total["compression"] = 2 * total["tokens"] / total["bytes"] if total["bytes"] else 0.0
        return total

    def raise_if_damaged(self) -> None:
        if self.errors:
            more = f" (and {len(self.errors) - 1} more problems)" if len(self.errors) > 1 else ""
            raise Gpt2Error(f"{self.directory}: damaged: {self.errors[0]}{more}")

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
                raise corrupt_block(
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


def _part_errors(directory: Path, shards: list[ShardInfo]) -> list[str]:
    """What --merge would refuse: each part manifest checked as --merge checks it, and
    listed in manifest.yaml as it says."""
    union = {info.name: info for info in shards}
    errors = []
    for part in part_names(directory):
        try:
            listed = check_part(directory, part)
        except Gpt2Error as error:
            errors.append(str(error))
            continue
        for info in listed:
            if union.get(info.name) != info:
                errors.append(
                    f"{part_manifest_name(part)} and {MANIFEST} disagree about {info.name} "
                    f"(run `gpt2 pack --merge {directory}`)"
                )
                break
    return errors


def verify(directory: str | os.PathLike[str], progress: Any = None) -> VerifyReport:
    """Re-read every listed shard: sha256, header, index, block checksums, counts, ids."""
    directory = Path(directory)
    check_directory(directory)
    _, shards = read_manifest(manifest_path(directory))
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
    errors.extend(_part_errors(directory, shards))
    listed = {info.name for info in shards}
    unlisted = sorted(
        entry.name
        for entry in directory.iterdir()
        if (entry.name.endswith(SHARD_SUFFIX) or _TEMP_SHARD.match(entry.name))
        and entry.name not in listed
    )
    return VerifyReport(str(directory), checks, unlisted, errors)
