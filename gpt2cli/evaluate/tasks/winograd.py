"""The Winograd Schema Challenge, WSC273 (Levesque et al., 2012), as in the GPT-2 paper.

Data: ``WSCollection.xml`` as published by Ernest Davis at NYU
(cs.nyu.edu/faculty/davise/papers/WinogradSchemas/WSCollection.xml). The file holds 285
schemas; WSC273 is the first 273 of them (the first 273 ``<schema>`` elements are used; a
shorter file is used whole). Each schema:
``<text><txt1>…</txt1><pron>…</pron><txt2>…</txt2></text>``, ``<answers>`` with two
``<answer>`` elements, ``<correctAnswer>A</correctAnswer>`` (A or B, maybe followed by a dot).
The published file declares ``encoding="ISO-8859-1"``; the declaration is honoured.

The sentence is txt1 + " " + pron + " " + txt2 (whitespace collapsed; no space before a txt2
that starts with punctuation). Each answer replaces the pronoun, normalised as lm-eval's
``wsc273``: "'s" is appended when the pronoun is a possessive (my/his/her/our/their), and a
leading A/An/The/She/He/It/They/My/His/Her/Their is lower-cased unless the pronoun starts a
sentence.

Scorings (Trinh & Le, 2018), each choosing the answer with the higher score (first on ties):
- ``acc`` (partial scoring, the paper's headline): log-probability of the words after the
  pronoun (" " + txt2) given txt1 + the substituted answer;
- ``acc_full`` (full scoring): log-probability of the whole substituted sentence, given only
  ``<|endoftext|>``;
- ``acc_lm_eval``: partial scoring exactly as lm-evaluation-harness 0.4's ``wsc273`` does it
  (on the Hugging Face ``winograd_wsc`` text, txt1 + " " + pron + " " + txt2): its
  continuation is " " + the text after the pronoun, which itself starts with a space, so
  lm-eval scores "  feared violence." with two spaces (and "  ." where txt2 is "."). Given so
  that figures can be set beside lm-eval's; ``acc`` is the clean version.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from gpt2cli.evaluate.tasks._multiple_choice import Question, evaluate_choices
from gpt2cli.evaluate.tasks._taskio import read_text
from gpt2cli.evaluate.tasks.base import (
    DataFile,
    EvalOptions,
    Task,
    TaskResult,
    data_error,
)

WSC273 = 273
_UPPER = {"A", "An", "The", "She", "He", "It", "They", "My", "His", "Her", "Their"}
_POSSESSIVE = {"my", "his", "her", "our", "their"}


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


class Schema:
    def __init__(self, txt1: str, pron: str, txt2: str, answers: list[str], gold: int) -> None:
        self.txt1, self.pron, self.txt2 = txt1, pron, txt2
        self.answers, self.gold = answers, gold

    @property
    def rest(self) -> str:
        """The words after the pronoun, with their leading space (if any)."""
        if not self.txt2:
            return ""
        return self.txt2 if self.txt2[0] in ".,;:!?'" else " " + self.txt2

    def prefix(self) -> str:
        return self.txt1 + " " if self.txt1 else ""

    def option(self, answer: str) -> str:
        if self.pron.lower() in _POSSESSIVE:
            answer += "'s"
        first = answer.split()[0] if answer.split() else ""
        start_of_sentence = not self.txt1 or self.txt1.endswith(".")
        if not start_of_sentence and first in _UPPER:
            answer = answer.replace(first, first.lower())  # as lm-eval: every occurrence
        return answer

    def text(self) -> str:
        return self.prefix() + self.pron + self.rest

    def lm_eval_request(self, answer: str) -> tuple[str, str]:
        """(context, continuation) as lm-eval 0.4's ``wsc273`` builds them from the Hugging
        Face ``winograd_wsc`` fields (text, pronoun_loc)."""
        text = " ".join([self.txt1, self.pron, self.txt2]).strip()
        loc = len(self.txt1) + 1 if self.txt1 else 0
        if self.pron.lower() in _POSSESSIVE:
            answer += "'s"
        first = answer.split()[0] if answer.split() else ""
        if text[loc - 2] != "." and first in _UPPER:
            answer = answer.replace(first, first.lower())
        return text[:loc] + answer, " " + text[loc + len(self.pron) :]


def _line_of(raw: str, index: int) -> int | None:
    """Line of the index-th <schema> opening tag (1-based), for error messages."""
    pos = -1
    for _ in range(index + 1):
        pos = raw.find("<schema", pos + 1)
        if pos < 0:
            return None
    return raw.count("\n", 0, pos) + 1


def load(path: Path, limit: int | None = None) -> list[Schema]:
    try:
        data = path.read_bytes()
    except OSError:
        read_text(path)  # raises the Gpt2Error naming the file
        raise
    # bytes, so that the declared encoding is honoured (the published file is ISO-8859-1)
    raw = data.decode("latin-1")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise data_error(path, line, f"not well-formed XML ({exc})") from exc
    elements = root.findall("schema") if root.tag != "schema" else [root]
    if not elements:
        raise data_error(path, None, "no <schema> elements: expected WSCollection.xml")
    schemas = []
    for index, element in enumerate(elements[:WSC273]):
        if limit is not None and len(schemas) >= limit:
            break
        line = _line_of(raw, index)
        text = element.find("text")
        answers = [_clean(a.text) for a in element.findall("answers/answer")]
        correct = _clean(element.findtext("correctAnswer")).rstrip(".").strip().upper()
        if text is None or text.find("pron") is None:
            raise data_error(path, line, f"schema {index + 1} has no <text> with a <pron>")
        if len(answers) < 2 or not all(answers):
            raise data_error(path, line, f"schema {index + 1} needs two non-empty <answer>s")
        gold = ord(correct[:1]) - ord("A") if correct else -1
        if not 0 <= gold < len(answers):
            raise data_error(path, line, f"schema {index + 1}: bad <correctAnswer> {correct!r}")
        pron = _clean(text.findtext("pron"))
        schemas.append(
            Schema(
                _clean(text.findtext("txt1")), pron, _clean(text.findtext("txt2")), answers, gold
            )
        )
    return schemas


class Winograd(Task):
    name = "winograd"
    version = 1.0
    description = "Winograd Schema Challenge (WSC273): resolve the pronoun, 2 choices"
    paper_metric = "acc"
    data_files = (
        DataFile(
            name="WSCollection.xml",
            url="https://cs.nyu.edu/faculty/davise/papers/WinogradSchemas/WSCollection.xml",
            sha256=None,  # not published; the page has been edited over the years
            source="Ernest Davis's Winograd Schema collection, cs.nyu.edu/~davise "
            "(first 273 of 285 schemas = WSC273)",
        ),
    )

    def evaluate(self, lm, data: Path, options: EvalOptions) -> TaskResult:
        questions = []
        for s in load(data, options.limit):
            substituted = [s.option(answer) for answer in s.answers]
            questions.append(
                Question(
                    [(s.prefix() + option, s.rest) for option in substituted],
                    s.gold,
                    variants={
                        # an empty context means <|endoftext|>
                        "acc_full": [("", s.prefix() + option + s.rest) for option in substituted],
                        "acc_lm_eval": [s.lm_eval_request(answer) for answer in s.answers],
                    },
                )
            )
        return evaluate_choices(lm, questions)


TASKS = [Winograd()]
