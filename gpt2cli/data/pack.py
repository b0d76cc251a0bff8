"""Packing token streams into a pack directory: the train/val split, the shuffle buffer,
and one part (its shards, then its manifest, then the refreshed union manifest)."""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpt2cli import option_fields
from gpt2cli.data.manifest import (
    DEFAULT_NAME,
    MANIFEST,
    MAX_BLOCK_TOKENS,
    SPLITS,
    ShardInfo,
    merge,
    part_manifest_name,
    read_manifest,
    write_part_manifest,
)
from gpt2cli.data.shard_format import (
    DEFAULT_BLOCK_TOKENS,
    DEFAULT_LEVEL,
    DEFAULT_SHARD_TOKENS,
    SHARD_SUFFIX,
    ShardWriter,
)
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import check_name, open_binary_input
from gpt2cli.locking import exclusive_lock
from gpt2cli.option_fields import at_most, between, non_negative, option, positive
from gpt2cli.splitmix import MASK64, splitmix64, splitmix64_array
from gpt2cli.text.token_stream import TokenStreamReader
from gpt2cli.text.tokenizer import EOT


def _unit(seed: int, salt: int, index: int) -> float:
    """A deterministic uniform number in [0, 1) for (seed, salt, index)."""
    return splitmix64(splitmix64(splitmix64(seed & MASK64) ^ salt) ^ index) / 2.0**64


@dataclass
class PackOptions:
    """The options of ``gpt2 pack`` that decide the shards: each field is also its flag and
    --help text (:mod:`gpt2cli.option_fields`), in --help's order."""

    shard_tokens: int = option(
        DEFAULT_SHARD_TOKENS,
        "Tokens per shard (the last shard of a split holds the rest).",
        rule=positive,
    )
    val_tokens: int = option(
        0,
        "Put whole documents totalling at least this many tokens in the val split (a sample "
        "of the whole input when reading files; from the start of a pipe).",
        show_default=False,
        rule=non_negative,
    )
    val_fraction: float = option(
        0.0,
        "Or put each document in the val split with this probability.",
        show_default=False,
    )
    seed: int = option(0, "Seed of the train/val split and shuffle.")
    shuffle_buffer: int = option(
        0,
        "Shuffle documents through a buffer of this many documents (0: keep order).",
        show_default=False,
        rule=non_negative,
    )
    name: str = option(
        DEFAULT_NAME, "Part name: shards are NAME-SPLIT-NNNNN.shard, listed in manifest.NAME.yaml."
    )
    append: bool = option(
        False,
        "Add a part to a non-empty DIR (e.g. one per parallel job, each its own --name); "
        "DIR/manifest.yaml is refreshed to cover every finished part.",
    )
    block_tokens: int = option(
        DEFAULT_BLOCK_TOKENS,
        "Tokens per independently compressed block (random-access granularity).",
        rule=(positive, at_most(MAX_BLOCK_TOKENS)),
    )
    level: int = option(DEFAULT_LEVEL, "zstd level.", rule=between(1, 22))


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
    option_fields.check(options)
    check_name(options.name, "--name")
    if options.name == "manifest":
        raise UsageError("--name 'manifest' is not a usable part name", "choose another --name")
    if not 0.0 <= options.val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), not {options.val_fraction}")
    if options.val_tokens and options.val_fraction:
        raise UsageError("give --val-tokens or --val-fraction, not both")


def part_lock_name(part: str) -> str:
    return f".{part}.lock"


def _is_lock(name: str) -> bool:
    return name.startswith(".") and name.endswith(".lock")


def create_directory(directory: Path) -> bool:
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
    return False


def prepare_directory(directory: Path, options: PackOptions) -> None:
    """With the part's lock held: refuse a directory that is not ours to write, and remove
    the leftovers of killed runs of this part (unlisted by construction)."""
    entries = [entry for entry in directory.iterdir() if not _is_lock(entry.name)]
    if entries and not options.append:
        raise UsageError(
            f"-o {directory}: directory is not empty",
            "pass --append --name NAME to add a part, or choose an empty directory",
        )
    if (directory / part_manifest_name(options.name)).exists():
        raise UsageError(
            f"-o {directory}: already holds a part named {options.name!r}", "choose another --name"
        )
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


def remove_written(directory: Path, packer: Packer, part: str, created: bool) -> None:
    """After a failure (disk full, Ctrl-C, bad input): remove every file this run wrote,
    each removal surviving errors of its own."""
    packer.abort()
    try:
        (directory / part_manifest_name(part)).unlink(missing_ok=True)
        if created and all(_is_lock(entry.name) for entry in directory.iterdir()):
            for entry in directory.iterdir():
                entry.unlink(missing_ok=True)
            directory.rmdir()
    except OSError:
        pass


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


def close_part(packer: Packer, result: PackResult, settings: dict[str, Any]) -> None:
    """Finish the part's shards and write its manifest (``settings`` and the shard layout)."""
    o = packer.options
    result.shards = packer.close()
    layout = {"shard_tokens": o.shard_tokens, "block_tokens": o.block_tokens, "zstd_level": o.level}
    write_part_manifest(packer.directory, o.name, result.shards, {**settings, **layout})


def publish_part(result: PackResult) -> None:
    """List the finished part in DIR/manifest.yaml and count what it holds."""
    merge(result.directory)
    result.documents = sum(info.documents for info in result.shards)
    result.tokens = sum(info.tokens for info in result.shards)


def pack(
    inputs: list[str],
    directory: str | os.PathLike[str],
    options: PackOptions,
    progress: Any = None,
) -> PackResult:
    """Pack token streams into DIR as part ``options.name``; writes the part manifest last,
    then refreshes DIR/manifest.yaml. On any failure, removes what this run wrote."""
    check_options(options)
    if "-" in inputs and sys.stdin.isatty():
        raise UsageError(
            "stdin is a terminal, not a token stream",
            "pipe `gpt2 tokenize` into it, or name STREAM files",
        )
    directory = Path(directory)
    with part_directory(directory, options) as created:
        return _pack_part(inputs, directory, options, created, progress)


@contextmanager
def part_directory(directory: Path, options: PackOptions) -> Iterator[bool]:
    """Hold part ``options.name`` of DIR for one run (created if need be, its lock taken, the
    leftovers of its killed runs removed); yields whether this run created DIR."""
    created = create_directory(directory)
    ready = False
    try:
        with exclusive_lock(
            directory / part_lock_name(options.name), f"part {options.name!r} of {directory}"
        ):
            prepare_directory(directory, options)
            ready = True
            yield created
    except BaseException:
        if created and not ready:  # the lock could not even be taken (no inode left...)
            with suppress(OSError):
                directory.rmdir()
        raise


def _pack_part(
    inputs: list[str], directory: Path, options: PackOptions, created: bool, progress: Any
) -> PackResult:
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
        close_part(
            packer,
            result,
            {
                "seed": options.seed,
                "val_tokens": options.val_tokens,
                "val_fraction": options.val_fraction,
                "shuffle_buffer": options.shuffle_buffer,
            },
        )
        publish_part(result)
    except BaseException:
        remove_written(directory, packer, options.name, created)
        raise
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
