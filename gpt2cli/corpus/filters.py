"""``corpus filter``'s rules: domain exclusion, length in words, language, the quality set of
``gpt2cli.corpus.quality`` and length in GPT-2 tokens, applied in that order (language
before the quality rules, whose stop words are English).

A document is dropped by the first rule it fails; ``Verdict`` names the rule and the value
it measured.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gpt2cli import option_fields
from gpt2cli.corpus import quality
from gpt2cli.corpus.common_options import exclude_domain_file_option, exclude_domain_option
from gpt2cli.corpus.jsonl import JsonlWriter, Track, read_records, untracked
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.urls import (
    domain_of,
    load_domains,
    matches_domain,
)
from gpt2cli.errors import UsageError
from gpt2cli.fileio import atomic_write
from gpt2cli.option_fields import between, non_negative, option, require

LENGTH_RULES = ("domain", "min-words", "max-words", "min-tokens", "max-tokens", "lang")
RULE_NAMES = LENGTH_RULES + tuple(rule.name for rule in quality.RULES)


@dataclass
class FilterOptions:
    """The options of ``gpt2 corpus filter``: each field is also its flag and --help text
    (:mod:`gpt2cli.option_fields`), in --help's order; checked, and read into the rules'
    settings below them, when made."""

    exclude_domain: list[str] = exclude_domain_option(
        "Drop documents whose url (or domain field) is on this domain or a "
        "subdomain of it (repeatable), e.g. wikipedia.org."
    )
    exclude_domain_file: list[str] = exclude_domain_file_option()
    url_field: str = option("url", "JSON field of the url.")
    min_words: int = option(0, "Fewest words (0: no limit).", rule=non_negative)
    max_words: int = option(0, "Most words (0: no limit).")
    min_tokens: int = option(
        0, "Fewest GPT-2 tokens (OpenWebText: 128; 0: no limit).", rule=non_negative
    )
    max_tokens: int = option(0, "Most GPT-2 tokens (0: none).")
    lang: list[str] = option(
        help="Keep documents in this language (ISO 639-1 code, repeatable), as py3langid "
        "identifies it from the first 1500 characters.",
        show_default=False,
        default_factory=list,
    )
    lang_score: float = option(
        0.5, "Lowest probability of the identified language.", rule=between(0, 1)
    )
    threshold: list[str] = option(
        help="RULE=VALUE: another threshold for a quality rule (repeatable).",
        show_default=False,
        default_factory=list,
    )
    disable: list[str] = option(
        help="Switch a rule off (repeatable).", show_default=False, default_factory=list
    )
    enable: list[str] = option(
        help="Switch on a rule that is off by default (repeatable).",
        show_default=False,
        default_factory=list,
    )
    no_quality: bool = option(False, "Switch every quality rule off.")
    rejected: Path | None = option(
        None,
        "Write every dropped document here, with rejected_by (the rule) and "
        "rejected_value (what it measured).",
        path=True,
        show_default=False,
    )
    # what the rules read, from the options above
    exclude_domains: frozenset[str] = field(init=False, default=frozenset())
    languages: frozenset[str] = field(init=False, default=frozenset())  # empty: any language
    thresholds: dict[str, float] = field(init=False, default_factory=dict)
    disabled: frozenset[str] = field(init=False, default=frozenset())
    enabled: frozenset[str] = field(init=False, default=frozenset())  # off by default

    def __post_init__(self) -> None:
        check_rule_names(set(self.disable), "--disable")
        check_rule_names(set(self.enable), "--enable")
        option_fields.check(self)
        self.thresholds = dict(parse_threshold(entry) for entry in self.threshold)
        self.exclude_domains = frozenset(
            load_domains(self.exclude_domain, self.exclude_domain_file)
        )
        self.languages = frozenset(code.lower() for code in self.lang)
        off = set(self.disable)
        if self.no_quality:
            off.update(rule.name for rule in quality.RULES)
        self.disabled = frozenset(off)
        self.enabled = frozenset(self.enable)


@dataclass
class Verdict:
    rule: str
    value: float | str


Check = Callable[[dict, str, quality.Text], "float | str | None"]


def parse_threshold(entry: str) -> tuple[str, float]:
    """``NAME=VALUE`` for a quality rule."""
    name, equals, value = entry.partition("=")
    if not equals or name not in quality.BY_NAME:
        raise UsageError(
            f"--threshold takes RULE=VALUE with a quality rule, not {entry!r}",
            "see --list-rules",
        )
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--threshold {name}: {value!r} is not a number") from None
    # every measure is a share, a mean length or a count: never below 0
    return name, require(number, f"--threshold {name}", non_negative)


def check_rule_names(names: set[str] | frozenset[str], option: str) -> None:
    unknown = sorted(set(names) - set(RULE_NAMES))
    if unknown:
        raise UsageError(
            f"{option}: no rule named {', '.join(unknown)}", "see gpt2 corpus filter --list-rules"
        )


class Filter:
    """The active rules of a configuration, in order."""

    def __init__(self, config: FilterOptions) -> None:
        self.config = config
        self.rules: list[tuple[str, Check]] = []
        off = config.disabled
        if config.exclude_domains and "domain" not in off:
            self.rules.append(("domain", self._domain))
        if config.min_words and "min-words" not in off:
            self.rules.append(("min-words", self._min_words))
        if config.max_words and "max-words" not in off:
            self.rules.append(("max-words", self._max_words))
        if config.languages and "lang" not in off:
            self.rules.append(("lang", self._lang))
        for rule in quality.RULES:
            on = rule.default_on or rule.name in config.enabled
            if on and rule.name not in off:
                self.rules.append((rule.name, self._quality(rule)))
        if (config.min_tokens or config.max_tokens) and not {"min-tokens", "max-tokens"} <= off:
            self.rules.append(("tokens", self._tokens))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.rules]

    def verdict(self, data: dict, text: str) -> Verdict | None:
        """The first rule ``text`` fails, or None when it passes them all."""
        doc = quality.Text(text)
        for name, check in self.rules:
            value = check(data, text, doc)
            if value is not None:
                if isinstance(value, tuple):
                    name, value = value
                return Verdict(name, value)
        return None

    def _domain(self, data: dict, text: str, doc: quality.Text) -> str | None:
        url = data.get(self.config.url_field)
        domain = data.get("domain") or (domain_of(url) if isinstance(url, str) else "")
        return domain if domain and matches_domain(domain, self.config.exclude_domains) else None

    def _min_words(self, data: dict, text: str, doc: quality.Text) -> float | None:
        return len(doc.words) if len(doc.words) < self.config.min_words else None

    def _max_words(self, data: dict, text: str, doc: quality.Text) -> float | None:
        return len(doc.words) if len(doc.words) > self.config.max_words else None

    def _quality(self, rule: quality.QualityRule) -> Check:
        threshold = self.config.thresholds.get(rule.name)

        def check(data: dict, text: str, doc: quality.Text) -> float | None:
            value = rule.failed(doc, threshold)
            return None if value is None else round(value, 4)

        return check

    def _lang(self, data: dict, text: str, doc: quality.Text) -> str | None:
        from gpt2cli.corpus.langid import identify

        language, probability = identify(text)
        if language in self.config.languages and probability >= self.config.lang_score:
            return None
        return f"{language}:{probability:.2f}"

    def _tokens(self, data: dict, text: str, doc: quality.Text) -> tuple[str, int] | None:
        from gpt2cli.text.tokenizer import encode

        config, off = self.config, self.config.disabled
        low = config.min_tokens if "min-tokens" not in off else 0
        high = config.max_tokens if "max-tokens" not in off else 0
        # every whitespace-separated word is at least one token, every token at least a byte
        if len(doc.words) >= low and (not high or len(text.encode("utf-8", "replace")) <= high):
            return None
        count = len(encode(text))
        if config.min_tokens and "min-tokens" not in off and count < config.min_tokens:
            return ("min-tokens", count)
        if config.max_tokens and "max-tokens" not in off and count > config.max_tokens:
            return ("max-tokens", count)
        return None


def filter_documents(
    inputs: list[str],
    options: FilterOptions,
    text_field: str,
    stats: StageStats,
    out: BinaryIO,
    track: Track = untracked,
) -> None:
    """``gpt2 corpus filter``: the documents of ``inputs`` that pass every rule to ``out``,
    unchanged and in input order; the dropped ones, each with the rule and what it measured,
    to ``options.rejected``."""
    rule_set = Filter(options)
    stats.extra["rules"] = rule_set.names
    kept = JsonlWriter(out)
    with ExitStack() as stack:
        dropped = None
        if options.rejected is not None:
            dropped = JsonlWriter(stack.enter_context(atomic_write(options.rejected, "wb")))
        for record in track(read_records(inputs, text_field, stats), stats, "filter"):
            verdict = rule_set.verdict(record.data, record.text)
            if verdict is None:
                kept.write_raw(record.raw)
                stats.count_out()
                continue
            stats.drop(verdict.rule.replace("-", "_"))
            if dropped is not None:
                dropped.write_object(
                    {**record.data, "rejected_by": verdict.rule, "rejected_value": verdict.value}
                )
        kept.flush()
        if dropped is not None:
            dropped.flush()


def rule_table() -> list[tuple[str, str, str]]:
    """(name, default, what drops a document) for ``--list-rules`` and docs/corpus.md."""
    rows = [
        ("domain", "with --exclude-domain", "the url's host is an excluded domain or under one"),
        ("min-words", "with --min-words", "fewer whitespace-separated words"),
        ("max-words", "with --max-words", "more words"),
        ("min-tokens", "with --min-tokens", "fewer GPT-2 tokens (the bundled tokenizer)"),
        ("max-tokens", "with --max-tokens", "more GPT-2 tokens"),
        ("lang", "with --lang", "py3langid's language is not one of --lang, or below --lang-score"),
    ]
    for rule in quality.RULES:
        default = f"on, {rule.threshold:g}" if rule.default_on else f"off, {rule.threshold:g}"
        rows.append((rule.name, default, rule.help))
    return rows
