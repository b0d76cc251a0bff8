"""Per-example records of a ``gpt2 eval`` run (``--log-samples FILE``), one JSON line each,
keyed as lm-evaluation-harness's ``--log_samples`` where it has the key:

* ``task``, ``doc_id`` (0-based position of the example in the data, as lm-eval);
* ``arguments``: the requests: ``[context, continuation]`` pairs for log-likelihoods,
  ``[prompt]`` for a generation, ``[text]`` for a rolling (perplexity) document;
* ``target``: the gold answer (a choice index, a string, a list of accepted strings);
* ``resps``: the model's raw answers, one list per request: ``[[loglikelihood, is_greedy]]``,
  ``[generation]`` or ``[loglikelihood]``; ``filtered_resps``: the same without the outer
  list, after the task's post-processing (a generation's first line);
* ``prediction``: what the task made of them (the chosen index or answer; for LAMBADA
  whether every target token is the argmax);
* the example's metrics under the task's metric names (``acc``: 1.0 or 0.0, ``f1``, ...);
  ``correct`` (true/false) where an example is right or wrong.

Two runs' files join on (task, doc_id). Non-finite numbers are written as null.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gpt2cli import jsonio
from gpt2cli.fileio import atomic_write


def choice(
    doc_id: int,
    requests: Sequence[tuple[str, str]],
    results: Sequence[tuple[float, bool]],
    target: Any,
    prediction: Any,
    **metrics: Any,
) -> dict:
    """A log-likelihood example: one (context, continuation) request per choice."""
    record = {
        "doc_id": doc_id,
        "arguments": [[context, continuation] for context, continuation in requests],
        "target": target,
        "resps": [[[ll, bool(greedy)]] for ll, greedy in results],
        "filtered_resps": [[ll, bool(greedy)] for ll, greedy in results],
        "prediction": prediction,
    }
    return _with_metrics(record, metrics)


def generation(
    doc_id: int, prompt: str, output: str, target: Any, prediction: str, **metrics: Any
) -> dict:
    """A generated answer: the raw generation and what the task scored (``prediction``)."""
    record = {
        "doc_id": doc_id,
        "arguments": [[prompt]],
        "target": target,
        "resps": [[output]],
        "filtered_resps": [prediction],
        "prediction": prediction,
    }
    return _with_metrics(record, metrics)


def rolling(doc_id: int, text: str, nll: float, tokens: int, **counts: Any) -> dict:
    """A document scored whole (perplexity tasks): its log-likelihood and its counts."""
    record = {
        "doc_id": doc_id,
        "arguments": [[text]],
        "target": "",
        "resps": [[-nll]],
        "filtered_resps": [-nll],
        "prediction": None,
        "tokens": tokens,
    }
    return _with_metrics(record, counts)


def _with_metrics(record: dict, metrics: dict[str, Any]) -> dict:
    record.update(metrics)
    if "acc" in metrics and "correct" not in metrics:
        record["correct"] = metrics["acc"] == 1.0
    return record


def dumps(record: dict) -> str:
    return jsonio.dumps(record, ensure_ascii=False)


def write(path: str | os.PathLike[str], samples: dict[str, list[dict]]) -> int:
    """Write every task's records (``{task: [record, ...]}``) as JSON Lines, atomically;
    returns the number of lines."""
    lines = 0
    with atomic_write(path, "w") as handle:
        for task, records in samples.items():
            for record in records:
                handle.write(dumps({"task": task, **record}) + "\n")
                lines += 1
    return lines
