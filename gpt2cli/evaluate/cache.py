"""``gpt2 eval --cache DIR``: a task's result reused instead of recomputed.

Format (file names, the key): docs/formats.md#eval-cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gpt2cli import __version__
from gpt2cli.errors import Gpt2Error
from gpt2cli.evaluate.sample_log import finite
from gpt2cli.evaluate.tasks.base import EvalOptions, Metric, Task, TaskResult
from gpt2cli.fileio import atomic_write, sha256_file

CACHE_VERSION = 1


def data_digest(task: Task, path: Path) -> str:
    """sha256 of a task's data: the file's, or for a directory of the task's files in it."""
    if path.is_file():
        return sha256_file(path)
    lines = []
    for data_file in task.data_files:
        member = path / data_file.name
        lines.append(f"{data_file.name} {sha256_file(member) if member.is_file() else '-'}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def result_to_dict(result: TaskResult) -> dict:
    return finite(
        {
            "metrics": {
                name: {
                    "value": m.value,
                    "stderr": m.stderr,
                    "higher_is_better": m.higher_is_better,
                }
                for name, m in result.metrics.items()
            },
            "n": result.n,
            "extra": result.extra,
            "samples": result.samples,
        }
    )


def result_from_dict(data: dict) -> TaskResult:
    return TaskResult(
        metrics={
            name: Metric(m["value"], m["stderr"], bool(m["higher_is_better"]))
            for name, m in data["metrics"].items()
        },
        n=int(data["n"]),
        extra=dict(data["extra"]),
        samples=list(data["samples"]),
    )


class EvalCache:
    """The results cache in ``directory`` for one loaded model."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        model_sha256: str | None,
        block_size: int,
        device: str,
        dtype: str | None,
    ) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise Gpt2Error(f"--cache {self.directory}: is a file, not a directory")
        self.model_sha256 = model_sha256
        self.block_size = block_size
        self.device = device
        self.dtype = dtype

    @property
    def usable(self) -> bool:
        return self.model_sha256 is not None

    def key(self, task: Task, data_sha256: str, options: EvalOptions) -> dict[str, Any]:
        return {
            "cache_version": CACHE_VERSION,
            "gpt2cli_version": __version__,
            "model_sha256": self.model_sha256,
            "block_size": self.block_size,
            "device": self.device,
            "dtype": self.dtype,
            "task": task.name,
            "data_sha256": data_sha256,
            "options": options.result_options(),
        }

    def path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(
            json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        return self.directory / f"{key['task']}-{digest}.json"

    def load(self, key: dict[str, Any]) -> tuple[TaskResult, dict] | None:
        """(result, data facts) stored under ``key``, or None."""
        path = self.path(key)
        try:
            with open(path, encoding="utf-8") as handle:
                entry = json.load(handle)
            if entry.get("key") != key:
                return None
            return result_from_dict(entry["result"]), dict(entry["task_data"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # unreadable or from another layout: recomputed and rewritten

    def store(self, key: dict[str, Any], result: TaskResult, task_data: dict) -> Path:
        path = self.path(key)
        entry = {"key": key, "result": result_to_dict(result), "task_data": finite(task_data)}
        try:
            with atomic_write(path, "w") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n")
        except OSError as error:
            raise Gpt2Error(
                f"--cache {self.directory}: cannot write {path.name} ({error.strerror})"
            ) from None
        return path
