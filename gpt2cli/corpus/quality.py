"""Heuristic quality rules in the spirit of Gopher's (Rae et al., 2021, appendix A) and C4's
(Raffel et al., 2020): each rule has a name, a threshold and a test that says why a document
fails, measured on plain statistics of its words, lines and paragraphs.

Words are whitespace-separated tokens; lines are split on newlines and blank lines are not
counted; paragraphs are separated by one or more blank lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from itertools import filterfalse

BULLETS = ("•", "●", "○", "◦", "▪", "‣", "⁃", "-", "*", "·")
ELLIPSES = ("...", "…")
STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")


class Text:
    """Statistics of one document, each computed once when a rule first needs it."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @cached_property
    def word_chars(self) -> int:
        return sum(map(len, self.words))

    @cached_property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.split("\n") if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [part.strip() for part in _PARAGRAPH_BREAK.split(self.text) if part.strip()]


def _repetition(parts: list[str]) -> float:
    """The larger of the share of ``parts`` that repeat an earlier one and 1.5 x the share of
    characters in them: above 0.3 exactly when Gopher's two limits (0.3 of the parts or 0.2 of
    the characters) drop it."""
    if not parts:
        return 0.0
    seen: set[str] = set()
    repeated = repeated_chars = total_chars = 0
    for part in parts:
        total_chars += len(part)
        if part in seen:
            repeated += 1
            repeated_chars += len(part)
        else:
            seen.add(part)
    return max(repeated / len(parts), repeated_chars / max(total_chars, 1) * 1.5)


def symbol_ratio(doc: Text) -> float:
    """Hash symbols and ellipses per word."""
    symbols = doc.text.count("#") + doc.text.count("...") + doc.text.count("…")
    return symbols / max(len(doc.words), 1)


def bullet_lines(doc: Text) -> float:
    """Share of lines that start with a bullet."""
    return sum(line.startswith(BULLETS) for line in doc.lines) / max(len(doc.lines), 1)


def ellipsis_lines(doc: Text) -> float:
    """Share of lines that end in an ellipsis."""
    return sum(line.endswith(ELLIPSES) for line in doc.lines) / max(len(doc.lines), 1)


def mean_word_length(doc: Text) -> float:
    return doc.word_chars / max(len(doc.words), 1)


def alpha_words(doc: Text) -> float:
    """Share of words with at least one letter (``str.isalpha``)."""
    mixed = list(filterfalse(str.isalpha, doc.words))
    held = len(doc.words) - len(mixed) + sum(1 for word in mixed if any(map(str.isalpha, word)))
    return held / max(len(doc.words), 1)


def stop_words(doc: Text) -> float:
    """How many of the eight English stop words of Gopher's rule occur as words (any case)."""
    return len(STOP_WORDS.intersection(map(str.lower, doc.words)))


def repeated_lines(doc: Text) -> float:
    """Repetition of lines (see ``_repetition``)."""
    return _repetition(doc.lines)


def repeated_paragraphs(doc: Text) -> float:
    """Repetition of paragraphs (see ``_repetition``)."""
    return _repetition(doc.paragraphs)


def indented_lines(doc: Text) -> float:
    """Share of non-blank lines indented by a tab or four spaces (source code, mostly)."""
    lines = [line for line in doc.text.split("\n") if line.strip()]
    return sum(line.startswith(("    ", "\t")) for line in lines) / max(len(lines), 1)


def lorem_ipsum(doc: Text) -> float:
    return float("lorem ipsum" in doc.text.lower())


def curly_brace(doc: Text) -> float:
    return float("{" in doc.text)


@dataclass(frozen=True)
class QualityRule:
    name: str
    measure: Callable[[Text], float]
    threshold: float
    fails_above: bool  # True: drop when the measure exceeds the threshold; False: when below
    default_on: bool
    help: str

    def failed(self, doc: Text, threshold: float | None = None) -> float | None:
        """The measured value when ``doc`` fails this rule, else None."""
        limit = self.threshold if threshold is None else threshold
        value = self.measure(doc)
        return value if (value > limit if self.fails_above else value < limit) else None


RULES: tuple[QualityRule, ...] = (
    QualityRule(
        "symbol-ratio", symbol_ratio, 0.1, True, True,
        "hash symbols and ellipses per word above the threshold (Gopher 0.1)",
    ),
    QualityRule(
        "bullet-lines", bullet_lines, 0.9, True, True,
        "share of lines starting with a bullet above the threshold (Gopher 0.9)",
    ),
    QualityRule(
        "ellipsis-lines", ellipsis_lines, 0.3, True, True,
        "share of lines ending in an ellipsis above the threshold (Gopher 0.3)",
    ),
    QualityRule(
        "min-word-length", mean_word_length, 3.0, False, True,
        "mean word length in characters below the threshold (Gopher 3)",
    ),
    QualityRule(
        "max-word-length", mean_word_length, 10.0, True, True,
        "mean word length in characters above the threshold (Gopher 10)",
    ),
    QualityRule(
        "alpha-words", alpha_words, 0.8, False, True,
        "share of words holding a letter below the threshold (Gopher 0.8)",
    ),
    QualityRule(
        "stop-words", stop_words, 2, False, True,
        "fewer of the stop words the, be, to, of, and, that, have, with than the threshold "
        "(Gopher 2)",
    ),
    QualityRule(
        "repeated-lines", repeated_lines, 0.3, True, True,
        "repeated lines: the larger of their share and 1.5 x their share of characters above "
        "the threshold (Gopher: 0.3 of lines, 0.2 of characters)",
    ),
    QualityRule(
        "repeated-paragraphs", repeated_paragraphs, 0.3, True, True,
        "repeated paragraphs, measured as repeated-lines (Gopher: 0.3 and 0.2)",
    ),
    QualityRule(
        "lorem-ipsum", lorem_ipsum, 0.0, True, True,
        "the text holds 'lorem ipsum' (C4)",
    ),
    QualityRule(
        "indented-lines", indented_lines, 0.5, True, False,
        "share of lines indented by a tab or 4 spaces above the threshold (off by default: "
        "selects prose over code)",
    ),
    QualityRule(
        "curly-brace", curly_brace, 0.0, True, False,
        "the text holds a '{' (C4; off by default: it drops any page that shows code)",
    ),
)  # fmt: skip

BY_NAME = {rule.name: rule for rule in RULES}
