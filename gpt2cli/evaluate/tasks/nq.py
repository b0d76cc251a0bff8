"""Natural Questions, open-domain version (NQ-open; Kwiatkowski et al., 2019; Lee et al., 2019).

Data: ``NQ-open.dev.jsonl`` as published in github.com/google-research-datasets/
natural-questions (``nq_open/``): 3,610 lines ``{"question": "...", "answer": ["...", ...]}``
(questions are lower case, without a question mark).

Prompt: as the GPT-2 paper, "the context of the language model is seeded with example question
answer pairs which helps the model infer the short answer style of the dataset". The examples
are five fixed general-knowledge pairs written for this tool (not from NQ, listed in
``EXAMPLES``), each "Q: <question>?\\nA: <answer>\\n\\n"; then "Q: <question>?\\nA:". The answer
is generated greedily until a newline (at most 24 tokens).

Metric: ``exact_match``: the prediction equals one of the answers after SQuAD normalisation
(lower case, punctuation and articles removed, whitespace collapsed); fraction of questions.
"""

from __future__ import annotations

from pathlib import Path

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.tasks._taskio import field, load_jsonl, normalize_answer, string_list
from gpt2cli.evaluate.tasks.base import DataFile, EvalOptions, Task, TaskResult, mean_metric

MAX_ANSWER_TOKENS = 24
EXAMPLES = (
    ("who wrote the novel pride and prejudice", "Jane Austen"),
    ("what is the capital city of australia", "Canberra"),
    ("who was the first president of the united states", "George Washington"),
    ("what planet is known as the red planet", "Mars"),
    ("how many sides does a hexagon have", "6"),
)


def prompt_for(question: str) -> str:
    shots = "".join(f"Q: {q}?\nA: {a}\n\n" for q, a in EXAMPLES)
    return shots + f"Q: {question}?\nA:"


def exact_match(prediction: str, answers: list[str]) -> float:
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(a) for a in answers))


def load(path: Path, limit: int | None = None) -> list[tuple[str, list[str]]]:
    def parse(line: int, obj: dict) -> tuple[str, list[str]]:
        return field(path, line, obj, "question", str), string_list(path, line, obj, "answer")

    return load_jsonl(path, limit, parse, "no questions in the file")


class NaturalQuestions(Task):
    name = "nq"
    version = 1.0
    description = "Natural Questions (open) dev: answer trivia questions, exact match"
    paper_metric = "exact_match"
    data_files = (
        DataFile(
            name="NQ-open.dev.jsonl",
            url="https://raw.githubusercontent.com/google-research-datasets/natural-questions/"
            "master/nq_open/NQ-open.dev.jsonl",
            sha256=None,  # not published; not verified here
            source="github.com/google-research-datasets/natural-questions, nq_open/ "
            "(3,610 questions)",
        ),
    )

    def evaluate(self, lm, data: Path, options: EvalOptions) -> TaskResult:
        examples = load(data, options.limit)
        predictions = lm.generate(
            [prompt_for(q) for q, _ in examples],
            max_tokens=MAX_ANSWER_TOKENS,
            until=["\n"],
            greedy=True,
            seed=options.seed,
        )
        answers_given = [p.split("\n")[0].strip() for p in predictions]
        scores = [exact_match(a, answers) for a, (_, answers) in zip(answers_given, examples)]
        samples = [
            sample_log.generation(
                doc_id, prompt_for(q), output, answers, given, exact_match=score, correct=score == 1
            )
            for doc_id, ((q, answers), output, given, score) in enumerate(
                zip(examples, predictions, answers_given, scores)
            )
        ]
        return TaskResult(
            metrics={"exact_match": mean_metric(scores)},
            n=len(examples),
            samples=samples,
        )


TASKS = [NaturalQuestions()]
