"""The results JSON of ``gpt2 eval``, shaped like lm-evaluation-harness's output.

Format: docs/formats.md#results-json.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any

from gpt2cli import __version__, console, jsonio
from gpt2cli.evaluate.tasks.base import TaskResult
from gpt2cli.fileio import sha256_file

SCHEMA_VERSION = 1
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def model_identity(spec: str, loaded: Any) -> dict:
    """Where the weights came from: path, sha256 and size of the weights file, parameters."""
    identity: dict[str, Any] = {"spec": spec}
    path = getattr(loaded, "path", None)
    identity["path"] = str(path) if path is not None else None
    identity["description"] = getattr(loaded, "description", None)
    weights = None
    if path is not None:
        candidate = Path(path)
        if candidate.is_file():
            weights = candidate
        else:
            for name in WEIGHT_FILES:
                if (candidate / name).is_file():
                    weights = candidate / name
                    break
    identity["weights_file"] = str(weights) if weights else None
    identity["sha256"] = sha256_file(weights) if weights else None
    identity["weights_bytes"] = weights.stat().st_size if weights else None
    model = getattr(loaded, "model", None)
    try:
        identity["parameters"] = int(sum(p.numel() for p in model.parameters())) if model else None
    except Exception:  # noqa: BLE001 - identity is best effort for foreign models
        identity["parameters"] = None
    config = getattr(loaded, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        identity["config"] = config.to_dict()
    return identity


def _number(value: float | None) -> float | str:
    if value is None or not math.isfinite(value):
        return "N/A"
    return value


def build(
    task_results: dict[str, TaskResult],
    versions: dict[str, float],
    model: dict,
    config: dict,
    task_data: dict[str, dict],
    seconds: float,
) -> dict:
    """The results document of ``task_results``; ``versions``: each task's version."""
    now = _dt.datetime.now(_dt.timezone.utc)
    results: dict[str, dict] = {}
    higher: dict[str, dict] = {}
    samples: dict[str, dict] = {}
    for name, result in task_results.items():
        entry: dict[str, Any] = {"alias": name}
        for metric, value in result.metrics.items():
            if not math.isfinite(value.value):
                console.warn(
                    "eval",
                    f"{name}: {metric} is {value.value} (written as N/A): the model's "
                    "weights are damaged or overflow in this dtype",
                )
            entry[f"{metric},none"] = _number(value.value)
            entry[f"{metric}_stderr,none"] = _number(value.stderr)
        results[name] = entry
        higher[name] = {metric: value.higher_is_better for metric, value in result.metrics.items()}
        samples[name] = {"original": result.extra.get("original", result.n), "effective": result.n}
    return {
        "results": results,
        "versions": {name: versions[name] for name in task_results},
        "n-shot": {name: 0 for name in task_results},
        "higher_is_better": higher,
        "n-samples": samples,
        "config": {"model": "gpt2cli", "model_args": model.get("spec"), **config},
        "model": model,
        "tasks": {
            name: {**task_data.get(name, {}), "n": result.n, "extra": result.extra}
            for name, result in task_results.items()
        },
        "date": now.timestamp(),
        "date_iso": now.isoformat(timespec="seconds"),
        "gpt2cli_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "total_evaluation_time_seconds": f"{seconds:.3f}",
    }


def dumps(results: dict) -> str:
    return jsonio.dumps(results, indent=2, ensure_ascii=False) + "\n"
