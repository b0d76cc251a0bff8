"""CoQA (Reddy et al., 2019), the conversational question answering dev set.

Data: ``coqa-dev-v1.0.json`` as published at stanfordnlp.github.io/coqa: one JSON object,
``{"version": ..., "data": [story, ...]}``; each story has ``id``, ``source``, ``story``,
``questions`` (``input_text``, ``turn_id``), ``answers`` (``input_text``, ``turn_id``) and
``additional_answers`` (``{"0": [...], "1": [...], "2": [...]}``, answers by other annotators).

Prompt, as the GPT-2 paper ("conditioning GPT-2 on a document, the history of the associated
conversation, and a final token A:"): the story, a blank line, then for every earlier turn
"Q: <question>\\nA: <gold answer>\\n", then "Q: <question>\\nA:". The answer is generated
greedily until a newline (at most 48 tokens) and stripped.

Metric, as the official evaluation script (v1.0): answers are normalised (lower case, ASCII
punctuation removed, articles a/an/the removed, whitespace collapsed); F1 is the bag-of-tokens
F1 between prediction and a gold answer (1 when both are empty, 0 when only one is). A turn
with several gold answers scores the mean, over each gold answer left out in turn, of the best
F1 against the remaining ones; a turn with one gold answer scores the F1 against it. ``f1`` and
``em`` are the means over turns, as fractions (the script prints them × 100); the dev set
has only in-domain sources, so this mean is the script's "overall". Each turn is one example
(``--limit`` counts turns, in file order).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.tasks._taskio import normalize_answer, read_text
from gpt2cli.evaluate.tasks.base import (
    DataFile,
    EvalOptions,
    Task,
    TaskResult,
    data_error,
    mean_metric,
)

MAX_ANSWER_TOKENS = 48


def f1_score(gold: str, prediction: str) -> float:
    gold_tokens = normalize_answer(gold).split()
    pred_tokens = normalize_answer(prediction).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_score(gold: str, prediction: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(prediction))


def turn_scores(golds: list[str], prediction: str) -> tuple[float, float]:
    """(em, f1) of one turn, with the official leave-one-out averaging over gold answers."""
    if len(golds) == 1:
        return exact_score(golds[0], prediction), f1_score(golds[0], prediction)
    em = f1 = 0.0
    for i in range(len(golds)):
        others = golds[:i] + golds[i + 1 :]
        em += max(exact_score(g, prediction) for g in others)
        f1 += max(f1_score(g, prediction) for g in others)
    return em / len(golds), f1 / len(golds)


class Turn:
    def __init__(self, story_id: str, turn_id: int, prompt: str, golds: list[str]) -> None:
        self.story_id, self.turn_id, self.prompt, self.golds = story_id, turn_id, prompt, golds


def _story_line(raw: str, story_id: str) -> int | None:
    pos = raw.find(json.dumps(story_id))
    return raw.count("\n", 0, pos) + 1 if pos >= 0 else None


def load(path: Path, limit: int | None = None) -> list[Turn]:
    raw = read_text(path)
    try:
        root = json.loads(raw)
    except json.JSONDecodeError as exc:
        what = "truncated JSON" if exc.pos >= len(raw.rstrip()) else "not JSON"
        raise data_error(path, exc.lineno, f"{what} ({exc.msg})") from exc
    stories = root.get("data") if isinstance(root, dict) else None
    if not isinstance(stories, list) or not stories:
        raise data_error(path, 1, 'expected {"data": [stories]} (coqa-dev-v1.0.json)')
    turns: list[Turn] = []
    for number, story in enumerate(stories, start=1):
        if limit is not None and len(turns) >= limit:
            break
        sid = story.get("id", f"#{number}") if isinstance(story, dict) else f"#{number}"
        line = _story_line(raw, sid) if isinstance(sid, str) else None
        try:
            text = story["story"]
            questions = story["questions"]
            answer_lists = [story["answers"]]
            extra = story.get("additional_answers") or {}
            answer_lists += [extra[k] for k in sorted(extra)]
            if not isinstance(text, str) or not isinstance(questions, list):
                raise TypeError
            history = text + "\n\n"
            for i, question in enumerate(questions):
                q = question["input_text"]
                golds = []
                for answers in answer_lists:
                    if i >= len(answers):
                        raise data_error(
                            path, line, f"story {sid}: an answer list is shorter than the questions"
                        )
                    golds.append(str(answers[i]["input_text"]))
                prompt = history + f"Q: {q}\nA:"
                if limit is None or len(turns) < limit:
                    turns.append(Turn(str(sid), int(question["turn_id"]), prompt, golds))
                history = prompt + f" {golds[0]}\n"
        except (KeyError, TypeError, IndexError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else "unexpected layout"
            raise data_error(path, line, f"story {number} ({sid}): {detail}") from None
    if not turns:
        raise data_error(path, None, "no questions in the file")
    return turns


class CoQA(Task):
    name = "coqa"
    version = 1.0
    description = "CoQA dev: answer questions about a passage in a conversation, F1"
    paper_metric = "f1"
    data_files = (
        DataFile(
            name="coqa-dev-v1.0.json",
            url="https://nlp.stanford.edu/data/coqa/coqa-dev-v1.0.json",
            sha256=None,  # not published; not verified here
            source="stanfordnlp.github.io/coqa (dev set v1.0: 500 stories, 7,983 questions)",
        ),
    )

    def evaluate(self, lm, data: Path, options: EvalOptions) -> TaskResult:
        turns = load(data, options.limit)
        predictions = lm.generate(
            [t.prompt for t in turns],
            max_tokens=MAX_ANSWER_TOKENS,
            until=["\n"],
            greedy=True,
            seed=options.seed,
        )
        ems: list[float] = []
        f1s: list[float] = []
        samples: list[dict] = []
        for doc_id, (turn, output) in enumerate(zip(turns, predictions)):
            answer = output.split("\n")[0].strip()
            em, f1 = turn_scores(turn.golds, answer)
            ems.append(em)
            f1s.append(f1)
            samples.append(
                sample_log.generation(doc_id, turn.prompt, output, turn.golds, answer, em=em, f1=f1)
            )
        return TaskResult(
            metrics={
                "f1": mean_metric(f1s),
                "em": mean_metric(ems),
            },
            n=len(turns),
            extra={"stories": len({t.story_id for t in turns})},
            samples=samples,
        )


TASKS = [CoQA()]
