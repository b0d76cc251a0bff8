"""``gpt2 overlap``: n-gram Bloom filters for train/test contamination (GPT-2 paper §4)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import typer

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.console import human_bytes
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write, check_output_file, os_errors
from gpt2cli.overlap.build import build_filter, merge_filters, spool_stdin
from gpt2cli.overlap.check import CheckReport, Counts, check_inputs, check_max_overlap, probe_filter
from gpt2cli.overlap.filter_file import BloomFilter
from gpt2cli.text.readers import check_format, iter_pieces

NAME = "overlap"

NORMALISATION_HELP = (
    "Text is lower-cased and split into words (maximal runs of letters and digits, any "
    "script); an n-gram is n consecutive words of one document."
)


def _parse_count(value: str, option: str) -> int:
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        raise UsageError(
            f"{option} must be a number like 5e9 or 5000000000, not {value!r}"
        ) from None
    if not 1 <= number <= 2**62 or number != int(number):
        raise UsageError(f"{option} must be a whole number of at least 1, not {value!r}")
    return int(number)


MIN_FP_RATE = 1e-30  # already ~1,150 bits per n-gram; below, the size explodes


def _check_fp_rate(fp_rate: float) -> None:
    if not 0.0 < fp_rate < 1.0:
        raise UsageError(
            f"--fp-rate must be between 0 and 1 (exclusive), not {fp_rate:g}", "for example 1e-8"
        )
    if fp_rate < MIN_FP_RATE:
        raise UsageError(
            f"--fp-rate {fp_rate:g} is below the smallest supported rate, {MIN_FP_RATE:g}",
            "for example 1e-8",
        )


def _filter_line(bloom_filter: BloomFilter) -> str:
    header = bloom_filter.header
    return (
        f"filter {bloom_filter.path or ''}: {header.n}-grams, {human_bytes(header.file_size)}, "
        f"k={header.k}, capacity {header.capacity:,}, ~{bloom_filter.distinct_estimate:,.0f} "
        f"distinct n-grams added, fill {100 * bloom_filter.fill:.2f}%, estimated false-positive "
        f"rate {bloom_filter.estimated_fp_rate:.2e} (target {header.fp_rate:.0e})"
    )


def _warn_over_capacity(command: str, bloom_filter: BloomFilter) -> None:
    header = bloom_filter.header
    if bloom_filter.estimated_fp_rate > 2 * header.fp_rate:
        console.warn(
            command,
            "the filter is over capacity "
            f"(~{bloom_filter.distinct_estimate:,.0f} distinct n-grams for "
            f"{header.capacity:,}): its false-positive rate "
            f"{bloom_filter.estimated_fp_rate:.2e} exceeds the target "
            f"{header.fp_rate:.0e}",
        )


# ---------------------------------------------------------------------------------------------
# build


def build_command(
    inputs: list[str],
    output: Path,
    n: int,
    capacity: int | None,
    fp_rate: float,
    hashes: int | None,
    fmt: str | None,
    field: str,
    delimiter: str,
    errors: str,
    as_json: bool,
) -> None:
    _check_fp_rate(fp_rate)
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}")
    check_output_file(output)
    timer = console.Stopwatch()
    spooled: Path | None = None
    sources = list(inputs)
    if capacity is None and "-" in sources:
        # stdin cannot be read twice: keep a copy for the second pass
        spooled = spool_stdin(output.parent if str(output.parent) else Path("."))
        sources = [str(spooled) if name == "-" else name for name in sources]
    count_seconds = 0.0
    try:
        passes: list[str] = []

        def pieces() -> Iterable:
            return iter_pieces(sources, fmt, field, delimiter, errors)

        def on_pass(name: str) -> None:
            nonlocal count_seconds
            passes.append(name)
            if name == "build" and len(passes) == 2:
                count_seconds = timer.seconds
                console.info(
                    f"gpt2 overlap build: counted distinct {n}-grams in "
                    f"{count_seconds:.1f} s; sizing the filter"
                )

        result = build_filter(pieces, output, n, fp_rate, capacity, on_pass=on_pass, hashes=hashes)
    except Gpt2Error as error:
        if spooled is not None:  # errors in the copy of stdin are about stdin
            error.message = error.message.replace(str(spooled), "<stdin>")
        raise
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    seconds = timer.seconds
    header = result.header
    built = BloomFilter.open(output, verify=False)
    rate = result.nbytes / 1e6 / max(seconds - count_seconds, 1e-9)
    summary = (
        f"gpt2 overlap build: {result.documents:,} documents, {human_bytes(result.nbytes)} of "
        f"text, {header.items:,} {n}-grams (~{result.distinct_estimate:,.0f} distinct) -> "
        f"{output} ({human_bytes(header.file_size)}, k={header.k}, capacity {header.capacity:,} "
        f"from {'--capacity' if result.capacity_from == 'option' else 'a counting pass'}) in "
        f"{seconds:.1f} s ({rate:,.1f} MB/s); fill {100 * built.fill:.2f}%, estimated "
        f"false-positive rate {built.estimated_fp_rate:.2e}"
    )
    if result.documents == 0:
        summary += " (empty input: the filter is empty)"
    console.info(summary)
    _warn_over_capacity("overlap build", built)
    if as_json:
        record = built.summary()
        record.update(
            documents=result.documents,
            text_bytes=result.nbytes,
            seconds=round(seconds, 3),
            capacity_from=result.capacity_from,
        )
        print(jsonio.dumps(record))


# ---------------------------------------------------------------------------------------------
# merge


def merge_command(inputs: list[str], output: Path, as_json: bool) -> None:
    check_output_file(output)
    timer = console.Stopwatch()
    merge_filters(inputs, output)
    merged = BloomFilter.open(output, verify=False)
    console.info(
        f"gpt2 overlap merge: {len(inputs)} filters -> {output} in {timer.seconds:.1f} s; "
        + _filter_line(merged).split(": ", 1)[1]
    )
    _warn_over_capacity("overlap merge", merged)
    if as_json:
        record = merged.summary()
        record["inputs"] = list(inputs)
        print(jsonio.dumps(record))


# ---------------------------------------------------------------------------------------------
# check


def _record(counts: Counts, fp_rate: float, per_doc: bool) -> dict:
    record: dict = {"source": counts.name}
    if per_doc:
        record["document"] = counts.index
        record["line"] = counts.line
    else:
        record["documents"] = counts.documents
    percent = counts.percent
    record.update(
        ngrams=counts.ngrams,
        found=counts.found,
        percent=None if percent is None else round(percent, 6),
        estimated_fp_rate=fp_rate,
    )
    return record


def _percent_text(counts: Counts) -> str:
    return "n/a (no n-grams)" if counts.percent is None else f"{counts.percent:.2f}%"


def _print_table(
    report: CheckReport, bloom_filter: BloomFilter, per_doc: bool, rows_on_stdout: bool
) -> None:
    from rich.table import Table

    n = bloom_filter.header.n
    table = Table(title=f"{n}-gram overlap with {bloom_filter.path}", title_justify="left")
    table.add_column("document" if per_doc else "input", overflow="fold")
    table.add_column(f"{n}-grams", justify="right")
    table.add_column("found", justify="right")
    table.add_column("overlap", justify="right")
    rows, total, omitted = report.rows, report.total, report.omitted
    failed = {failure.source for failure in report.failures}
    for row in rows:
        name = f"{row.name}:{row.line}" if per_doc else row.name
        overlap = "not read" if not per_doc and row.name in failed else _percent_text(row)
        table.add_row(name, f"{row.ngrams:,}", f"{row.found:,}", overlap)
    if omitted:
        where = "on stdout" if rows_on_stdout else "use --jsonl"
        table.add_row(f"... {omitted:,} more ({where})", "", "", "")
    if len(rows) + omitted > 1:
        table.add_section()
        table.add_row(
            f"total ({total.documents:,} documents)",
            f"{total.ngrams:,}",
            f"{total.found:,}",
            _percent_text(total),
        )
    console.stderr_console().print(table)


TABLE_ROWS = 50


def check_command(
    inputs: list[str],
    filter_path: Path,
    per_doc: bool,
    as_json: bool,
    as_jsonl: bool,
    probe: int | None,
    seed: int,
    exclude: bool,
    max_overlap: float,
    output: Path | None,
    fmt: str | None,
    field: str,
    delimiter: str,
    errors: str,
    verify: bool = True,
) -> None:
    if as_json and as_jsonl:
        raise UsageError("--json and --jsonl do not go together")
    check_max_overlap(max_overlap)
    if exclude and output is None and (as_json or as_jsonl):
        raise UsageError(
            "--exclude-overlapping writes the kept documents to stdout, so "
            "--json/--jsonl need them to go to a file",
            "add -o FILE",
        )
    if output is not None and not exclude:
        raise UsageError("-o/--output is for the documents kept by --exclude-overlapping")
    if probe is not None and probe < 1:
        raise UsageError(f"--probe must be a positive number, not {probe}")
    bloom_filter = BloomFilter.open(filter_path, verify=verify)
    fp_rate = bloom_filter.estimated_fp_rate
    timer = console.Stopwatch()
    run_inputs = inputs if inputs or probe is None else []
    report = CheckReport()

    def print_document(counts: Counts) -> None:
        print(jsonio.dumps(_record(counts, fp_rate, True)), flush=False)

    with ExitStack() as stack:
        out: IO[bytes] | None = None
        if exclude:
            out = stack.enter_context(atomic_write(output, "wb")) if output else sys.stdout.buffer
        if run_inputs:
            with console.progress() as bar:
                task = bar.add_task("check", total=None, status="")

                def on_progress(nbytes: int) -> None:
                    bar.update(task, completed=nbytes, status=f"{nbytes / 1e6:,.1f} MB")

                report = check_inputs(
                    bloom_filter,
                    run_inputs,
                    fmt,
                    field,
                    delimiter,
                    errors,
                    per_doc=per_doc,
                    max_rows=None if as_json else TABLE_ROWS,
                    keep_to=out,
                    max_overlap=max_overlap,
                    on_document=print_document if per_doc and as_jsonl else None,
                    on_progress=on_progress,
                )
            if not per_doc and as_jsonl:
                for row in report.rows:
                    print(jsonio.dumps(_record(row, fp_rate, False)))
            if as_jsonl:
                for failure in report.failures:
                    print(jsonio.dumps({"source": failure.source, "error": failure.reason}))
        if exclude and out is sys.stdout.buffer:
            out.flush()

    seconds = timer.seconds
    probe_result = probe_filter(bloom_filter, probe, seed) if probe is not None else None

    if run_inputs:
        if report.total.documents == 0:
            console.warn("overlap check", "empty input: no documents to check")
        elif report.total.ngrams == 0:
            console.warn(
                "overlap check",
                f"no document has {bloom_filter.header.n} words: zero n-grams to check",
            )
        _print_table(report, bloom_filter, per_doc, as_jsonl)
        console.info(
            f"gpt2 overlap check: {report.total.documents:,} documents, "
            f"{human_bytes(report.nbytes)} of text in {seconds:.1f} s "
            f"({report.nbytes / 1e6 / seconds:,.1f} MB/s)"
        )
    if exclude:
        console.info(
            f"gpt2 overlap check: kept {report.kept:,} documents with overlap <= "
            f"{max_overlap:g}%, removed {report.removed:,}" + (f" -> {output}" if output else "")
        )
    if probe_result is not None:
        console.info(
            f"gpt2 overlap check: probe: {probe_result.false_positives:,} of "
            f"{probe_result.probes:,} random {bloom_filter.header.n}-grams found: measured "
            f"false-positive rate {probe_result.measured_fp_rate:.2e} (estimated "
            f"{probe_result.estimated_fp_rate:.2e})"
        )
    console.info(_filter_line(bloom_filter))
    _warn_over_capacity("overlap check", bloom_filter)

    probe_record = None
    if probe_result is not None:
        probe_record = {
            "probes": probe_result.probes,
            "false_positives": probe_result.false_positives,
            "measured_fp_rate": probe_result.measured_fp_rate,
            "estimated_fp_rate": probe_result.estimated_fp_rate,
            "seed": seed,
        }
    if as_jsonl and probe_record is not None:
        print(jsonio.dumps({"probe": probe_record}))
    if as_json:
        document = {
            "filter": bloom_filter.summary(),
            ("documents" if per_doc else "inputs"): [
                _record(r, fp_rate, per_doc) for r in report.rows
            ],
            "total": _record(report.total, fp_rate, False) if run_inputs else None,
        }
        if probe_record is not None:
            document["probe"] = probe_record
        if exclude:
            document["kept"] = report.kept
            document["removed"] = report.removed
        if run_inputs:
            document["failures"] = [
                {"source": failure.source, "error": failure.reason} for failure in report.failures
            ]
        print(jsonio.dumps(document))
    sys.stdout.flush()
    if report.failures:
        for failure in report.failures:
            console.warn("overlap check", f"{failure.source}: failed: {failure.reason}")
        failed = len(report.failures)
        raise Gpt2Error(
            f"{failed} of {len(run_inputs)} inputs could not be read: "
            + ", ".join(failure.source for failure in report.failures),
            "the report covers the others",
        )


# ---------------------------------------------------------------------------------------------
# the typer group


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name=NAME,
        help="N-gram overlap between a training corpus and test sets (GPT-2 paper §4): build a "
        "Bloom filter of the training text's n-grams, merge filters, check test sets against "
        "it. " + NORMALISATION_HELP,
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    files_argument = typer.Argument(
        None, help="Input files; '-' or none reads stdin.", show_default=False
    )

    @group.command("build")
    def build(
        files: list[str] = files_argument,
        output: Path = typer.Option(
            ..., "--output", "-o", help="The filter file to write (atomically)."
        ),
        n: int = typer.Option(8, "--n", "-n", help="Words per n-gram."),
        capacity: str = typer.Option(
            None,
            "--capacity",
            "-c",
            help="Distinct n-grams the filter must hold (e.g. 5e9). Default: counted with a "
            "first pass over the input (a HyperLogLog estimate, plus 5%); stdin is copied to a "
            "temporary file beside the output for that.",
            show_default=False,
        ),
        fp_rate: float = typer.Option(
            1e-8,
            "--fp-rate",
            "-p",
            help="False-positive rate at capacity: the filter gets the fewest blocks of k "
            "64-bit words (k bits per n-gram, one per word of one block) that keep it.",
        ),
        hashes: int = typer.Option(
            None,
            "--hashes",
            "-k",
            help="Bits per n-gram (1-64) instead of the default (18 at 1e-8): fewer is less "
            "work per n-gram and a larger filter for the same bound (14 at 1e-8: 15% "
            "larger, a faster build).",
            show_default=False,
        ),
        fmt: str = options.FORMAT,
        field: str = options.FIELD,
        delimiter: str = options.DELIMITER,
        errors: str = options.ERRORS,
        as_json: bool = typer.Option(
            False, "--json", help="Print a JSON summary of the filter on stdout."
        ),
    ) -> None:
        """Add every n-gram of the input documents to a new Bloom filter file."""
        check_format(fmt)
        parsed = _parse_count(capacity, "--capacity") if capacity is not None else None
        with os_errors():
            build_command(
                files or ["-"],
                output,
                n,
                parsed,
                fp_rate,
                hashes,
                fmt,
                field,
                delimiter,
                errors,
                as_json,
            )

    @group.command("merge")
    def merge(
        filters: list[str] = typer.Argument(
            ..., help="Filter files built with the same --n, --capacity and --fp-rate."
        ),
        output: Path = typer.Option(
            ..., "--output", "-o", help="The merged filter file to write (atomically)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print a JSON summary of the filter on stdout."
        ),
    ) -> None:
        """OR filters of identical shape into one (a corpus built in parts, e.g. a Slurm array)."""
        with os_errors():
            merge_command(filters, output, as_json)

    @group.command("check")
    def check(
        files: list[str] = files_argument,
        filter_path: Path = typer.Option(
            ...,
            "--filter",
            "-F",
            help="The filter file to check against (used through a memory map).",
        ),
        per_doc: bool = typer.Option(
            False, "--per-doc", help="Report every document instead of every input."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON report on stdout."),
        as_jsonl: bool = typer.Option(
            False, "--jsonl", help="Print one JSON line per input (or document)."
        ),
        probe: int = typer.Option(
            None,
            "--probe",
            help="Also query this many random n-grams (random 12-character words) and report "
            "the measured false-positive rate; with no input files, only probe.",
            show_default=False,
        ),
        seed: int = typer.Option(0, "--seed", help="Random seed of --probe."),
        exclude: bool = typer.Option(
            False,
            "--exclude-overlapping",
            help="Write the documents whose overlap is at most --max-overlap (decontaminated "
            "test set), in the input's format, to -o or stdout.",
        ),
        max_overlap: float = typer.Option(
            0.0,
            "--max-overlap",
            help="With --exclude-overlapping: the largest overlap (percent of the document's "
            "n-grams found) a kept document may have. Documents with no n-grams are kept.",
        ),
        output: Path = typer.Option(
            None,
            "--output",
            "-o",
            show_default=False,
            help="With --exclude-overlapping: write the kept documents "
            "here (atomically) instead of stdout.",
        ),
        verify: bool = typer.Option(
            True,
            "--verify/--no-verify",
            help="Check the filter's bit array against its checksums before use (reads the "
            "whole filter once).",
        ),
        fmt: str = options.FORMAT,
        field: str = options.FIELD,
        delimiter: str = options.DELIMITER,
        errors: str = options.ERRORS,
    ) -> None:
        """Share of each input's n-grams found in the filter (the paper's Table 6), with the
        filter's estimated false-positive rate; a table on stderr, JSON on stdout. An input
        that cannot be read is listed and the others are reported (exit 1 at the end)."""
        check_format(fmt)
        inputs = files or ([] if probe is not None else ["-"])
        with os_errors():
            check_command(
                inputs,
                filter_path,
                per_doc,
                as_json,
                as_jsonl,
                probe,
                seed,
                exclude,
                max_overlap,
                output,
                fmt,
                field,
                delimiter,
                errors,
                verify,
            )

    @group.command("verify")
    def verify_files(
        filters: list[Path] = typer.Argument(..., help="Filter files to verify."),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON line per filter on stdout."
        ),
    ) -> None:
        """Check every region of each filter's bit array against its CRC-32 (and the header's):
        exit 0 when all are whole, else name the damaged ones and exit 1."""
        from gpt2cli.commands.overlap_verify import verify_command

        with os_errors():
            verify_command(filters, as_json)

    app.add_typer(group, name=NAME)
