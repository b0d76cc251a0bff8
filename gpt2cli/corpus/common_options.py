"""Options that more than one corpus verb declares (:mod:`gpt2cli.option_fields`), each
declared here once. Light to import, for --help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2cli.option_fields import at_least, option


@dataclass(frozen=True)
class RecordOptions:
    """How a stage that reads documents reads them, and where its removal report goes: each
    field is also the flag of the verbs that take it (:mod:`gpt2cli.option_fields`)."""

    removed_report: Path | None = option(
        None,
        "Write one JSON line per removed document: its number, the number of the document "
        "kept in its place and the reason (exact or near).",
        long="--clusters",
        path=True,
        show_default=False,
    )
    field: str = option("text", "JSON field that holds the text.")
    strict: bool = option(
        False, "Stop at the first bad record instead of counting and skipping it."
    )


def exclude_domain_option(help: str) -> Any:
    """``--exclude-domain``, as ``links`` and ``filter`` declare it (their help differs)."""
    return option(help=help, show_default=False, default_factory=list)


def exclude_domain_file_option() -> Any:
    """``--exclude-domain-file``, as ``links`` and ``filter`` declare it."""
    return option(
        help="Drop the domains listed in this file, one a line, # comments (repeatable).",
        show_default=False,
        default_factory=list,
    )


def max_urls_option(default: int, help: str) -> Any:
    """``--max-urls``, the URLs ``links`` and ``fetch`` hold in memory before a sorted run is
    spilled (``--temp-dir``)."""
    return option(default, help, rule=at_least(1))


def temp_dir_option() -> Any:
    """``--temp-dir``, where ``links`` and ``fetch`` spill their sorted runs of URLs."""
    return option(None, "Where spilled runs go (default: $TMPDIR).", path=True, show_default=False)
