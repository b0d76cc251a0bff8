"""llm.c's token files (``fineweb_val_000000.bin``, as llm.c's ``dev/data`` scripts and
modded-nanogpt write them), read and written.

Format: docs/formats.md#llmc-token-files.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gpt2cli.data.manifest import SPLITS
from gpt2cli.data.pack import (
    Packer,
    PackOptions,
    PackResult,
    check_options,
    close_part,
    part_directory,
    publish_part,
    remove_written,
)
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import (
    atomic_write,
    check_name,
    create_new,
    file_mode,
    fsync_directory,
    open_binary_input,
    open_file,
)
from gpt2cli.locking import another_process_alive
from gpt2cli.text import token_stream
from gpt2cli.text.tokenizer import EOT, VOCAB_SIZE

MAGIC = 20240520
VERSION = 1
LLAMA3_MAGIC = 20240801
HEADER_INTS = 256
HEADER_BYTES = 4 * HEADER_INTS
MAX_TOKENS = 2**31 - 1  # header[2] is an int32
DEFAULT_FILE_TOKENS = 100_000_000  # llm.c's --shard_size (and gpt2cli's shards)
READ_TOKENS = 1 << 22
MAGIC_BYTES = MAGIC.to_bytes(4, "little")
_LLAMA3_BYTES = LLAMA3_MAGIC.to_bytes(4, "little")


def looks_like_llmc(first_bytes: bytes) -> bool:
    """Whether a file starting with these bytes is an llm.c token file (GPT-2 or LLaMA-3)."""
    return first_bytes[:4] in (MAGIC_BYTES, _LLAMA3_BYTES)


def parse_header(header: bytes, name: str, size: int | None = None) -> int:
    """The token count of an llm.c header, checked (and the file's length, when known)."""
    if header.startswith(token_stream.MAGIC):
        raise Gpt2Error(
            f"{name}: a gpt2 token stream, not an llm.c token file",
            "gpt2 pack and gpt2 score read it without --from-llmc",
        )
    if len(header) >= 4 and not looks_like_llmc(header):
        magic = int.from_bytes(header[:4], "little", signed=True)
        raise Gpt2Error(
            f"{name}: not an llm.c token file (magic {magic}, expected {MAGIC} at byte 0)"
        )
    if len(header) < HEADER_BYTES:
        raise Gpt2Error(
            f"{name}: not an llm.c token file (only {len(header)} bytes, the header is "
            f"{HEADER_BYTES})"
        )
    magic, version, count = (int(v) for v in np.frombuffer(header[:12], dtype="<i4"))
    if magic == LLAMA3_MAGIC:
        raise Gpt2Error(
            f"{name}: an llm.c LLaMA-3 token file (magic {LLAMA3_MAGIC}, uint32 ids), "
            "not GPT-2 tokens",
            "tokenize the text for GPT-2 (llm.c: fineweb.py --model_desc gpt-2)",
        )
    if magic != MAGIC:
        raise Gpt2Error(
            f"{name}: not an llm.c token file (magic {magic}, expected {MAGIC} at byte 0)"
        )
    if version != VERSION:
        raise Gpt2Error(
            f"{name}: llm.c token file version {version} is not supported "
            f"(GPT-2 token files are version {VERSION})"
        )
    if count < 0:
        raise Gpt2Error(f"{name}: llm.c header gives a negative token count ({count})")
    if size is not None and size != HEADER_BYTES + 2 * count:
        raise Gpt2Error(
            f"{name}: {size:,} bytes, but its llm.c header gives {count:,} tokens "
            f"({HEADER_BYTES + 2 * count:,} bytes: truncated or not llm.c's)"
        )
    return count


def _check_ids(ids: np.ndarray, name: str, offset: int) -> None:
    too_big = np.flatnonzero(ids >= VOCAB_SIZE)
    if too_big.size:
        raise Gpt2Error(
            f"{name}: token id {int(ids[too_big[0]])} is not below {VOCAB_SIZE} "
            f"(token {offset + int(too_big[0])})"
        )


def check_file(path: str | os.PathLike[str]) -> int:
    """The token count of an llm.c file, after checking its header and length."""
    with open_file(path, "llm.c token file") as handle:
        header = handle.read(HEADER_BYTES)
        size = os.fstat(handle.fileno()).st_size
    return parse_header(header, str(path), size)


def read_blocks(
    handle: BinaryIO, name: str, read_tokens: int = READ_TOKENS
) -> Iterator[np.ndarray]:
    """The ids of one llm.c file open at its start (a file or a pipe), block by block,
    checked: the header, every id, and that exactly the counted tokens follow."""
    header = handle.read(HEADER_BYTES)
    size = None
    try:
        if os.path.isfile(handle.name):  # type: ignore[attr-defined]
            size = os.fstat(handle.fileno()).st_size
    except (AttributeError, OSError, TypeError, ValueError):
        size = None
    count = parse_header(header, name, size)
    done = 0
    while done < count:
        data = handle.read(2 * min(read_tokens, count - done))
        if len(data) % 2 or not data:
            break
        ids = np.frombuffer(data, dtype="<u2")
        _check_ids(ids, name, done)
        done += ids.size
        yield ids
    if done != count or handle.read(1):
        raise Gpt2Error(
            f"{name}: its llm.c header gives {count:,} tokens, but "
            + (f"only {done:,} follow" if done < count else "more follow")
        )


def documents(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The documents (ids without 50256) of llm.c ids, where each document is preceded by
    50256; ids before the first 50256 (a document begun in an earlier file) are one too."""
    pending: list[np.ndarray] = []
    started = False  # whether anything (a 50256 or a partial document) has been seen
    for block in blocks:
        starts = np.flatnonzero(block == EOT).tolist()
        begin = 0
        for start in starts:
            if started:
                pending.append(block[begin:start])
                yield np.concatenate(pending) if len(pending) > 1 else pending[0].copy()
                pending = []
            elif start > 0:
                yield block[:start].copy()
            started = True
            begin = start + 1
        if begin < block.size:
            pending.append(block[begin:].copy())
            started = True
    if pending or started:
        yield np.concatenate(pending) if pending else np.empty(0, dtype=np.uint16)


def to_terminated(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """llm.c ids (each document preceded by 50256) as gpt2cli's (each terminated by it):
    a leading 50256 moves to the end (ids before the first 50256 stay a document)."""
    first = True
    for block in blocks:
        if first and block.size:
            first = False
            block = block[1:] if int(block[0]) == EOT else block
        yield block
    yield np.array([EOT], dtype=np.uint16)


def starts_with_eot(path: str) -> bool:
    """Whether the (checked) llm.c file's first id is 50256 (or it holds none)."""
    with open(path, "rb") as handle:
        handle.seek(HEADER_BYTES)
        first = handle.read(2)
    return len(first) < 2 or int.from_bytes(first, "little") == EOT


def to_preceded(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """gpt2cli ids (each document terminated by 50256) as llm.c's (each preceded by it)."""
    held = np.array([EOT], dtype=np.uint16)
    for block in blocks:
        if not block.size:
            continue
        yield np.concatenate([held, block[:-1]])
        held = block[-1:]
    if int(held[0]) != EOT:
        yield held


def write_file(path: str | os.PathLike[str], ids: np.ndarray) -> None:
    """One llm.c token file of ``ids``, atomically."""
    with atomic_write(path) as handle:
        _write_ids(handle, ids, path)


def _write_ids(handle: BinaryIO, ids: np.ndarray, path: str | os.PathLike[str]) -> None:
    if ids.size > MAX_TOKENS:
        raise Gpt2Error(f"{path}: {ids.size:,} tokens do not fit an llm.c header (int32)")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, ids.size)
    handle.write(header.tobytes())
    handle.write(ids.astype("<u2", copy=False).tobytes())


def split_of(path: str) -> str:
    """llm.c's naming: ``*_val_*`` files are the val split, every other file train."""
    stem = Path(path).name.lower()
    return "val" if "_val_" in stem or stem.startswith("val") else "train"


def pack_files(
    files: list[str],
    directory: str | os.PathLike[str],
    options: PackOptions,
    split: str | None = None,
    progress: Any = None,
) -> PackResult:
    """Pack llm.c files into a pack directory (part ``options.name``): each split's files,
    in the order given, as one stream of documents (``split``: every file into that split;
    default :func:`split_of`). Every file is checked before anything is written."""
    check_options(options)
    if split is not None and split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    counts = {name: check_file(name) for name in files}
    groups: dict[str, list[str]] = {}
    for name in files:
        groups.setdefault(split or split_of(name), []).append(name)
    directory = Path(directory)
    with part_directory(directory, options) as created:
        result = PackResult(directory, options.name)
        packer = Packer(directory, options)
        total = sum(counts.values())
        task = progress.add_task("pack", total=total, status="") if progress else None
        try:
            for group, names in groups.items():
                writer = packer.writer(group)
                for ids in to_terminated(_file_blocks(names, progress, task)):
                    writer.write(ids)
                if not starts_with_eot(names[0]):
                    result.warnings.append(
                        f"{names[0]} does not start with <|endoftext|> (it starts inside a "
                        "document begun in an earlier file): its first ids are packed as a document"
                    )
                result.input_bytes += sum(os.path.getsize(name) for name in names)
            close_part(packer, result, {"from_llmc": [os.path.basename(name) for name in files]})
            publish_part(result)
        except BaseException:
            remove_written(directory, packer, options.name, created)
            raise
    return result


def _file_blocks(names: list[str], progress: Any, task: Any) -> Iterator[np.ndarray]:
    for name in names:
        handle = open_binary_input(name)
        try:
            for ids in read_blocks(handle, name):
                if progress:
                    progress.advance(task, ids.size)
                yield ids
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()


@dataclass
class WrittenFile:
    path: Path
    split: str
    tokens: int


def export(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    splits: list[str] | None = None,
    file_tokens: int = DEFAULT_FILE_TOKENS,
    prefix: str = "data",
) -> list[WrittenFile]:
    """Write the splits of pack directory ``source`` as llm.c files in ``output``: val first,
    ``PREFIX_SPLIT_NNNNNN.bin``, numbered on across splits as llm.c's fineweb.py numbers them,
    ``file_tokens`` ids each (the last file of a split holds the rest).

    All or nothing, as ``pack`` is: every file is written under a hidden temp name
    (``.NAME.tmp-PID``) and the whole set renamed at the end; a failure (full disk, Ctrl-C, a
    damaged shard) removes the temp files, and ``output`` if this call made it; those of a
    killed export are removed by the next."""
    from gpt2cli.data.dataset import ShardDataset

    check_name(prefix, "--name")
    if not 1 <= file_tokens <= MAX_TOKENS:
        raise UsageError(f"--shard-tokens must be between 1 and {MAX_TOKENS} for llm.c files")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"-o {output}: is a file, not a directory")
    written: list[WrittenFile] = []
    temps: list[Path] = []
    created = False
    with ShardDataset(source) as dataset:
        chosen = splits or [s for s in ("val", "train") if s in dataset.splits]
        for split in chosen:
            if split not in dataset.splits:
                raise UsageError(
                    f"{source}: has no {split} split", "splits: " + ", ".join(dataset.splits)
                )
        created = not output.exists()
        try:
            output.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(output, prefix)
            for split in chosen:
                buffer = np.empty(file_tokens, dtype=np.uint16)
                filled = 0
                for block in to_preceded(dataset.iter_tokens(split)):
                    while block.size:
                        take = min(block.size, file_tokens - filled)
                        buffer[filled : filled + take] = block[:take]
                        filled += take
                        block = block[take:]
                        if filled == file_tokens:
                            _write_next(output, prefix, split, buffer, written, temps)
                            filled = 0
                if filled or not any(w.split == split for w in written):
                    _write_next(output, prefix, split, buffer[:filled], written, temps)
            for temp, done in zip(temps, written, strict=True):
                os.replace(temp, done.path)
            temps.clear()
            fsync_directory(output)
        except BaseException:
            for temp in temps:
                with suppress(OSError):
                    temp.unlink()
            if created:
                with suppress(OSError):
                    output.rmdir()  # only if empty: nothing of anyone else's is removed
            raise
    return written


def _remove_stale_temps(output: Path, prefix: str) -> None:
    """The temp files of killed exports of ``prefix`` (kill -9 leaves them: their process
    is gone); those of a live export are left alone."""
    pattern = re.compile(rf"^\.{re.escape(prefix)}_\w+_\d{{6}}\.bin\.tmp-(\d+)$")
    for entry in output.iterdir():
        match = pattern.match(entry.name)
        if match and not another_process_alive(int(match.group(1))):
            with suppress(OSError):
                entry.unlink()


def _write_next(
    output: Path,
    prefix: str,
    split: str,
    ids: np.ndarray,
    written: list[WrittenFile],
    temps: list[Path],
) -> None:
    """The next file, under a temp name (renamed by :func:`export` when all are written)."""
    path = output / f"{prefix}_{split}_{len(written):06d}.bin"
    temp = output / f".{path.name}.tmp-{os.getpid()}"
    temps.append(temp)
    try:
        with create_new(temp) as handle:
            _write_ids(handle, ids, path)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), file_mode())
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise
    written.append(WrittenFile(path, split, int(ids.size)))
