"""A ``gpt2 eval`` run: which tasks, where their data is, each task evaluated and timed, and
the results document (lm-evaluation-harness's layout, :mod:`gpt2cli.evaluate.results`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gpt2cli import console
from gpt2cli.errors import UsageError
from gpt2cli.evaluate import results, tasks
from gpt2cli.evaluate.tasks import task_files
from gpt2cli.evaluate.tasks.base import EvalOptions, Metric, Task, TaskResult

if TYPE_CHECKING:
    from gpt2cli.evaluate.cache import EvalCache
    from gpt2cli.evaluate.language_model import LanguageModel


def choose_tasks(names: list[str], data: Path | None) -> list[Task]:
    """The named tasks, each once, in order; UsageError for ``--data`` with several."""
    chosen: list[Task] = []
    for name in names:
        task = tasks.get_task(name)
        if task not in chosen:
            chosen.append(task)
    if data is not None and len(chosen) > 1:
        raise UsageError(
            "--data names one file, but more than one task was given",
            "use --data-dir DIR with the files under their published names",
        )
    return chosen


def find_data(
    chosen: list[Task], data: Path | None, data_dir: Path | None, download: bool
) -> dict[str, Path]:
    """Each task's data path (see :mod:`gpt2cli.evaluate.tasks.task_files`)."""
    return {task.name: task_files.resolve(task, data, data_dir, download) for task in chosen}


@dataclass
class EvalRun:
    """Tasks evaluated so far: their results and, per task, its data and time."""

    results: dict[str, TaskResult] = field(default_factory=dict)
    versions: dict[str, float] = field(default_factory=dict)  # task: its version
    task_data: dict[str, dict] = field(default_factory=dict)
    model: dict | None = None  # results.model_identity, when already computed
    cache: EvalCache | None = None
    cache_hits: dict[str, Path] = field(default_factory=dict)  # task: the entry reused

    def evaluate(
        self,
        lm: LanguageModel,
        task: Task,
        path: Path,
        options: EvalOptions,
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[TaskResult, float]:
        """Evaluate one task, or take its result from ``self.cache``; (its result, seconds)."""
        timer = console.Stopwatch()
        self.versions[task.name] = task.version
        key = None
        if self.cache is not None and self.cache.usable:
            from gpt2cli.evaluate.cache import data_digest

            key = self.cache.key(task, data_digest(task, path), options)
            hit = self.cache.load(key)
            if hit is not None:
                self.results[task.name], self.task_data[task.name] = hit
                self.cache_hits[task.name] = self.cache.path(key)
                return hit[0], timer.seconds
        lm.on_batch = on_batch
        try:
            result = task.evaluate(lm, path, options)
        finally:
            lm.on_batch = None
        self.results[task.name] = result
        sha256 = task_files.sha256_file(path) if path.is_file() else None
        if sha256 is not None:
            task_files.check_published(task, path, sha256)
        self.task_data[task.name] = {
            "data": str(path),
            "data_sha256": sha256,
            "seconds": round(timer.seconds, 3),
        }
        if key is not None and self.cache is not None:
            self.cache.store(key, result, self.task_data[task.name])
        return result, timer.seconds

    def document(
        self,
        model_spec: str,
        lm: LanguageModel,
        options: EvalOptions,
        device: object,
        dtype: str | None,
        seconds: float,
    ) -> dict:
        """The results JSON document of the run."""
        config = {
            "batch_size": options.batch_size,
            "device": str(device),
            "dtype": dtype,
            "limit": options.limit,
            "seed": options.seed,
            "stride": options.stride,
            "stop_word_filter": options.stop_word_filter,
            "block_size": lm.block_size,
            "tasks": list(self.results),
        }
        return results.build(
            self.results,
            self.versions,
            self.model or results.model_identity(model_spec, lm.loaded),
            config,
            self.task_data,
            seconds,
        )


def main_metric(task: Task, result: TaskResult) -> Metric:
    """The metric a one-line summary shows: the paper's, else the first."""
    return result.metrics.get(task.paper_metric) or next(iter(result.metrics.values()))
