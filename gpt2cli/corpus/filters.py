"""``corpus filter``'s rules: domain exclusion, length in words, language, the quality set of
``gpt2cli.corpus.quality`` and length in GPT-2 tokens, applied in that order (language
before the quality rules, whose stop words are English).

A document is dropped by the first rule it fails; ``Verdict`` names the rule and the value
it measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gpt2cli.corpus import quality
from gpt2cli.corpus.urls import domain_of, matches_domain
from gpt2cli.errors import UsageError
from gpt2cli.numbers import check_number

LENGTH_RULES = ("domain", "min-words", "max-words", "min-tokens", "max-tokens", "lang")
RULE_NAMES = LENGTH_RULES + tuple(rule.name for rule in quality.RULES)


@dataclass
class FilterConfig:
    exclude_domains: frozenset[str] = frozenset()
    url_field: str = "url"
    min_words: int = 0
    max_words: int = 0  # 0: no limit
    min_tokens: int = 0
    max_tokens: int = 0
    languages: frozenset[str] = frozenset()  # empty: any language
    lang_score: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    enabled: frozenset[str] = frozenset()  # quality rules that are off by default

    def __post_init__(self) -> None:
        check_number(self.lang_score, "--lang-score", 0.0, 1.0)  # a probability
        for name, value in self.thresholds.items():
            # every measure is a share, a mean length or a count: never below 0
            check_number(value, f"--threshold {name}", 0.0)


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
    return name, check_number(number, f"--threshold {name}", 0.0)


def check_rule_names(names: set[str] | frozenset[str], option: str) -> None:
    unknown = sorted(set(names) - set(RULE_NAMES))
    if unknown:
        raise UsageError(
            f"{option}: no rule named {', '.join(unknown)}", "see gpt2 corpus filter --list-rules"
        )


class Filter:
    """The active rules of a configuration, in order."""

    def __init__(self, config: FilterConfig) -> None:
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
