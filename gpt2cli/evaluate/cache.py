"""``gpt2 eval --cache DIR``: a task's result reused instead of recomputed.

Format (file names, the key): docs/formats.md#eval-cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gpt2cli import __version__, console, jsonio
from gpt2cli.errors import Gpt2Error
from gpt2cli.evaluate.tasks.base import EvalOptions, Metric, Task, TaskResult
from gpt2cli.fileio import atomic_write, sha256_file

CACHE_VERSION = 2
ENTRY_PARTS = ("key", "result", "task_data")  # what an entry's sha256 covers


def canonical_sha256(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


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
    return jsonio.finite(
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
            "task_version": task.version,
            "data_sha256": data_sha256,
            "options": options.result_options(),
        }

    def path(self, key: dict[str, Any]) -> Path:
        return self.directory / f"{key['task']}-{canonical_sha256(key)}.json"

    def load(self, key: dict[str, Any]) -> tuple[TaskResult, dict] | None:
        """(result, data facts) stored under ``key``, or None: none stored, or one that cannot
        be trusted (unreadable, or failing its checksum: a warning on stderr says so)."""
        path = self.path(key)
        try:
            with open(path, encoding="utf-8") as handle:
                entry = json.load(handle)
            body = {part: entry[part] for part in ENTRY_PARTS}
            if entry["sha256"] != canonical_sha256(body):
                self._distrust(path, "fails its checksum (edited or damaged)")
                return None
            if body["key"] != key:
                return None
            return result_from_dict(body["result"]), dict(body["task_data"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._distrust(path, "is unreadable")
            return None

    def _distrust(self, path: Path, why: str) -> None:
        console.warn("eval", f"--cache: {path.name} {why}: recomputed and rewritten")

    def store(self, key: dict[str, Any], result: TaskResult, task_data: dict) -> Path:
        path = self.path(key)
        body = {"key": key, "result": result_to_dict(result), "task_data": jsonio.finite(task_data)}
        try:
            with atomic_write(path, "w") as handle:
                entry = {**body, "sha256": canonical_sha256(body)}
                handle.write(jsonio.dumps(entry, ensure_ascii=False) + "\n")
        except OSError as error:
            raise Gpt2Error(
                f"--cache {self.directory}: cannot write {path.name} ({error.strerror})"
            ) from None
        return path
