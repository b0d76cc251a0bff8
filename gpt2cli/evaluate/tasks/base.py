"""Base classes every evaluation task builds on.

A task module under ``gpt2cli/evaluate/tasks/`` defines ``TASKS: list[Task]``; the registry
in ``gpt2cli.evaluate.tasks`` finds it by itself. A task reads its data from ``data`` (the
resolved path of its first data file, or a directory when ``data_is_dir`` is true and the task
needs several files), asks the :class:`~gpt2cli.evaluate.language_model.LanguageModel` for
log-likelihoods or generations, and returns a :class:`TaskResult` whose metric names follow
lm-evaluation-harness where it has the task (``acc``, ``perplexity``, ``word_perplexity``,
``byte_perplexity``, ``bits_per_byte``, ...).

Data errors (missing field, truncated file) are raised as ``Gpt2Error`` naming the file and
the line, with :func:`data_error`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2cli import option_fields
from gpt2cli.errors import Gpt2Error
from gpt2cli.option_fields import at_least, option

if TYPE_CHECKING:
    from gpt2cli.evaluate.language_model import LanguageModel


@dataclass(frozen=True)
class DataFile:
    """One file a task reads.

    name: the published file name (looked up under --data-dir and the cache);
    url: a public URL ``--download`` fetches it from, or None when there is none;
    sha256: the published file's checksum, or None when it is not fixed;
    source: where a human gets it (one line);
    archive_member: when ``url`` is a zip archive, the member that is this file (``sha256``
    is then the archive's checksum).
    """

    name: str
    url: str | None
    sha256: str | None
    source: str
    archive_member: str | None = None


@dataclass
class Metric:
    value: float
    stderr: float | None
    higher_is_better: bool


@dataclass
class TaskResult:
    metrics: dict[str, Metric]
    n: int  # examples (documents, questions) evaluated
    extra: dict = field(default_factory=dict)  # task-specific facts for the results JSON
    samples: list[dict] = field(default_factory=list)  # per example (evaluate/sample_log.py)


@dataclass
class EvalOptions:
    """The options of ``gpt2 eval`` that decide a task's result: each field is also its flag
    and --help text (:mod:`gpt2cli.option_fields`)."""

    limit: int | None = option(
        None,
        "Evaluate only the first N examples of each task (documents/articles for the "
        "language-modelling tasks).",
        show_default=False,
        rule=at_least(1),
    )
    batch_size: int = option(
        8,
        "Full-context sequences per forward pass (shorter ones are packed more to a batch, "
        "within the same number of tokens).",
        "-b",
        rule=at_least(1),
    )
    seed: int = option(0, "Seed for anything random.")  # sampling, shuffles
    stride: int | None = option(  # None: disjoint windows
        None,
        "Language-modelling tasks: overlapping windows moving S tokens (default: disjoint "
        "windows, as lm-evaluation-harness).",
        show_default=False,
        rule=at_least(1),
    )
    stop_word_filter: bool = option(
        False, "lambada: also report accuracy with the paper's stop-word filter."
    )

    def __post_init__(self) -> None:
        option_fields.check(self)

    def result_options(self) -> dict[str, Any]:
        """The options a task's result depends on (--batch-size changes only the speed)."""
        return {name: value for name, value in asdict(self).items() if name != "batch_size"}


class Task(ABC):
    """A zero-shot benchmark. Subclasses set the class attributes and implement evaluate."""

    name: str
    # Raised whenever a change alters the task's figures (data, requests, scoring): it goes
    # into the results JSON ("versions") and into the --cache key.
    version: float
    description: str
    paper_metric: str  # the metric the GPT-2 paper reports for it, e.g. "acc", "word_perplexity"
    data_files: tuple[DataFile, ...]
    data_is_dir: bool = False  # True: evaluate() gets the directory holding all data_files

    @abstractmethod
    def evaluate(self, lm: LanguageModel, data: Path, options: EvalOptions) -> TaskResult: ...

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean: sample standard deviation / sqrt(n) (None when n < 2)."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def mean_metric(values: Sequence[float], higher_is_better: bool = True) -> Metric:
    """The mean of per-example scores, with its standard error."""
    return Metric(sum(values) / len(values), mean_stderr(values), higher_is_better)


def word_perplexity_metrics(nll: float, words: int, tokens: int, n_bytes: int) -> dict[str, Metric]:
    """Word and token perplexity and bits per byte of a total NLL (nats)."""
    return {
        "word_perplexity": Metric(math.exp(nll / words), None, False),
        "token_perplexity": Metric(math.exp(nll / tokens), None, False),
        "bits_per_byte": Metric(nll / n_bytes / math.log(2.0), None, False),
    }


def data_error(
    path: Path | str, line: int | None, message: str, hint: str | None = None
) -> Gpt2Error:
    """A Gpt2Error naming the data file (and line) that is wrong."""
    where = f"{path}: line {line}" if line is not None else f"{path}"
    return Gpt2Error(
        f"{where}: {message}",
        hint or "check that the file is the published one and complete",
    )
