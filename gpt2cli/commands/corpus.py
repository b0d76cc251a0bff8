"""``gpt2 corpus``: build a WebText-style corpus from raw web data (GPT-2 paper §2.1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from gpt2cli import console
from gpt2cli.app import VerbGroup
from gpt2cli.commands import corpus_clean, corpus_dedup, corpus_fetch, options
from gpt2cli.errors import UsageError

NAME = "corpus"

_INPUTS_HELP = "gzip, zstd, xz and bzip2 input is recognised by its magic bytes."


def _check_processes(processes: int) -> int:
    from gpt2cli.corpus.extract import default_processes

    if processes < 0:
        raise UsageError("--processes must be 0 (all cores) or a positive number")
    return processes or default_processes()


def links_command(
    inputs: list[str],
    min_karma: int,
    domains: list[str] | None,
    domain_files: list[str] | None,
    exclude_over_18: bool,
    merge: bool,
    max_urls: int,
    temp_dir: Path | None,
    output: str | None,
    stats_file: str | None,
    strict: bool,
) -> None:
    from gpt2cli.corpus import links as core
    from gpt2cli.corpus.jsonl import output as open_output
    from gpt2cli.corpus.stats import StageStats
    from gpt2cli.corpus.urls import load_domains

    if max_urls < 1:
        raise UsageError("--max-urls must be at least 1")
    stats = StageStats("links", strict=strict)
    with open_output(output) as out, console.progress() as bar:
        task = bar.add_task("links", total=None, status="")

        def progress() -> None:
            status = f"{stats.documents_in:,} submissions, {stats.bytes_in / 1e6:,.0f} MB"
            bar.update(task, completed=stats.documents_in, status=status)

        if merge:
            core.merge_link_files(inputs, stats, out)
        else:
            settings = core.LinkOptions(
                min_karma=min_karma,
                excluded=load_domains(domains, domain_files),
                exclude_over_18=exclude_over_18,
                max_urls=max_urls,
                temp_dir=str(temp_dir) if temp_dir else None,
            )
            core.collect_links(inputs, settings, stats, out, progress)
    stats.finish(stats_file)


def extract_command(
    inputs: list[str],
    links_file: str | None,
    mode: str,
    comments: bool,
    processes: int,
    max_bytes: int,
    max_bad_records: int | None,
    rejected: str | None,
    output: str | None,
    stats_file: str | None,
    strict: bool,
) -> None:
    from contextlib import ExitStack

    from gpt2cli.corpus import extract as core
    from gpt2cli.corpus.jsonl import dumps
    from gpt2cli.corpus.jsonl import output as open_output
    from gpt2cli.corpus.links import load_links
    from gpt2cli.corpus.stats import StageStats
    from gpt2cli.corpus.warc import Rejects, iter_responses
    from gpt2cli.fileio import atomic_write

    if mode not in core.MODES:
        raise UsageError(f"--favor must be one of {', '.join(core.MODES)}, not {mode!r}")
    if max_bytes < 1:
        raise UsageError("--max-bytes must be at least 1")
    if max_bad_records is not None and max_bad_records < 0:
        raise UsageError("--max-bad-records must be 0 or more")
    workers = _check_processes(processes)
    stats = StageStats("extract", strict=strict)
    links = load_links(links_file, stats) if links_file else None
    settings = core.ExtractOptions(mode=mode, include_comments=comments)
    with ExitStack() as stack:
        out = stack.enter_context(open_output(output))
        rejects_out = stack.enter_context(atomic_write(rejected, "wb")) if rejected else None
        rejects = Rejects(stats, rejects_out, max_bad_records)
        bar = stack.enter_context(console.progress())
        task = bar.add_task("extract", total=None, status="")
        pages = core.extract_pages(
            iter_responses(inputs, stats, max_bytes, rejects),
            settings,
            stats,
            links,
            workers,
            rejects,
        )
        try:
            for number, record in enumerate(pages, 1):
                out.write(dumps(record))
                if number % 64 == 0:
                    bar.update(task, completed=stats.documents_in, status=f"{number:,} pages out")
        except BrokenPipeError:
            _quiet_exit_on_closed_stdout()
    stats.finish(stats_file)
    if rejects.cut:  # every whole record is out; the cut file is the error
        first = rejects.cut[0]
        more = f" (and {len(rejects.cut) - 1} more cut files)" if len(rejects.cut) > 1 else ""
        raise type(first)(f"{first.message}{more}", first.hint)


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

    @group.command("links")
    def links(
        files: list[str] = typer.Argument(
            None,
            help="Reddit submission dumps (Pushshift NDJSON, .zst as published), or with "
            "--merge link files; '-' or none reads stdin.",
            show_default=False,
        ),
        min_karma: int = typer.Option(
            3, "--min-karma", help="Keep submissions with at least this score."
        ),
        exclude_domain: list[str] = options.EXCLUDE_DOMAIN,
        exclude_domain_file: list[str] = options.EXCLUDE_DOMAIN_FILE,
        exclude_over_18: bool = typer.Option(
            False, "--exclude-over-18", help="Drop submissions marked over_18 (NSFW)."
        ),
        merge: bool = typer.Option(
            False,
            "--merge",
            help="Inputs are link files (this command's output, which is sorted): merge "
            "them in one streaming pass, highest karma, summed submissions, first date.",
        ),
        max_urls: int = typer.Option(
            4_000_000,
            "--max-urls",
            help="URLs held in memory (about 250 bytes each) before a sorted run is "
            "spilled to a temporary file; the runs are merged at the end.",
        ),
        temp_dir: Path = typer.Option(
            None, "--temp-dir", help="Where spilled runs go (default: $TMPDIR).", show_default=False
        ),
        output: str = options.CORPUS_OUTPUT,
        stats_file: str = options.STATS_FILE,
        strict: bool = options.STRICT,
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
        links_command(
            files or ["-"],
            min_karma,
            exclude_domain,
            exclude_domain_file,
            exclude_over_18,
            merge,
            max_urls,
            temp_dir,
            output,
            stats_file,
            strict,
        )

    @group.command("extract")
    def extract(
        files: list[str] = typer.Argument(
            None,
            help="WARC or ARC files (plain or compressed) from any crawler; '-' or none "
            "reads stdin.",
            show_default=False,
        ),
        links_file: str = typer.Option(
            None,
            "--links",
            help="A URL list: `gpt2 corpus links` output, any JSON Lines with a url, or "
            "plain URLs one a line, in any order: keep only pages of those URLs (joined by "
            "SURT key, through redirects) and add karma, submissions, date. A URL listed "
            "twice is merged as links --merge merges.",
            show_default=False,
        ),
        favor: str = typer.Option(
            "precision",
            "--favor",
            help="trafilatura's trade-off: precision (less boilerplate, as FineWeb), "
            "balanced or recall.",
        ),
        comments: bool = typer.Option(
            False, "--comments", help="Keep the comment sections trafilatura finds."
        ),
        processes: int = typer.Option(
            0, "--processes", "-j", help="Extraction processes (0: all cores).", show_default=False
        ),
        max_bytes: int = typer.Option(
            5_000_000, "--max-bytes", help="Skip pages larger than this (counted as too_large)."
        ),
        max_bad_records: int = typer.Option(
            None,
            "--max-bad-records",
            help="Stop (exit 1) after this many bad records instead of counting and "
            "skipping them all (--strict stops at the first).",
            show_default=False,
        ),
        rejected: str = typer.Option(
            None,
            "--rejected",
            help="Write a JSON line for every record that gave no page: file, offset (in "
            "the uncompressed stream), url, reason, and for bad records a message.",
            show_default=False,
        ),
        output: str = options.CORPUS_OUTPUT,
        stats_file: str = options.STATS_FILE,
        strict: bool = options.STRICT,
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
        extract_command(
            files or ["-"],
            links_file,
            favor,
            comments,
            processes,
            max_bytes,
            max_bad_records,
            rejected,
            output,
            stats_file,
            strict,
        )

    corpus_clean.register(group)
    corpus_dedup.register(group)
    corpus_fetch.register(group)
    app.add_typer(group, name=NAME)
