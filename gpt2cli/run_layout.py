"""The run directory's layout, and finding a complete, loadable checkpoint in it (for
``gpt2 train`` resuming and for ``--model RUN``). Writing checkpoints is
:mod:`gpt2cli.train.checkpoint`'s job.

Layout (see docs/training.md)::

    RUN/config.yaml                 effective config of the run
    RUN/metrics.jsonl               one JSON record per step and per validation
    RUN/loss.png                    train/val loss curves
    RUN/checkpoints/step-00000100/  config.json + model.safetensors (Hugging Face layout),
                                    training_state.pt, run.yaml, COMPLETE (empty, written last)
    RUN/final/                      the same, at the end of the run

A directory without ``COMPLETE``, or with a ``.tmp-`` name, is never used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from gpt2cli import console
from gpt2cli.errors import Gpt2Error

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
CHECKPOINTS = "checkpoints"
FINAL = "final"
COMPLETE = "COMPLETE"
STATE_FILE = "training_state.pt"
RUN_FILE = "run.yaml"
STEP_DIR = re.compile(r"^step-(\d{8,})$")


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def is_complete(path: str | os.PathLike[str]) -> bool:
    """A finished checkpoint: a directory with a non-temporary name holding ``COMPLETE``."""
    path = Path(path)
    return ".tmp-" not in path.name and (path / COMPLETE).is_file()


def complete_steps(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete ``RUN/checkpoints/step-N`` directories, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    if root.is_dir():
        for child in root.iterdir():
            match = STEP_DIR.match(child.name)
            if match and is_complete(child):
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_complete(run_dir: str | os.PathLike[str]) -> Path | None:
    """``RUN/final`` if complete, else the highest-step complete checkpoint, else None."""
    final = Path(run_dir) / FINAL
    if is_complete(final):
        return final
    steps = complete_steps(run_dir)
    return steps[-1][1] if steps else None


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The optimizer step a checkpoint was taken after (from its ``run.yaml``)."""
    try:
        data = yaml.safe_load((Path(path) / RUN_FILE).read_text(encoding="utf-8")) or {}
        return int(data["runtime"]["step"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        raise Gpt2Error(f"{path}: checkpoint has no readable {RUN_FILE}") from None


def latest_resumable(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with training state and the highest step (final included)."""
    found = newest_first(run_dir, with_state=True)
    return found[0] if found else None


def newest_first(run_dir: str | os.PathLike[str], with_state: bool) -> list[Path]:
    """Complete checkpoints, newest first: ``final`` (if complete) before the step directories
    for weights; by recorded step for training state (a resumed, longer run saves past
    ``final``). A ``final`` whose step cannot be read comes first: :func:`damage` names it."""
    steps = complete_steps(run_dir)
    final = Path(run_dir) / FINAL
    if with_state:
        steps = [(step, path) for step, path in steps if (path / STATE_FILE).is_file()]
    found = [path for _, path in sorted(steps, reverse=True)]
    if is_complete(final) and (not with_state or (final / STATE_FILE).is_file()):
        try:
            at = checkpoint_step(final) if with_state else None
        except Gpt2Error:
            at = None
        place = sum(1 for step, _ in steps if at is not None and step > at)
        found.insert(place, final)
    return found


def damage(path: Path, with_state: bool) -> str | None:
    """Why a complete checkpoint cannot be loaded (a truncated or unreadable file), or None.
    Cheap: file headers and sizes are checked, the tensors are not read."""
    import torch
    from safetensors import safe_open

    from gpt2cli.model import hf

    try:
        config = hf.read_config(path)
    except Gpt2Error as error:
        return str(error)
    weights = path / hf.SAFETENSORS_NAME
    try:
        with safe_open(str(weights), "pt"):
            pass
    except Exception as error:  # noqa: BLE001 - safetensors' own error types
        return f"{weights.name} is damaged ({error})"
    try:
        hf.check_fits(hf.weight_shapes(weights) or {}, config, str(path))
    except Gpt2Error as error:
        return error.message.removeprefix(f"{path}: ")
    if with_state:
        try:
            checkpoint_step(path)
            torch.load(path / STATE_FILE, map_location="cpu", weights_only=True, mmap=True)
        except Gpt2Error as error:
            return str(error)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means a bad file
            return f"{STATE_FILE} is damaged ({str(error).split('. ')[0]})"
    return None


def newest_loadable(
    run_dir: str | os.PathLike[str], with_state: bool, command: str = "", warn: bool = True
) -> Path | None:
    """The newest complete checkpoint that loads; each damaged newer one is skipped (with a
    warning on stderr naming it and why, if ``warn``)."""
    for path in newest_first(run_dir, with_state):
        problem = damage(path, with_state)
        if problem is None:
            return path
        prefix = f"gpt2 {command}" if command else "gpt2"
        if warn:
            console.info(f"{prefix}: warning: skipped checkpoint {path}: {problem}")
    return None
