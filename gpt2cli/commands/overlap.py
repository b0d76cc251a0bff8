"""``gpt2 overlap``: n-gram Bloom filters for train/test contamination (GPT-2 paper §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gpt2cli import console, jsonio
from gpt2cli.app import VerbGroup
from gpt2cli.commands import options
from gpt2cli.commands.overlap_check import (
    TABLE_ROWS,
    check_command,
    filter_line,
    warn_over_capacity,
)
from gpt2cli.console import human_bytes
from gpt2cli.errors import UsageError
from gpt2cli.fileio import check_output_file, os_errors
from gpt2cli.overlap.build import BuildOptions, build, merge_filters
from gpt2cli.overlap.check import CheckOptions
from gpt2cli.overlap.filter_file import BloomFilter

NAME = "overlap"

NORMALISATION_HELP = (
    "Text is lower-cased and split into words (maximal runs of letters and digits, any "
    "script); an n-gram is n consecutive words of one document."
)


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
    warn_over_capacity("overlap build", built)
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
        + filter_line(merged).split(": ", 1)[1]
    )
    warn_over_capacity("overlap merge", merged)
    if as_json:
        record = merged.summary()
        record["inputs"] = list(inputs)
        print(jsonio.dumps(record))


# ---------------------------------------------------------------------------------------------
# the typer group


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name=NAME,
        help="N-gram overlap between a training corpus and test sets (GPT-2 paper §4): build a "
        "Bloom filter of the training text's n-grams, merge filters, check test sets against "
        "it. " + NORMALISATION_HELP,
        no_args_is_help=True,
        cls=VerbGroup,
        rich_markup_mode=None,
    )

    files_argument = typer.Argument(
        None, help="Input files; '-' or none reads stdin.", show_default=False
    )

    @group.command("build")
    @options.with_fields(BuildOptions, {"format": "output", "n": "output"})
    def build(
        files: list[str] = files_argument,
        output: Path = typer.Option(
            ..., "--output", "-o", help="The filter file to write (atomically)."
        ),
        as_json: bool = options.switch(
            "--json", help="Print a JSON summary of the filter on stdout."
        ),
        **given: Any,
    ) -> None:
        """Add every n-gram of the input documents to a new Bloom filter file."""
        with os_errors():
            build_command(files or ["-"], output, options.build(BuildOptions, given), as_json)

    @group.command("merge")
    def merge(
        filters: list[str] = typer.Argument(
            ..., help="Filter files built with the same --n, --capacity and --fp-rate."
        ),
        output: Path = typer.Option(
            ..., "--output", "-o", help="The merged filter file to write (atomically)."
        ),
        as_json: bool = options.switch(
            "--json", help="Print a JSON summary of the filter on stdout."
        ),
    ) -> None:
        """OR filters of identical shape into one (a corpus built in parts, e.g. a Slurm array)."""
        with os_errors():
            merge_command(filters, output, as_json)

    @group.command("check")
    @options.with_fields(
        CheckOptions, {"format": "verify", "per_doc": "filter_path", "probe": "as_jsonl"}
    )
    def check(
        files: list[str] = files_argument,
        filter_path: Path = typer.Option(
            ...,
            "--filter",
            "-F",
            help="The filter file to check against (used through a memory map).",
        ),
        as_json: bool = options.switch("--json", help="Print one JSON report on stdout."),
        as_jsonl: bool = options.switch(
            "--jsonl", help="Print one JSON line per input (or document)."
        ),
        verify: bool = typer.Option(
            True,
            "--verify/--no-verify",
            help="Check the filter's bit array against its checksums before use (reads the "
            "whole filter once).",
        ),
        **given: Any,
    ) -> None:
        """Share of each input's n-grams found in the filter (the paper's Table 6), with the
        filter's estimated false-positive rate; a table on stderr, JSON on stdout. An input
        that cannot be read is listed and the others are reported (exit 1 at the end)."""
        if as_json and as_jsonl:
            raise UsageError("--json and --jsonl do not go together")
        settings = options.build(
            CheckOptions, {**given, "max_rows": None if as_json else TABLE_ROWS}
        )
        inputs = files or ([] if settings.probe is not None else ["-"])
        mode = "json" if as_json else "jsonl" if as_jsonl else "table"
        with os_errors():
            check_command(inputs, filter_path, settings, mode, verify)

    @group.command("verify")
    def verify_files(
        filters: list[Path] = typer.Argument(..., help="Filter files to verify."),
        as_json: bool = options.switch("--json", help="Print one JSON line per filter on stdout."),
    ) -> None:
        """Check every region of each filter's bit array against its CRC-32 (and the header's):
        exit 0 when all are whole, else name the damaged ones and exit 1."""
        from gpt2cli.commands.overlap_verify import verify_command

        with os_errors():
            verify_command(filters, as_json)

    app.add_typer(group, name=NAME)
