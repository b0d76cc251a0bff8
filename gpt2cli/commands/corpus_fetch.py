"""``gpt2 corpus fetch``: link files → WARC files and a fetch log, live or from the archives."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from gpt2cli import console
from gpt2cli.commands import options
from gpt2cli.errors import UsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.I)


def parse_size(text: str, option: str) -> int:
    """``1000000``, ``500M``, ``1GB`` (powers of 1000) as bytes."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"{option} {text!r}: not a size (e.g. 1000000, 500M, 1G)")
    number, unit = match.groups()
    scale = 1000 ** ("kmgt".index(unit.lower()) + 1) if unit else 1
    return int(float(number) * scale)


def parse_part(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--part {text!r}: expected I/N, e.g. 3/16")
    part, parts = int(match.group(1)), int(match.group(2))
    if parts < 1 or part >= parts:
        raise UsageError(f"--part {text}: I must be in 0..N-1")
    return part, parts


def register(corpus_app: typer.Typer) -> None:
    """Add ``fetch`` to the ``corpus`` sub-app."""

    @corpus_app.command("fetch")
    def fetch_verb(
        files: list[str] = typer.Argument(
            None,
            help="Link files from `gpt2 corpus links` (JSON Lines: url, date) or plain URL "
            "lists, one a line, any order, duplicates merged; '-' or none reads stdin.",
            show_default=False,
        ),
        output: Path = typer.Option(
            ..., "--output", "-o", help="Directory of the WARC files and fetch.jsonl (created)."
        ),
        user_agent: str = typer.Option(
            None,
            "--user-agent",
            help="User-Agent header, also the name robots.txt rules are matched against "
            "(default: gpt2cli/VERSION (+URL of docs/fetch.md)).",
            show_default=False,
        ),
        ignore_robots: bool = typer.Option(
            False, "--ignore-robots", help="Do not read or obey robots.txt."
        ),
        per_host: int = typer.Option(1, "--per-host", help="Connections to one host at most."),
        delay: float = typer.Option(
            1.0,
            "--delay",
            help="Seconds between the starts of two requests to one host (a robots.txt "
            "Crawl-delay, up to 60 s, raises it).",
        ),
        concurrency: int = typer.Option(256, "--concurrency", help="Requests in flight at most."),
        connect_timeout: float = typer.Option(
            10.0, "--connect-timeout", help="Seconds to open a connection."
        ),
        read_timeout: float = typer.Option(
            30.0, "--read-timeout", help="Seconds to the first byte, and between two reads."
        ),
        timeout: float = typer.Option(120.0, "--timeout", help="Seconds for a whole response."),
        max_bytes: str = typer.Option(
            "10M",
            "--max-bytes",
            help="Bytes of a body kept at most; a longer one is cut, its record marked "
            "WARC-Truncated: length.",
        ),
        html_only: bool = typer.Option(
            False,
            "--html-only",
            help="Stop before the body of a 200 response whose Content-Type is not HTML (the "
            "record keeps the headers, marked WARC-Truncated).",
        ),
        retries: int = typer.Option(
            3,
            "--retries",
            help="Retries of a URL after a timeout, a reset, a refused connection, 429 or 503 "
            "(Retry-After honoured), with exponential backoff.",
        ),
        retry_wait: float = typer.Option(
            2.0, "--retry-wait", help="Seconds before the first retry (doubled each time)."
        ),
        allow_private: bool = typer.Option(
            False,
            "--allow-private",
            help="Allow loopback, private, link-local and reserved addresses (tests, "
            "intranets). Without it such addresses are never connected to, redirects and "
            "names resolving to them included.",
        ),
        allow_address: list[str] = typer.Option(
            None,
            "--allow-address",
            help="Allow this address or network (CIDR) although it is private, and no other "
            "(repeatable): a local archive mirror, an intranet host.",
            show_default=False,
        ),
        warc_size: str = typer.Option(
            "1G", "--warc-size", help="Start a new WARC file past this size."
        ),
        part: str = typer.Option(
            None,
            "--part",
            help="I/N: fetch only the URLs whose host hashes to part I of N (one Slurm array "
            "task, or one xargs -P process, per part; same N for every part).",
            show_default=False,
        ),
        max_urls: int = typer.Option(
            1_000_000,
            "--max-urls",
            help="URLs held in memory while reading (about 250 bytes each) before a sorted "
            "run is spilled to a temporary file.",
        ),
        temp_dir: Path = typer.Option(
            None, "--temp-dir", help="Where spilled runs go (default: $TMPDIR).", show_default=False
        ),
        from_archive: str = typer.Option(
            None,
            "--from-archive",
            help="A CDX API URL (pywb, Common Crawl's index, e.g. "
            "https://index.commoncrawl.org/CC-MAIN-2017-51-index): fetch each URL's status-200 "
            "capture closest to its link's date from the archive instead of the live web.",
            show_default=False,
        ),
        archive_prefix: str = typer.Option(
            "https://data.commoncrawl.org/",
            "--archive-prefix",
            help="With --from-archive: the URL the index's WARC file names are relative to.",
        ),
        as_of: str = typer.Option(
            None,
            "--as-of",
            help="With --from-archive: the date captures are chosen closest to (ISO 8601 or "
            "YYYYMMDD...), instead of each link's date.",
            show_default=False,
        ),
        stats_file: str = options.STATS_FILE,
        strict: bool = options.STRICT,
    ) -> None:
        """Fetch links into WARC files, politely, resumably, or out of the web archives.

        Writes OUTPUT/fetch-NNNNN.warc.gz (one gzip member per record; request and response
        records, each redirect hop its own response) and OUTPUT/fetch.jsonl, one line per
        URL: url, status, final_url, bytes, error, warc, offset, length, attempts. Obeys
        robots.txt, paces each host (--per-host, --delay), never connects to a private
        address unless --allow-private. Killed at any point, the same command resumes: URLs
        logged are skipped, a WARC file is cut back to its last logged record. See
        docs/fetch.md."""
        from gpt2cli.corpus.fetch.run import DEFAULT_AGENT, FetchOptions
        from gpt2cli.corpus.fetch.run import fetch as fetch_core
        from gpt2cli.corpus.stats import StageStats
        from gpt2cli.fileio import os_errors

        part_index, parts = parse_part(part)
        settings = FetchOptions(
            inputs=files or ["-"],
            output=output,
            user_agent=user_agent or DEFAULT_AGENT,
            ignore_robots=ignore_robots,
            per_host=per_host,
            delay=delay,
            concurrency=concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            timeout=timeout,
            max_bytes=parse_size(max_bytes, "--max-bytes"),
            html_only=html_only,
            retries=retries,
            retry_wait=retry_wait,
            allow_private=allow_private,
            allow_addresses=allow_address or [],
            warc_size=parse_size(warc_size, "--warc-size"),
            part=part_index,
            parts=parts,
            max_urls=max_urls,
            temp_dir=str(temp_dir) if temp_dir else None,
            from_archive=from_archive,
            archive_prefix=archive_prefix,
            as_of=as_of,
        )
        stats = StageStats("fetch", strict=strict)
        with console.progress() as bar, os_errors():
            task = bar.add_task("fetch", total=None, status="")
            fetch_core(settings, stats, lambda done: bar.update(task, completed=done))
        stats.finish(stats_file)
