"""``gpt2 corpus filter`` (and the options the corpus verbs share with ``corpus_dedup``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import typer

from gpt2cli import console
from gpt2cli.commands import options
from gpt2cli.corpus import filters
from gpt2cli.corpus.common_options import RecordOptions
from gpt2cli.corpus.filters import FilterOptions
from gpt2cli.corpus.jsonl import Record
from gpt2cli.corpus.stats import StageStats
from gpt2cli.fileio import os_errors

FILES = options.inputs_argument("JSON Lines inputs; '-' or none reads stdin.")
STATS = options.optional("--stats", help="Also write the counters as JSON to this file.")
# the RecordOptions of a verb that reads documents but removes none (no --clusters report)
TEXT = ("field", "strict")


def stage_verb(
    group: typer.Typer, name: str, settings: type, runs: dict[str, str | None]
) -> Callable[[Callable[..., Any]], Any]:
    """Register verb ``name`` of ``group``: its ``**given`` takes the options of dataclass
    ``settings`` (placed in --help by ``runs``) and --strict, after its ``stats_file``."""

    def decorate(command: Callable[..., Any]) -> Any:
        command = options.with_fields(settings, runs)(command)
        strict = options.with_fields(RecordOptions, {"strict": "stats_file"}, only=("strict",))
        return group.command(name)(strict(command))

    return decorate


def tracked(records: Iterable[Record], stats: StageStats, label: str) -> Iterator[Record]:
    """Records as they come, with a progress line on stderr when it is a terminal."""
    with console.progress() as bar:
        task = bar.add_task(label, total=None, status="")
        for count, record in enumerate(records, start=1):
            if count % 1000 == 0:
                bar.update(task, completed=count, status=f"{stats.bytes_in / 1e6:,.1f} MB")
            yield record


def filter_command(
    inputs: list[str], settings: FilterOptions, reading: RecordOptions, stats_file: str | None
) -> None:
    stats = StageStats("filter", strict=reading.strict)
    filters.filter_documents(inputs, settings, reading.field, stats, sys.stdout.buffer, tracked)
    stats.finish(stats_file)


def _list_rules() -> None:
    for name, default, what in filters.rule_table():
        print(f"{name:20} {default:22} {what}")


def register(corpus_app: typer.Typer) -> None:
    """Add ``filter`` to the ``corpus`` sub-app."""

    @corpus_app.command("filter")
    @options.with_fields(RecordOptions, {"field": "list_rules", "strict": "stats_file"}, only=TEXT)
    @options.with_fields(FilterOptions, {"exclude_domain": "files"})
    def filter_verb(
        files: list[str] = FILES,
        list_rules: bool = options.switch(
            "--list-rules", help="Print the rules, their defaults and thresholds."
        ),
        stats_file: str = STATS,
        **given: Any,
    ) -> None:
        """Drop documents by named rules (domain, length, language, quality), each counted;
        the kept ones go to stdout unchanged, in input order."""
        if list_rules:
            _list_rules()
            return
        settings = options.build(FilterOptions, given)
        reading = options.build(RecordOptions, given)
        with os_errors():
            filter_command(files or ["-"], settings, reading, stats_file)
