"""The multiple-choice loop the choice tasks share (lm-evaluation-harness's ``multiple_choice``
output type): every choice of every question scored in one batched call, the highest summed
log-probability picked (first on ties), ``acc`` per question, one ``--log-samples`` record each.

A task builds one :class:`Question` per example; what differs between tasks (the requests,
a length-normalised ``acc_norm``, other ways of asking the same choices) is data on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.tasks._taskio import argmax
from gpt2cli.evaluate.tasks.base import TaskResult, mean_metric

if TYPE_CHECKING:
    from gpt2cli.evaluate.language_model import LanguageModel


@dataclass
class Question:
    """One example: ``requests[i]`` is the (context, continuation) of choice i.

    gold: the index of the right choice;
    labels: what the log calls each choice (its ``target`` and ``prediction``; default the
    index); a choice is right when its label is the gold one's;
    norms: with these, ``acc_norm`` too, each log-likelihood divided by its choice's norm
    (lm-eval: the choice's length in characters);
    variants: further metrics, each the same choices asked with other requests (one per
    choice, in the same order).
    """

    requests: list[tuple[str, str]]
    gold: int
    labels: Sequence[Any] | None = None
    norms: Sequence[float] | None = None
    variants: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def label(self, index: int) -> Any:
        return index if self.labels is None else self.labels[index]


def evaluate_choices(lm: LanguageModel, questions: Sequence[Question]) -> TaskResult:
    """``acc`` (and ``acc_norm``, and each variant's metric) over ``questions``; every
    request in one call: all questions' requests, then each variant's in turn."""
    variants = list(questions[0].variants) if questions else []
    asked = [request for q in questions for request in q.requests]
    per_block = len(asked)
    for name in variants:
        asked += [request for q in questions for request in q.variants[name]]
    results = lm.loglikelihood(asked)
    figures: dict[str, list[float]] = {"acc": []}
    if any(q.norms is not None for q in questions):
        figures["acc_norm"] = []
    figures.update({name: [] for name in variants})
    samples: list[dict] = []
    start = 0
    for doc_id, question in enumerate(questions):
        k = len(question.requests)
        mine = results[start : start + k]
        scores = [ll for ll, _ in mine]
        pick = argmax(scores)
        gold_label = question.label(question.gold)
        example = {"acc": float(question.label(pick) == gold_label)}
        if question.norms is not None:
            normed = [ll / norm for ll, norm in zip(scores, question.norms)]
            example["acc_norm"] = float(question.label(argmax(normed)) == gold_label)
        for block, name in enumerate(variants, start=1):
            at = block * per_block + start
            choice = argmax([ll for ll, _ in results[at : at + k]])
            example[name] = float(question.label(choice) == gold_label)
        for name, value in example.items():
            figures[name].append(value)
        samples.append(
            sample_log.choice(
                doc_id, question.requests, mine, gold_label, question.label(pick), **example
            )
        )
        start += k
    return TaskResult(
        metrics={name: mean_metric(values) for name, values in figures.items()},
        n=len(questions),
        samples=samples,
    )
