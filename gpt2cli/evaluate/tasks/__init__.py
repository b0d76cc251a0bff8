"""The task registry: every module in this package that defines ``TASKS: list[Task]``, each
task with its ``version``.

Modules are discovered by name (``pkgutil``), so a new task module needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil

from gpt2cli.errors import UsageError
from gpt2cli.evaluate.tasks.base import Task

_SKIP = {"base", "detokenize", "task_files"}
_registry: dict[str, Task] | None = None


def _discover() -> dict[str, Task]:
    global _registry
    if _registry is None:
        found: dict[str, Task] = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if info.name in _SKIP or info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            for task in getattr(module, "TASKS", ()):
                if task.name in found:
                    raise RuntimeError(f"task {task.name!r} defined twice ({info.name})")
                if not isinstance(getattr(task, "version", None), float):
                    raise RuntimeError(f"task {task.name!r} declares no version ({info.name})")
                found[task.name] = task
        _registry = found
    return _registry


def all_tasks() -> list[Task]:
    """Every registered task, sorted by name."""
    return [task for _, task in sorted(_discover().items())]


def get_task(name: str) -> Task:
    """The task called ``name`` (case-insensitive); UsageError listing the known ones."""
    tasks = _discover()
    key = name.strip().lower()
    if key in tasks:
        return tasks[key]
    raise UsageError(
        f"unknown task {name!r}",
        "known tasks: " + ", ".join(sorted(tasks)) + "; see `gpt2 eval --list`",
    )
