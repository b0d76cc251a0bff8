"""Building a filter from documents (sized by a counting pass, or by ``--capacity``) and
merging filters built in parts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2cli.console import Stopwatch
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write, check_output_file, spool_stdin
from gpt2cli.option_fields import option
from gpt2cli.overlap.filter_file import BloomFilter, Header, iter_chunks
from gpt2cli.overlap.hyperloglog import HLL_REGISTERS, hll_estimate, hll_update
from gpt2cli.overlap.ngrams import Batch, NgramBatcher
from gpt2cli.overlap.sizing import check_fp_rate, check_n, optimal_shape, parse_count
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.readers import Piece

CAPACITY_MARGIN = 1.05  # HyperLogLog estimate (std. error 0.8% at p=14) times this


@dataclass(frozen=True)
class BuildOptions(ReadOptions):
    """``gpt2 overlap build``'s settings: the filter's shape and how the input is read. Each
    field is also its flag and --help text (:mod:`gpt2cli.option_fields`)."""

    n: int = option(8, "Words per n-gram.", "-n")
    capacity: str | int | None = option(  # None: counted with a first pass; text: "5e9"
        None,
        "Distinct n-grams the filter must hold (e.g. 5e9). Default: counted with a first pass "
        "over the input (a HyperLogLog estimate, plus 5%); stdin is copied to a temporary file "
        "beside the output for that.",
        "-c",
        show_default=False,
    )
    fp_rate: float = option(
        1e-8,
        "False-positive rate at capacity: the filter gets the fewest blocks of k 64-bit words "
        "(k bits per n-gram, one per word of one block) that keep it.",
        "-p",
    )
    hashes: int | None = option(
        None,
        "Bits per n-gram (1-64) instead of the default (18 at 1e-8): fewer is less work per "
        "n-gram and a larger filter for the same bound (14 at 1e-8: 15% larger, a faster "
        "build).",
        "-k",
        show_default=False,
    )

    def capacity_count(self) -> int | None:
        """--capacity as a number (UsageError for text that is not a count)."""
        if isinstance(self.capacity, str):
            return parse_count(self.capacity, "--capacity")
        return self.capacity


@dataclass
class BuildResult:
    header: Header
    documents: int
    nbytes: int
    distinct_estimate: float
    capacity_from: str  # "option" or "estimate"
    seconds_counting: float = 0.0
    seconds: float = 0.0
    built: BloomFilter | None = None  # the written filter, opened for its figures

    @property
    def mb_per_s(self) -> float:
        """Text read per second by the building pass (the counting pass left out)."""
        return self.nbytes / 1e6 / max(self.seconds - self.seconds_counting, 1e-9)

    def to_dict(self) -> dict:
        """The ``--json`` record: the filter's figures and the run's."""
        record = self.built.summary() if self.built is not None else {}
        record.update(
            documents=self.documents,
            text_bytes=self.nbytes,
            seconds=round(self.seconds, 3),
            capacity_from=self.capacity_from,
        )
        return record


def estimate_distinct(
    pieces: Iterable[Piece], n: int, on_batch: Callable[[Batch], None] | None = None
) -> tuple[float, int, int]:
    """(HyperLogLog estimate of distinct n-grams, documents, bytes) in one pass."""
    registers = np.zeros(HLL_REGISTERS, dtype=np.uint8)
    batcher = NgramBatcher(n, track=False)
    nbytes = 0
    for batch in batcher.batches(pieces):
        hll_update(registers, batch.hashes)
        nbytes += batch.nbytes
        if on_batch:
            on_batch(batch)
    return hll_estimate(registers), batcher.documents, nbytes


def capacity_from_estimate(estimate: float) -> int:
    return max(1, math.ceil(estimate * CAPACITY_MARGIN))


def build(
    inputs: list[str],
    output: Path,
    options: BuildOptions,
    on_counted: Callable[[float], None] | None = None,
) -> BuildResult:
    """``gpt2 overlap build``: a filter of every n-gram of ``inputs`` written to ``output``.

    Without a capacity the input is read twice (a counting pass, then the build), stdin
    through a temp copy beside the output; ``on_counted`` gets the counting pass's seconds.
    """
    options.check_format()
    capacity = options.capacity_count()
    check_fp_rate(options.fp_rate)
    check_n(options.n)
    check_output_file(output)
    timer = Stopwatch()
    count_seconds = 0.0
    passes: list[str] = []

    def on_pass(name: str) -> None:
        nonlocal count_seconds
        passes.append(name)
        if name == "build" and len(passes) == 2:
            count_seconds = timer.seconds
            if on_counted:
                on_counted(count_seconds)

    spool_to = output.parent if str(output.parent) else Path(".")
    twice = capacity is None  # stdin cannot be read twice: a copy for the second pass
    with spool_stdin(inputs, spool_to, "gpt2-overlap") if twice else nullcontext(inputs) as sources:

        def pieces() -> Iterable[Piece]:
            return options.pieces(sources)

        result = build_filter(
            pieces,
            output,
            options.n,
            options.fp_rate,
            capacity,
            on_pass=on_pass,
            hashes=options.hashes,
        )
    result.seconds = timer.seconds
    result.seconds_counting = count_seconds
    result.built = BloomFilter.open(output, verify=False)
    return result


def build_filter(
    pieces: Callable[[], Iterable[Piece]],
    output: Path,
    n: int,
    fp_rate: float,
    capacity: int | None,
    on_batch: Callable[[Batch], None] | None = None,
    on_pass: Callable[[str], None] | None = None,
    in_memory: bool | None = None,
    hashes: int | None = None,
) -> BuildResult:
    """Build a filter from ``pieces()`` (called twice when the capacity must be counted first)."""
    check_fp_rate(fp_rate)
    check_n(n)
    if hashes is not None:
        optimal_shape(1, fp_rate, hashes)  # validate before any counting pass
    capacity_from = "option"
    if capacity is None:
        if on_pass:
            on_pass("count")
        estimate, documents, _ = estimate_distinct(pieces(), n, on_batch)
        if estimate < 0.5:
            what = "no documents" if documents == 0 else f"{documents:,} documents but no {n}-grams"
            raise Gpt2Error(
                f"empty input: {what}, nothing to size the filter from",
                f"documents need at least {n} words; or give --capacity to write an empty filter",
            )
        capacity = capacity_from_estimate(estimate)
        capacity_from = "estimate"
    m, k = optimal_shape(capacity, fp_rate, hashes)
    header = Header(n=n, k=k, m=m, capacity=capacity, fp_rate=fp_rate)
    if on_pass:
        on_pass("build")
    batcher = NgramBatcher(n, track=False)
    nbytes = 0
    with atomic_write(output, "w+b") as handle:
        bloom_filter = BloomFilter.create(handle, header, in_memory)
        for batch in batcher.batches(pieces()):
            bloom_filter.add(batch.hashes)
            nbytes += batch.nbytes
            if on_batch:
                on_batch(batch)
        bloom_filter.finish(handle)
        distinct = bloom_filter.distinct_estimate
        del bloom_filter
    return BuildResult(header, batcher.documents, nbytes, distinct, capacity_from)


def merge_filters(inputs: list[str], output: Path) -> tuple[Header, float]:
    """OR of filters with the same n, m, k and normalisation; written atomically to ``output``."""
    if not inputs:
        raise UsageError("merge needs at least one filter file")
    filters = [BloomFilter.open(name) for name in inputs]
    first = filters[0]
    for other in filters[1:]:
        if other.header.shape() != first.header.shape():
            raise Gpt2Error(
                f"cannot merge {other.path} ({other.header.describe()}) with {first.path} "
                f"({first.header.describe()}): filters differ in shape",
                "build every part with the same --n, --capacity and --fp-rate",
            )
    header = Header(
        n=first.header.n,
        k=first.header.k,
        m=first.header.m,
        capacity=max(f.header.capacity for f in filters),
        fp_rate=first.header.fp_rate,
        items=sum(f.header.items for f in filters),
    )
    registers = first.registers.copy()
    for other in filters[1:]:
        np.maximum(registers, other.registers, out=registers)
    with atomic_write(output, "w+b") as handle:
        merged = BloomFilter.create(handle, header)
        merged.registers[:] = registers
        for part in iter_chunks(merged.words.size):
            block = np.array(first.words[part])
            for other in filters[1:]:
                block |= other.words[part]
            merged.words[part] = block
        merged.finish(handle)
        distinct = merged.distinct_estimate
        del merged
    return header, distinct
