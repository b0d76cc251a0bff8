"""``gpt2 overlap``: n-gram Bloom filters for train/test contamination (GPT-2 paper §4)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.console import human_bytes
from gpt2cli.errors import UsageError
from gpt2cli.fileio import check_output_file, os_errors
from gpt2cli.overlap.build import BuildOptions, build, merge_filters
from gpt2cli.overlap.check import CheckOptions, Counts, run_check
from gpt2cli.overlap.filter_file import BloomFilter
from gpt2cli.overlap.report import CheckResult, counts_record
from gpt2cli.overlap.sizing import over_capacity, parse_count
from gpt2cli.text.readers import check_format

NAME = "overlap"

NORMALISATION_HELP = (
    "Text is lower-cased and split into words (maximal runs of letters and digits, any "
    "script); an n-gram is n consecutive words of one document."
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
    warning = over_capacity(bloom_filter)
    if warning:
        console.warn(command, warning)


# ---------------------------------------------------------------------------------------------
# build


def build_command(inputs: list[str], output: Path, settings: BuildOptions, as_json: bool) -> None:
    def on_counted(seconds: float) -> None:
        console.info(
            f"gpt2 overlap build: counted distinct {settings.n}-grams in "
            f"{seconds:.1f} s; sizing the filter"
        )

    result = build(inputs, output, settings, on_counted)
    header, built = result.header, result.built
    assert built is not None
    summary = (
        f"gpt2 overlap build: {result.documents:,} documents, {human_bytes(result.nbytes)} of "
        f"text, {header.items:,} {settings.n}-grams (~{result.distinct_estimate:,.0f} distinct) "
        f"-> {output} ({human_bytes(header.file_size)}, k={header.k}, capacity "
        f"{header.capacity:,} from "
        f"{'--capacity' if result.capacity_from == 'option' else 'a counting pass'}) in "
        f"{result.seconds:.1f} s ({result.mb_per_s:,.1f} MB/s); fill {100 * built.fill:.2f}%, "
        f"estimated false-positive rate {built.estimated_fp_rate:.2e}"
    )
    if result.documents == 0:
        summary += " (empty input: the filter is empty)"
    console.info(summary)
    _warn_over_capacity("overlap build", built)
    if as_json:
        print(jsonio.dumps(result.to_dict()))


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


def _percent_text(counts: Counts) -> str:
    return "n/a (no n-grams)" if counts.percent is None else f"{counts.percent:.2f}%"


def _print_table(result: CheckResult, rows_on_stdout: bool) -> None:
    from rich.table import Table

    bloom_filter, report, per_doc = result.bloom_filter, result.report, result.options.per_doc
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
    inputs: list[str], filter_path: Path, settings: CheckOptions, output_mode: str, verify: bool
) -> None:
    """``output_mode``: "table" (stderr only), "json" or "jsonl" (also on stdout)."""
    as_json, as_jsonl = output_mode == "json", output_mode == "jsonl"
    settings.check(report_on_stdout=as_json or as_jsonl)
    bloom_filter = BloomFilter.open(filter_path, verify=verify)
    fp_rate = bloom_filter.estimated_fp_rate
    run_inputs = inputs if inputs or settings.probe is None else []

    def print_document(counts: Counts) -> None:
        print(jsonio.dumps(counts_record(counts, fp_rate, True)), flush=False)

    on_document = print_document if settings.per_doc and as_jsonl else None
    if run_inputs:
        with console.progress() as bar:
            task = bar.add_task("check", total=None, status="")

            def on_progress(nbytes: int) -> None:
                bar.update(task, completed=nbytes, status=f"{nbytes / 1e6:,.1f} MB")

            result = run_check(bloom_filter, run_inputs, settings, on_document, on_progress)
    else:
        result = run_check(bloom_filter, run_inputs, settings)
    report = result.report
    if run_inputs and as_jsonl:
        if not settings.per_doc:
            for record in result.row_records():
                print(jsonio.dumps(record))
        for record in result.failure_records():
            print(jsonio.dumps(record))

    if run_inputs:
        for warning in result.warnings():
            console.warn("overlap check", warning)
        _print_table(result, as_jsonl)
        console.info(
            f"gpt2 overlap check: {report.total.documents:,} documents, "
            f"{human_bytes(report.nbytes)} of text in {result.seconds:.1f} s "
            f"({report.nbytes / 1e6 / result.seconds:,.1f} MB/s)"
        )
    if settings.exclude:
        console.info(
            f"gpt2 overlap check: kept {report.kept:,} documents with overlap <= "
            f"{settings.max_overlap:g}%, removed {report.removed:,}"
            + (f" -> {settings.output}" if settings.output else "")
        )
    probe = result.probe
    if probe is not None:
        console.info(
            f"gpt2 overlap check: probe: {probe.false_positives:,} of "
            f"{probe.probes:,} random {bloom_filter.header.n}-grams found: measured "
            f"false-positive rate {probe.measured_fp_rate:.2e} (estimated "
            f"{probe.estimated_fp_rate:.2e})"
        )
    console.info(_filter_line(bloom_filter))
    _warn_over_capacity("overlap check", bloom_filter)
    if as_jsonl and probe is not None:
        print(jsonio.dumps({"probe": result.probe_record()}))
    if as_json:
        print(jsonio.dumps(result.to_dict()))
    sys.stdout.flush()
    for failure in report.failures:
        console.warn("overlap check", f"{failure.source}: failed: {failure.reason}")
    result.raise_if_failed()


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
        settings = BuildOptions(
            n=n,
            capacity=parse_count(capacity, "--capacity") if capacity is not None else None,
            fp_rate=fp_rate,
            hashes=hashes,
            fmt=fmt,
            field=field,
            delimiter=delimiter,
            errors=errors,
        )
        with os_errors():
            build_command(files or ["-"], output, settings, as_json)

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
        if as_json and as_jsonl:
            raise UsageError("--json and --jsonl do not go together")
        inputs = files or ([] if probe is not None else ["-"])
        settings = CheckOptions(
            per_doc=per_doc,
            exclude=exclude,
            max_overlap=max_overlap,
            output=output,
            probe=probe,
            seed=seed,
            max_rows=None if as_json else TABLE_ROWS,
            fmt=fmt,
            field=field,
            delimiter=delimiter,
            errors=errors,
        )
        mode = "json" if as_json else "jsonl" if as_jsonl else "table"
        with os_errors():
            check_command(inputs, filter_path, settings, mode, verify)

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
