"""HellaSwag (Zellers et al., 2019), validation split, as lm-evaluation-harness's ``hellaswag``.

Not in the GPT-2 paper; included because it is the most common zero-shot choice benchmark.

Data: ``hellaswag_val.jsonl`` as published in github.com/rowanz/hellaswag (``data/``), 10,042
lines, each a JSON object with ``activity_label``, ``ctx_a``, ``ctx_b``, ``endings`` (4 strings)
and ``label`` (0-3).

Scoring, as lm-eval: query = preprocess(activity_label + ": " + ctx_a + " " +
ctx_b.capitalize()), each ending = preprocess(ending), requests (query, " " + ending).
preprocess strips, turns " [title]" into ". ", removes any other "[...]" tag and replaces double
spaces by single ones. ``acc``: the ending with the highest summed log-probability is the
label. ``acc_norm``: the same with each log-probability divided by the ending's length in
characters (lm-eval divides by ``len(choice)``, which equals the UTF-8 byte length for this
ASCII data set).
"""

from __future__ import annotations

import re
from pathlib import Path

from gpt2cli.evaluate.tasks._multiple_choice import Question, evaluate_choices
from gpt2cli.evaluate.tasks._taskio import field, load_jsonl, string_list
from gpt2cli.evaluate.tasks.base import (
    DataFile,
    EvalOptions,
    Task,
    TaskResult,
    data_error,
)

_TAG = re.compile(r"\[.*?\]")


def preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = _TAG.sub("", text)
    return text.replace("  ", " ")


def load(path: Path, limit: int | None = None) -> list[tuple[str, list[str], int]]:
    """(query, endings, gold) per example, preprocessed as lm-eval."""

    def parse(line: int, obj: dict) -> tuple[str, list[str], int]:
        label_text = field(path, line, obj, "activity_label", str)
        ctx_a = field(path, line, obj, "ctx_a", str)
        ctx_b = field(path, line, obj, "ctx_b", str)
        endings = string_list(path, line, obj, "endings")
        label = field(path, line, obj, "label", (int, str))
        try:
            gold = int(label)
        except ValueError:
            raise data_error(path, line, f"field 'label' is not a number: {label!r}") from None
        if not 0 <= gold < len(endings):
            raise data_error(path, line, f"label {gold} out of range for {len(endings)} endings")
        query = preprocess(label_text + ": " + ctx_a + " " + ctx_b.capitalize())
        return query, [preprocess(e) for e in endings], gold

    return load_jsonl(path, limit, parse, "no examples in the file")


class HellaSwag(Task):
    name = "hellaswag"
    version = 1.0
    description = "HellaSwag validation: pick the ending of a situation (4 choices), as lm-eval"
    paper_metric = "acc_norm"
    data_files = (
        DataFile(
            name="hellaswag_val.jsonl",
            url="https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl",
            sha256=None,  # not published; not verified here
            source="github.com/rowanz/hellaswag, data/hellaswag_val.jsonl (10,042 lines)",
        ),
    )

    def evaluate(self, lm, data: Path, options: EvalOptions) -> TaskResult:
        questions = [
            Question(
                [(query, " " + ending) for ending in endings],
                gold,
                norms=[max(1, len(ending)) for ending in endings],
            )
            for query, endings, gold in load(data, options.limit)
        ]
        return evaluate_choices(lm, questions)


TASKS = [HellaSwag()]
