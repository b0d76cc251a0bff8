"""Checkpoints written into a run directory (its layout: :mod:`gpt2cli.run_layout`): atomic
save, pruning, stale temporaries, resume state.

Layout and atomic save: docs/formats.md#run-directory-and-checkpoint; ownership and resume:
docs/training.md#the-run-directory.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gpt2cli import run_layout
from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import atomic_write, create_new, fsync_directory, remove_entry
from gpt2cli.locking import another_process_alive

STATE_FORMAT = 1


def write_error(path: str | os.PathLike[str], error: OSError, hint: str | None = None) -> Gpt2Error:
    """An OSError while writing ``path`` as the one-line ``PATH: reason``."""
    reason = error.strerror or str(error)
    return Gpt2Error(f"{path}: {reason[:1].lower()}{reason[1:]}", hint)


class _WriteRecorder:
    """A file handle for ``torch.save`` that keeps the OSError of a failed write (torch reports
    only 'unexpected pos')."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.error = handle, None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def _os_error(error: BaseException, recorder: _WriteRecorder | None) -> OSError | None:
    """The OSError behind a failed save: raised as such, kept by the recorder, or in the text
    of safetensors' error (``os error 28``)."""
    if isinstance(error, OSError):
        return error
    if recorder is not None and recorder.error is not None:
        return recorder.error
    match = re.search(r"os error (\d+)", str(error))
    if match:
        number = int(match.group(1))
        return OSError(number, os.strerror(number))
    return None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is moved aside and removed."""
    old = None
    if os.path.lexists(target):
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        remove_entry(old)
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_directory(target.parent)
    if old is not None:
        with suppress(OSError):
            remove_entry(old)


def save(
    target: str | os.PathLike[str],
    model: nn.Module,
    state: dict[str, Any] | None,
    run_yaml: str,
    before_complete: Callable[[], None] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring).

    ``model`` is a plain ``GPT`` (weights written by ``hf.save_pretrained``); ``state`` the
    training state for resuming (None: weights only). ``before_complete`` runs once every file
    but ``COMPLETE`` is written (tests kill the writer there).
    """
    from gpt2cli.model import hf

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    recorder = None
    try:
        remove_entry(tmp)  # a leftover of ours, or a link planted there: never followed
        tmp.mkdir()
        hf.save_pretrained(model, tmp)
        if state is not None:
            with create_new(tmp / run_layout.STATE_FILE) as handle:
                recorder = _WriteRecorder(handle)
                torch.save(state, recorder)
        with create_new(tmp / run_layout.RUN_FILE, "w") as handle:
            handle.write(run_yaml)
        for child in tmp.iterdir():
            _fsync_file(child)
        if before_complete is not None:
            before_complete()
        with create_new(tmp / run_layout.COMPLETE) as handle:
            handle.flush()
            os.fsync(handle.fileno())
        fsync_directory(tmp)
        _replace_dir(tmp, target)
    except BaseException as error:
        with suppress(OSError):
            remove_entry(tmp)
        cause = _os_error(error, recorder)
        if cause is not None:
            raise write_error(target, cause) from None
        raise
    return target


def prune(run_dir: str | os.PathLike[str], keep: int) -> None:
    """Keep the newest ``keep`` complete step checkpoints; remove older ones."""
    steps = run_layout.complete_steps(run_dir)
    for _, path in steps[: max(0, len(steps) - keep)]:
        with suppress(OSError):
            remove_entry(path)


def remove_stale(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove leftovers of interrupted saves (``*.tmp-PID`` / ``*.old-PID`` whose PID is gone,
    and step directories without ``COMPLETE``). Returns what was removed."""
    run_dir = Path(run_dir)
    removed = []
    checkpoints = run_dir / run_layout.CHECKPOINTS
    candidates = list(checkpoints.glob("*")) if checkpoints.is_dir() else []
    candidates += list(run_dir.glob(f"{run_layout.FINAL}.*"))
    for path in candidates:
        match = re.search(r"\.(?:tmp|old)-(\d+)$", path.name)
        if match:
            if another_process_alive(int(match.group(1))):
                continue
        elif not (
            run_layout.STEP_DIR.match(path.name)
            and path.is_dir()
            and not run_layout.is_complete(path)
        ):
            continue
        with suppress(OSError):
            remove_entry(path)
        removed.append(path)
    return removed


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    try:
        with atomic_write(path, "w") as handle:
            handle.write(text)
    except OSError as error:
        raise write_error(path, error) from None


@contextmanager
def restoring(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Restoring a training state: values of the wrong type, length or shape (a state file
    edited or written by something else) as one error naming it, not a traceback."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Gpt2Error(
            f"{Path(path or '.') / run_layout.STATE_FILE}: damaged training state ({reason[:200]})",
            "remove this checkpoint to resume from an older one",
        ) from None


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The training state of a checkpoint directory."""
    file = Path(path) / run_layout.STATE_FILE
    if not file.is_file():
        raise Gpt2Error(
            f"{path}: checkpoint has no {run_layout.STATE_FILE}",
            "it holds weights only; use --init-from to start a new run from it",
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a bad file
        raise Gpt2Error(f"{file}: unreadable training state ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise Gpt2Error(f"{file}: not a gpt2 training state (format {STATE_FORMAT})")
    return state


# --- random generators -----------------------------------------------------------------------


def rng_state(device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as plain Python values (bytes), so
    they travel through all_gather_object and load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.astype("<u4").tobytes(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().numpy().tobytes(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).numpy().tobytes()
    return state


def _byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(
        (name, np.frombuffer(keys, dtype="<u4").astype(np.uint32), pos, has_gauss, cached)
    )
    torch.set_rng_state(_byte_tensor(state["torch"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_byte_tensor(state["cuda"]), device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
