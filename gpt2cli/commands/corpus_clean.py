"""``gpt2 corpus filter`` (and the options the corpus verbs share with ``corpus_dedup``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import typer

from gpt2cli import console
from gpt2cli.corpus import filters, quality
from gpt2cli.corpus.jsonl import JsonlWriter, Record, read_records
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.urls import load_domains
from gpt2cli.errors import UsageError
from gpt2cli.fileio import atomic_write, os_errors

FILES = typer.Argument(None, help="JSON Lines inputs; '-' or none reads stdin.", show_default=False)
FIELD = typer.Option("text", "--field", help="JSON field that holds the text.")
STATS = typer.Option(
    None, "--stats", help="Also write the counters as JSON to this file.", show_default=False
)
STRICT = typer.Option(
    False, "--strict", help="Stop at the first bad record instead of counting and skipping it."
)


def tracked(records: Iterable[Record], stats: StageStats, label: str) -> Iterator[Record]:
    """Records as they come, with a progress line on stderr when it is a terminal."""
    with console.progress() as bar:
        task = bar.add_task(label, total=None, status="")
        for count, record in enumerate(records, start=1):
            if count % 1000 == 0:
                bar.update(task, completed=count, status=f"{stats.bytes_in / 1e6:,.1f} MB")
            yield record


def _reason(rule: str) -> str:
    return rule.replace("-", "_")


# ---------------------------------------------------------------------------------------------
# filter


def filter_command(
    inputs: list[str],
    config: filters.FilterConfig,
    field: str,
    rejected: Path | None,
    stats_file: str | None,
    strict: bool,
) -> None:
    rule_set = filters.Filter(config)
    stats = StageStats("filter", strict=strict)
    stats.extra["rules"] = rule_set.names
    out = JsonlWriter(sys.stdout.buffer)
    with ExitStack() as stack:
        dropped = None
        if rejected is not None:
            dropped = JsonlWriter(stack.enter_context(atomic_write(rejected, "wb")))
        for record in tracked(read_records(inputs, field, stats), stats, "filter"):
            verdict = rule_set.verdict(record.data, record.text)
            if verdict is None:
                out.write_raw(record.raw)
                stats.count_out()
                continue
            stats.drop(_reason(verdict.rule))
            if dropped is not None:
                dropped.write_object(
                    {**record.data, "rejected_by": verdict.rule, "rejected_value": verdict.value}
                )
        out.flush()
        if dropped is not None:
            dropped.flush()
    stats.finish(stats_file)


def _list_rules() -> None:
    for name, default, what in filters.rule_table():
        print(f"{name:20} {default:22} {what}")


# ---------------------------------------------------------------------------------------------
# the verbs


def register(corpus_app: typer.Typer) -> None:
    """Add ``filter`` to the ``corpus`` sub-app."""

    @corpus_app.command("filter")
    def filter_verb(
        files: list[str] = FILES,
        exclude_domain: list[str] = typer.Option(
            None,
            "--exclude-domain",
            help="Drop documents whose url (or domain field) is on this domain or a "
            "subdomain of it (repeatable), e.g. wikipedia.org.",
            show_default=False,
        ),
        exclude_domain_file: list[str] = typer.Option(
            None,
            "--exclude-domain-file",
            help="Drop the domains listed in this file, one a line, # comments (repeatable).",
            show_default=False,
        ),
        url_field: str = typer.Option("url", "--url-field", help="JSON field of the url."),
        min_words: int = typer.Option(0, "--min-words", help="Fewest words (0: no limit)."),
        max_words: int = typer.Option(0, "--max-words", help="Most words (0: no limit)."),
        min_tokens: int = typer.Option(
            0, "--min-tokens", help="Fewest GPT-2 tokens (OpenWebText: 128; 0: no limit)."
        ),
        max_tokens: int = typer.Option(0, "--max-tokens", help="Most GPT-2 tokens (0: none)."),
        lang: list[str] = typer.Option(
            [],
            "--lang",
            help="Keep documents in this language (ISO 639-1 code, repeatable), as py3langid "
            "identifies it from the first 1500 characters.",
            show_default=False,
        ),
        lang_score: float = typer.Option(
            0.5, "--lang-score", help="Lowest probability of the identified language."
        ),
        threshold: list[str] = typer.Option(
            [],
            "--threshold",
            help="RULE=VALUE: another threshold for a quality rule (repeatable).",
            show_default=False,
        ),
        disable: list[str] = typer.Option(
            [], "--disable", help="Switch a rule off (repeatable).", show_default=False
        ),
        enable: list[str] = typer.Option(
            [],
            "--enable",
            help="Switch on a rule that is off by default (repeatable).",
            show_default=False,
        ),
        no_quality: bool = typer.Option(
            False, "--no-quality", help="Switch every quality rule off."
        ),
        rejected: Path = typer.Option(
            None,
            "--rejected",
            help="Write every dropped document here, with rejected_by (the rule) and "
            "rejected_value (what it measured).",
            show_default=False,
        ),
        list_rules: bool = typer.Option(
            False, "--list-rules", help="Print the rules, their defaults and thresholds."
        ),
        field: str = FIELD,
        stats_file: str = STATS,
        strict: bool = STRICT,
    ) -> None:
        """Drop documents by named rules (domain, length, language, quality), each counted;
        the kept ones go to stdout unchanged, in input order."""
        if list_rules:
            _list_rules()
            return
        filters.check_rule_names(set(disable), "--disable")
        filters.check_rule_names(set(enable), "--enable")
        off = set(disable)
        if no_quality:
            off.update(rule.name for rule in quality.RULES)
        for name, value in ((min_words, "--min-words"), (min_tokens, "--min-tokens")):
            if name < 0:
                raise UsageError(f"{value} must be at least 0")
        config = filters.FilterConfig(
            exclude_domains=frozenset(load_domains(exclude_domain, exclude_domain_file)),
            url_field=url_field,
            min_words=min_words,
            max_words=max_words,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            languages=frozenset(code.lower() for code in lang),
            lang_score=lang_score,
            thresholds=dict(filters.parse_threshold(entry) for entry in threshold),
            disabled=frozenset(off),
            enabled=frozenset(enable),
        )
        with os_errors():
            filter_command(files or ["-"], config, field, rejected, stats_file, strict)
