"""Children's Book Test (Hill et al., 2016): common nouns (CN) and named entities (NE).

Data: the files of ``CBTest.tgz`` (directory ``CBTest/data/``), e.g.
``cbtest_CN_valid_2000ex.txt``. Each example is 22 lines: lines ``1 ...`` to ``20 ...`` are
the context sentences (number, space, sentence), line 21 is ``21 <question with XXXXX>`` then
a tab, the answer, two tabs (an empty field) and the 10 candidates separated by ``|``;
a blank line ends the example. The text is tokenised (``, '' , n't ...).

Scoring, as the GPT-2 paper (section 3.3): "compute the probability of each choice and the
rest of the sentence conditioned on this choice". The context is the 20 sentences joined by
spaces; each candidate replaces XXXXX in the question line, and the continuation " " +
question is scored as a whole (the words before the blank are the same for every candidate,
so only the choice and the rest of the sentence decide). Context and question go through a
detokenizer first (the paper used invertible detokenizers; this one is lm-eval's for CBT):
`` and '' become ", and the space before ' n't : ; ! ? , . is removed.
``acc``: the candidate with the highest summed log-probability is the answer (first on ties).
The paper reports the validation sets.
"""

from __future__ import annotations

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

_ARCHIVE = "http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz"


def detokenize(text: str) -> str:
    for old, new in (
        (" '", "'"),
        (" \n", "\n"),
        ("\n ", "\n"),
        (" n't", "n't"),
        ("`` ", '"'),
        ("''", '"'),
        (" :", ":"),
        (" ;", ";"),
        (" !", "!"),
        (" ?", "?"),
        (" ,", ","),
        (" .", "."),
    ):
        text = text.replace(old, new)
    return text


def load(path: Path, limit: int | None = None) -> list[tuple[list[str], str, str, list[str]]]:
    """(20 context sentences, question with XXXXX, answer, candidates) per example."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    examples = []
    i = 0
    while i < len(lines) and (limit is None or len(examples) < limit):
        if not lines[i].strip():  # tolerate extra blank lines between examples
            i += 1
            continue
        start = i
        sentences = []
        for k in range(1, 21):
            if i >= len(lines):
                raise data_error(
                    path,
                    i + 1,
                    f"file ends inside the example starting at line "
                    f"{start + 1} (expected sentence {k})",
                )
            number, _, sentence = lines[i].partition(" ")
            if number != str(k):
                raise data_error(
                    path,
                    i + 1,
                    f'expected line {k} of an example ("{k} ..."), got {lines[i][:40]!r}',
                )
            sentences.append(sentence)
            i += 1
        if i >= len(lines):
            raise data_error(
                path,
                i + 1,
                f"file ends before the question of the example starting at line {start + 1}",
            )
        number, _, rest = lines[i].partition(" ")
        parts = [p for p in rest.split("\t")]
        if number != "21" or len(parts) < 3:
            raise data_error(
                path,
                i + 1,
                'expected the question line "21 <question>\\t<answer>\\t\\t<candidate>|..."',
            )
        question, answer = parts[0], parts[1].strip()
        candidates = [c.strip() for c in parts[-1].split("|") if c.strip()]
        if "XXXXX" not in question:
            raise data_error(path, i + 1, "the question has no XXXXX blank")
        if answer not in candidates:
            raise data_error(path, i + 1, f"the answer {answer!r} is not among the candidates")
        examples.append((sentences, question, answer, candidates))
        i += 1
        if i < len(lines) and lines[i].strip():
            raise data_error(path, i + 1, "expected a blank line after the question")
    if not examples:
        raise data_error(path, None, "no examples in the file")
    return examples


def requests_for(sentences: list[str], question: str, candidates: list[str]):
    context = detokenize(" ".join(sentences))
    return [(context, " " + detokenize(question.replace("XXXXX", c))) for c in candidates]


class CBT(Task):
    version = 1.0
    paper_metric = "acc"

    def __init__(self, name: str, kind: str, split: str, file: str, size: str) -> None:
        self.name = name
        what = "common nouns" if kind == "CN" else "named entities"
        self.description = (
            f"Children's Book Test {kind} ({what}), {split} set: pick the word "
            f"that fills the blank, 10 candidates"
        )
        self.data_files = (
            DataFile(
                name=file,
                url=None,
                sha256=None,
                source=f"CBTest.tgz ({_ARCHIVE}), file CBTest/data/{file} ({size} examples)",
            ),
        )

    def evaluate(self, lm, data: Path, options: EvalOptions) -> TaskResult:
        questions = [
            Question(
                requests_for(sentences, question, candidates),
                gold=candidates.index(answer),
                labels=candidates,
            )
            for sentences, question, answer, candidates in load(data, options.limit)
        ]
        return evaluate_choices(lm, questions)


TASKS = [
    CBT("cbt-cn", "CN", "validation", "cbtest_CN_valid_2000ex.txt", "2,000"),
    CBT("cbt-ne", "NE", "validation", "cbtest_NE_valid_2000ex.txt", "2,000"),
    CBT("cbt-cn-test", "CN", "test", "cbtest_CN_test_2500ex.txt", "2,500"),
    CBT("cbt-ne-test", "NE", "test", "cbtest_NE_test_2500ex.txt", "2,500"),
]
