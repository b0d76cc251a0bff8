"""The options of ``gpt2 corpus extract``: each field is also its flag and --help text
(:mod:`gpt2cli.option_fields`). Light to import (no WARC reader, no process pool), for --help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpt2cli import option_fields
from gpt2cli.option_fields import at_least, non_negative, one_of, option

MODES = ("precision", "balanced", "recall")


@dataclass(frozen=True)
class ExtractOptions:
    """The options of ``gpt2 corpus extract``: each field is also its flag and --help text
    (:mod:`gpt2cli.option_fields`), in --help's order; checked when made."""

    links_file: str | None = option(
        None,
        "A URL list: `gpt2 corpus links` output, any JSON Lines with a url, or "
        "plain URLs one a line, in any order: keep only pages of those URLs (joined by "
        "SURT key, through redirects) and add karma, submissions, date. A URL listed "
        "twice is merged as links --merge merges.",
        long="--links",
        show_default=False,
    )
    mode: str = option(
        "precision",
        "trafilatura's trade-off: precision (less boilerplate, as FineWeb), balanced or recall.",
        long="--favor",
        rule=one_of(*MODES),
    )
    include_comments: bool = option(
        False, "Keep the comment sections trafilatura finds.", long="--comments"
    )
    processes: int = option(
        0, "Extraction processes (0: all cores).", "-j", show_default=False, rule=non_negative
    )
    max_bytes: int = option(
        5_000_000, "Skip pages larger than this (counted as too_large).", rule=at_least(1)
    )
    max_bad_records: int | None = option(
        None,
        "Stop (exit 1) after this many bad records instead of counting and "
        "skipping them all (--strict stops at the first).",
        show_default=False,
        rule=non_negative,
    )
    rejected: str | None = option(
        None,
        "Write a JSON line for every record that gave no page: file, offset (in "
        "the uncompressed stream), url, reason, and for bad records a message.",
        show_default=False,
    )
    include_tables: bool = option(True, cli=False)

    def __post_init__(self) -> None:
        option_fields.check(self)

    def trafilatura_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``trafilatura.extract`` these options stand for."""
        return {
            "favor_precision": self.mode == "precision",
            "favor_recall": self.mode == "recall",
            "include_comments": self.include_comments,
            "include_tables": self.include_tables,
        }
