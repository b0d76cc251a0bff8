"""``gpt2 corpus``: build a WebText-style corpus from raw web data (GPT-2 paper §2.1)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

import typer

from gpt2cli import console
from gpt2cli.app import VerbGroup
from gpt2cli.commands import corpus_clean, corpus_dedup, corpus_fetch, options
from gpt2cli.commands.corpus_clean import stage_verb
from gpt2cli.corpus.common_options import RecordOptions
from gpt2cli.corpus.extract_options import ExtractOptions
from gpt2cli.corpus.links import LinkOptions

if TYPE_CHECKING:
    from gpt2cli.corpus.stats import StageStats

NAME = "corpus"


@contextmanager
def _stage(
    name: str, output: str | None, strict: bool
) -> Iterator[tuple[StageStats, IO[bytes], Callable[[str], None]]]:
    """A stage's counters, its output (``-o`` or stdout) and a progress line to set."""
    from gpt2cli.corpus.jsonl import output as open_output
    from gpt2cli.corpus.stats import StageStats

    stats = StageStats(name, strict=strict)
    with open_output(output) as out, console.progress() as bar:
        task = bar.add_task(name, total=None, status="")
        yield (
            stats,
            out,
            lambda status: bar.update(task, completed=stats.documents_in, status=status),
        )


def links_command(
    inputs: list[str],
    settings: LinkOptions,
    output: str | None,
    stats_file: str | None,
    strict: bool,
) -> None:
    from gpt2cli.corpus.links import write_links

    with _stage("links", output, strict) as (stats, out, show):

        def progress() -> None:
            show(f"{stats.documents_in:,} submissions, {stats.bytes_in / 1e6:,.0f} MB")

        write_links(inputs, settings, stats, out, progress)
    stats.finish(stats_file)


def extract_command(
    inputs: list[str],
    settings: ExtractOptions,
    output: str | None,
    stats_file: str | None,
    strict: bool,
) -> None:
    from gpt2cli.corpus.extract import write_pages

    with _stage("extract", output, strict) as (stats, out, show):
        try:
            cut = write_pages(inputs, settings, stats, out, lambda n: show(f"{n:,} pages out"))
        except BrokenPipeError:
            _quiet_exit_on_closed_stdout()
    stats.finish(stats_file)
    if cut is not None:  # every whole record is out; the cut file is the error
        raise cut


def _quiet_exit_on_closed_stdout() -> None:
    """The reader of stdout went away (``| head``) while SIGPIPE was ignored: end quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(128 + 13)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name=NAME,
        help="Build a WebText-style corpus (GPT-2 paper §2.1): outbound links of Reddit "
        "submissions with enough karma, their pages' main text out of a WARC crawl, then "
        "filters and de-duplication. Every verb writes JSON Lines on stdout and a stats line "
        "(documents in and out, drops by reason, MB/s) on stderr; bad records are counted "
        "and skipped (the first few shown) unless --strict.",
        no_args_is_help=True,
        cls=VerbGroup,
        rich_markup_mode=None,
    )

    @stage_verb(group, "links", LinkOptions, {"min_karma": "files"})
    def links(
        files: list[str] = options.inputs_argument(
            "Reddit submission dumps (Pushshift NDJSON, .zst as published), or with "
            "--merge link files; '-' or none reads stdin."
        ),
        output: str = options.CORPUS_OUTPUT,
        stats_file: str = options.STATS_FILE,
        **given: Any,
    ) -> None:
        """Outbound links of Reddit submissions with enough karma, one record per URL.

        Keeps submissions that link outside Reddit (not self posts) with score >=
        --min-karma and a domain not excluded (subdomains included). URLs are normalised:
        scheme and host lowercased, default port, fragment, user info and tracking
        parameters (utm_*, fbclid, gclid, ...) removed, trailing slashes dropped; then
        de-duplicated by a SURT-style key, as Common Crawl's index keys them: http:// and
        https://, a default port and a leading www. of one page are one URL, and the
        variant kept (and fetched) is https before http, then the one without www. The
        same URL twice, in one dump or in several link files, is always merged alike:
        the highest karma, the submissions summed, the first date. Writes JSON Lines
        sorted by that key: url, domain, karma, submissions, date (ISO 8601 UTC). A line
        without url, with a URL that does not parse, a score that is no integer within
        ±2^63 or a created_utc that is no time from 1970 to 9999 is a bad record. Memory
        is bounded by --max-urls; parts made separately (one per monthly dump, on many
        machines) combine with --merge into what one run over all dumps gives."""
        settings = options.build(LinkOptions, given)
        strict = options.build(RecordOptions, given).strict
        links_command(files or ["-"], settings, output, stats_file, strict)

    @stage_verb(group, "extract", ExtractOptions, {"links_file": "files"})
    def extract(
        files: list[str] = options.inputs_argument(
            "WARC or ARC files (plain or compressed) from any crawler; '-' or none reads stdin."
        ),
        output: str = options.CORPUS_OUTPUT,
        stats_file: str = options.STATS_FILE,
        **given: Any,
    ) -> None:
        """Main text of the HTML pages of a WARC or ARC crawl, by trafilatura.

        Reads WARC 1.1, 1.0, 0.18, 0.17 and ARC files as real crawlers write them.
        Response (and resource) records with HTTP 200 text/html are pages; other records
        are counted as drops by reason (http_status, not_html, too_large, revisit,
        not_http). Pages are decoded by the charset of the header, a byte-order mark or
        the document's <meta>, and their main text extracted with trafilatura in
        --processes processes; output is in input order. Writes JSON Lines: text, url
        (normalised), domain, title, karma, submissions, date (from --links), crawl_date,
        warc_record_id (null for ARC). A record that cannot be read (a length that lies,
        a broken HTTP message), a page no charset decodes, or a text/html payload that is
        binary is a bad record, counted with its file and offset, and reading goes on. A
        file cut short gives every whole record, then an error naming it and the offset
        of the cut record (exit 1)."""
        settings = options.build(ExtractOptions, given)
        strict = options.build(RecordOptions, given).strict
        extract_command(files or ["-"], settings, output, stats_file, strict)

    corpus_clean.register(group)
    corpus_dedup.register(group)
    corpus_fetch.register(group)
    app.add_typer(group, name=NAME)
