"""``gpt2 corpus fetch``: link files → WARC files and a fetch log, live or from the archives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gpt2cli import console
from gpt2cli.commands import options
from gpt2cli.commands.corpus_clean import stage_verb
from gpt2cli.corpus.common_options import RecordOptions
from gpt2cli.corpus.fetch.options import FetchOptions


def register(corpus_app: typer.Typer) -> None:
    """Add ``fetch`` to the ``corpus`` sub-app."""

    @stage_verb(corpus_app, "fetch", FetchOptions, {"user_agent": "output"})
    def fetch_verb(
        files: list[str] = options.inputs_argument(
            "Link files from `gpt2 corpus links` (JSON Lines: url, date) or plain URL "
            "lists, one a line, any order, duplicates merged; '-' or none reads stdin."
        ),
        output: Path = typer.Option(
            ..., "--output", "-o", help="Directory of the WARC files and fetch.jsonl (created)."
        ),
        stats_file: str = options.STATS_FILE,
        **given: Any,
    ) -> None:
        """Fetch links into WARC files, politely, resumably, or out of the web archives.

        Writes OUTPUT/fetch-NNNNN.warc.gz (one gzip member per record; request and response
        records, each redirect hop its own response) and OUTPUT/fetch.jsonl, one line per
        URL: url, status, final_url, bytes, error, warc, offset, length, attempts. Obeys
        robots.txt, paces each host (--per-host, --delay), never connects to a private
        address unless --allow-private. Killed at any point, the same command resumes: URLs
        logged are skipped, a WARC file is cut back to its last logged record. See
        docs/fetch.md."""
        from gpt2cli.corpus.fetch.run import fetch
        from gpt2cli.corpus.stats import StageStats
        from gpt2cli.fileio import os_errors

        settings = options.build(
            FetchOptions, {**given, "inputs": files or ["-"], "output": output}
        )
        stats = StageStats("fetch", strict=options.build(RecordOptions, given).strict)
        with console.progress() as bar, os_errors():
            task = bar.add_task("fetch", total=None, status="")
            fetch(settings, stats, lambda done: bar.update(task, completed=done))
        stats.finish(stats_file)
