"""Checking documents against a filter: n-grams found per document, aggregated per input or
kept per document, the ``--max-overlap`` decision, the kept documents rewritten in their
input format (decontamination), and probing a filter with random n-grams."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from gpt2cli import jsonio
from gpt2cli.console import Stopwatch
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write
from gpt2cli.option_fields import option
from gpt2cli.overlap.filter_file import BloomFilter
from gpt2cli.overlap.hashing import ngram_hashes, word_hashes
from gpt2cli.overlap.ngrams import Batch, DocInfo, NgramBatcher, document_pieces
from gpt2cli.overlap.report import CheckResult
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.readers import Piece


@dataclass
class Counts:
    name: str
    ngrams: int = 0
    found: int = 0
    documents: int = 0
    line: int | None = None
    index: int | None = None

    @property
    def fraction(self) -> float | None:
        return self.found / self.ngrams if self.ngrams else None

    @property
    def percent(self) -> float | None:
        return None if self.fraction is None else 100.0 * self.fraction

    def add(self, other: Counts) -> None:
        self.ngrams += other.ngrams
        self.found += other.found
        self.documents += other.documents


def check_batches(
    bloom_filter: BloomFilter, batches: Iterable[Batch]
) -> Iterator[tuple[Batch, list[DocInfo]]]:
    """Count n-grams and found n-grams per document; yields each batch's finished documents."""
    for batch in batches:
        if batch.hashes.size:
            found = bloom_filter.contains(batch.hashes)
            totals = np.bincount(batch.doc, minlength=len(batch.docs))
            hits = np.bincount(batch.doc[found], minlength=len(batch.docs))
            for info, total, hit in zip(batch.docs, totals.tolist(), hits.tolist()):
                info.ngrams += total
                info.found += hit
        yield batch, batch.finished


# ---------------------------------------------------------------------------------------------
# decontamination


def check_max_overlap(max_overlap: float) -> None:
    if not 0.0 <= max_overlap <= 100.0:
        raise UsageError(f"--max-overlap is a percentage from 0 to 100, not {max_overlap:g}")


def is_kept(counts: Counts, max_overlap: float) -> bool:
    """A document stays when at most ``max_overlap`` percent of its n-grams are found (a
    document with no n-grams stays)."""
    percent = counts.percent
    return percent is None or percent <= max_overlap


def write_document(
    out: IO[bytes], info: DocInfo, fmt: str | None, delimiter: str, first: bool
) -> None:
    """One document as its input had it: a JSON line with all its fields, a NUL-terminated
    text, or a text with the delimiter line between documents."""
    if info.fields is not None:
        out.write(jsonio.dumps(info.fields, ensure_ascii=False).encode("utf-8") + b"\n")
    elif fmt == "nul":
        out.write(info.text.encode("utf-8") + b"\0")
    else:
        if not first:
            out.write(f"\n{delimiter}\n".encode())
        out.write(info.text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# a whole check


@dataclass
class Failure:
    source: str
    reason: str


@dataclass
class CheckReport:
    rows: list[Counts] = field(default_factory=list)  # one per input, or per document
    total: Counts = field(default_factory=lambda: Counts("total"))
    nbytes: int = 0  # UTF-8 bytes of text read
    omitted: int = 0  # documents past ``max_rows`` (counted in the total, not in ``rows``)
    kept: int = 0
    removed: int = 0
    failures: list[Failure] = field(default_factory=list)  # inputs that could not be read


def _each_input(
    inputs: list[str], read: Callable[[list[str]], Iterable[Piece]], failures: list[Failure]
) -> Iterator[Piece]:
    """The pieces of every input in turn; an input that cannot be read (missing, not text in
    its encoding, malformed JSON) goes into ``failures``, the document it was in the middle
    of ends there, and the next input is read."""
    for name in inputs:
        source = "<stdin>" if name == "-" else name
        last: Piece | None = None
        try:
            for last in read([name]):
                yield last
        except UsageError:
            raise
        except (Gpt2Error, OSError) as error:
            reason = str(error) if isinstance(error, Gpt2Error) else error.strerror or str(error)
            failures.append(Failure(source, reason.removeprefix(f"{source}: ")))
            if last is not None and not last.last:
                yield Piece("", True, last.source, last.line, last.fields)


def check_inputs(
    bloom_filter: BloomFilter,
    inputs: list[str],
    reading: ReadOptions,
    *,
    per_doc: bool = False,
    max_rows: int | None = None,
    keep_to: IO[bytes] | None = None,
    max_overlap: float = 0.0,
    on_document: Callable[[Counts], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Check every document of ``inputs`` against the filter.

    Rows are one per input (every input, even an empty one, in order) or, with ``per_doc``,
    one per document up to ``max_rows``. An input that cannot be read is listed in
    ``failures`` (its row counts what was read before the error) and the others are checked;
    with ``keep_to`` (a decontaminated copy, which must be complete), it is an error. With
    ``keep_to``, the documents that ``is_kept`` allows are written there in their input
    format. ``on_document`` sees every document's counts as it finishes; ``on_progress`` the
    bytes of text read so far, after each batch.
    """
    report = CheckReport()
    total = report.total
    by_source: dict[str, Counts] = {}
    for name in inputs:
        source = "<stdin>" if name == "-" else name
        by_source.setdefault(source, Counts(source))
    exclude = keep_to is not None
    if exclude:
        pieces = document_pieces(inputs, reading)
    else:
        pieces = _each_input(
            inputs,
            reading.pieces,
            report.failures,
        )
    batcher = NgramBatcher(bloom_filter.header.n, keep_text=exclude)
    for batch, finished in check_batches(bloom_filter, batcher.batches(pieces)):
        report.nbytes += batch.nbytes
        if on_progress:
            on_progress(report.nbytes)
        for info in finished:
            counts = Counts(info.source, info.ngrams, info.found, 1, info.line, info.index)
            total.add(counts)
            if on_document:
                on_document(counts)
            if not per_doc:
                by_source.setdefault(info.source, Counts(info.source)).add(counts)
            elif max_rows is None or len(report.rows) < max_rows:
                report.rows.append(counts)
            else:
                report.omitted += 1
            if keep_to is not None:
                if is_kept(counts, max_overlap):
                    write_document(
                        keep_to, info, reading.format, reading.delimiter, report.kept == 0
                    )
                    report.kept += 1
                else:
                    report.removed += 1
    if not per_doc:
        report.rows = list(by_source.values())
    return report


# ---------------------------------------------------------------------------------------------
# probing


@dataclass
class ProbeResult:
    probes: int
    false_positives: int
    estimated_fp_rate: float

    @property
    def measured_fp_rate(self) -> float:
        return self.false_positives / self.probes if self.probes else 0.0


PROBE_WORD_CHARS = 12
_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)


def probe_filter(
    bloom_filter: BloomFilter, count: int, seed: int = 0, chunk: int = 1 << 20
) -> ProbeResult:
    """Query ``count`` random n-grams (random 12-character words) and count the hits.

    Random words of 36**12 possibilities almost surely never occur in real text, so
    every hit is a false positive. Overlapping windows of one random word stream
    give ``count`` distinct n-grams from ``count + n - 1`` words.
    """
    if count < 1:
        raise UsageError(f"--probe must be a positive number, not {count}")
    n = bloom_filter.header.n
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    tail = np.zeros(0, dtype=np.uint64)
    while done < count:
        take = min(chunk, count - done)
        need = take + n - 1 - tail.size
        letters = _ALPHABET[rng.integers(0, _ALPHABET.size, (need, PROBE_WORD_CHARS + 1))]
        letters[:, -1] = 32
        word_hash, _ = word_hashes(letters.reshape(-1))
        word_hash = np.concatenate((tail, word_hash))
        hashes = ngram_hashes(word_hash, n)[:take]
        hits += int(np.count_nonzero(bloom_filter.contains(hashes)))
        tail = word_hash[-(n - 1) :] if n > 1 else np.zeros(0, dtype=np.uint64)
        done += take
    return ProbeResult(count, hits, bloom_filter.estimated_fp_rate)


# ---------------------------------------------------------------------------------------------
# ``gpt2 overlap check``


@dataclass(frozen=True)
class CheckOptions(ReadOptions):
    """``gpt2 overlap check``'s settings; each field made with ``option`` is also its flag and
    --help text (:mod:`gpt2cli.option_fields`)."""

    per_doc: bool = option(False, "Report every document instead of every input.")
    probe: int | None = option(
        None,
        "Also query this many random n-grams (random 12-character words) and report the "
        "measured false-positive rate; with no input files, only probe.",
        show_default=False,
    )
    seed: int = option(0, "Random seed of --probe.")
    exclude: bool = option(  # write the kept documents (to ``output``, else stdout)
        False,
        "Write the documents whose overlap is at most --max-overlap (decontaminated test "
        "set), in the input's format, to -o or stdout.",
        long="--exclude-overlapping",
    )
    max_overlap: float = option(
        0.0,
        "With --exclude-overlapping: the largest overlap (percent of the document's n-grams "
        "found) a kept document may have. Documents with no n-grams are kept.",
    )
    output: Path | None = option(
        None,
        "With --exclude-overlapping: write the kept documents here (atomically) instead of stdout.",
        "-o",
        path=True,
        show_default=False,
    )
    max_rows: int | None = None  # per-document rows kept for the report (the rest counted)

    def check(self, report_on_stdout: bool) -> None:
        """Refuse options that do not go together, before any work."""
        self.check_format()
        check_max_overlap(self.max_overlap)
        if self.exclude and self.output is None and report_on_stdout:
            raise UsageError(
                "--exclude-overlapping writes the kept documents to stdout, so "
                "--json/--jsonl need them to go to a file",
                "add -o FILE",
            )
        if self.output is not None and not self.exclude:
            raise UsageError("-o/--output is for the documents kept by --exclude-overlapping")
        if self.probe is not None and self.probe < 1:
            raise UsageError(f"--probe must be a positive number, not {self.probe}")


def run_check(
    bloom_filter: BloomFilter,
    inputs: list[str],
    options: CheckOptions,
    on_document: Callable[[Counts], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CheckResult:
    """Check ``inputs`` (none: only probe) against the filter, write the kept documents with
    ``options.exclude``, and probe the filter with ``options.probe`` random n-grams."""
    timer = Stopwatch()
    report = CheckReport()
    with ExitStack() as stack:
        out: IO[bytes] | None = None
        if options.exclude:
            out = (
                stack.enter_context(atomic_write(options.output, "wb"))
                if options.output
                else sys.stdout.buffer
            )
        if inputs:
            report = check_inputs(
                bloom_filter,
                inputs,
                options,
                per_doc=options.per_doc,
                max_rows=options.max_rows,
                keep_to=out,
                max_overlap=options.max_overlap,
                on_document=on_document,
                on_progress=on_progress,
            )
        if out is sys.stdout.buffer:
            out.flush()
    seconds = timer.seconds
    probe = probe_filter(bloom_filter, options.probe, options.seed) if options.probe else None
    return CheckResult(bloom_filter, options, report, inputs, seconds, probe)
