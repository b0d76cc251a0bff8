"""``gpt2 overlap check``: the report of ``gpt2cli.overlap.check.run_check`` as a table on
stderr and JSON (or JSON Lines) on stdout; also the filter lines every overlap verb prints."""

from __future__ import annotations

import sys
from pathlib import Path

from gpt2cli import console, jsonio
from gpt2cli.console import human_bytes
from gpt2cli.overlap.check import CheckOptions, Counts, run_check
from gpt2cli.overlap.filter_file import BloomFilter
from gpt2cli.overlap.report import CheckResult, counts_record
from gpt2cli.overlap.sizing import over_capacity


def filter_line(bloom_filter: BloomFilter) -> str:
    header = bloom_filter.header
    return (
        f"filter {bloom_filter.path or ''}: {header.n}-grams, {human_bytes(header.file_size)}, "
        f"k={header.k}, capacity {header.capacity:,}, ~{bloom_filter.distinct_estimate:,.0f} "
        f"distinct n-grams added, fill {100 * bloom_filter.fill:.2f}%, estimated false-positive "
        f"rate {bloom_filter.estimated_fp_rate:.2e} (target {header.fp_rate:.0e})"
    )


def warn_over_capacity(command: str, bloom_filter: BloomFilter) -> None:
    warning = over_capacity(bloom_filter)
    if warning:
        console.warn(command, warning)


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
    console.info(filter_line(bloom_filter))
    warn_over_capacity("overlap check", bloom_filter)
    if as_jsonl and probe is not None:
        print(jsonio.dumps({"probe": result.probe_record()}))
    if as_json:
        print(jsonio.dumps(result.to_dict()))
    sys.stdout.flush()
    for failure in report.failures:
        console.warn("overlap check", f"{failure.source}: failed: {failure.reason}")
    result.raise_if_failed()
