"""Who owns a run directory, and what a new start, a resume and a rerun do with it.

A run directory belongs to one ``gpt2 train`` at a time: rank 0 holds an exclusive lock on
``RUN/.lock`` (``gpt2cli.locking``) from before it reads the directory until it exits. A
directory without a complete checkpoint holds nothing worth protecting: a new start takes it
over. A run that fails says what running it again will do.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from gpt2cli import console, run_layout
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import remove_entry
from gpt2cli.locking import exclusive_lock
from gpt2cli.train import checkpoint

LOCK_NAME = ".lock"
RUN_FILES = (run_layout.CONFIG_FILE, run_layout.METRICS_FILE, run_layout.LOSS_PLOT)
# flock refused by the filesystem (some network and FUSE filesystems), not by another holder.
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


@contextmanager
def hold(run_dir: Path, main: bool, create: bool) -> Iterator[None]:
    """Own ``run_dir`` for the with-block (rank 0 only; other ranks wait for it in
    ``distributed.setup``). ``create``: make the directory if missing; one made here and left
    with nothing in it is removed again."""
    if not main or (not create and not run_dir.is_dir()):
        yield
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"-o {run_dir}: exists and is not a directory")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise checkpoint.write_error(run_dir, error) from None
    lock = run_dir / LOCK_NAME
    stack = ExitStack()
    try:
        stack.enter_context(exclusive_lock(lock, f"-o {run_dir}"))
    except OSError as error:
        if error.errno not in _NO_FLOCK:
            raise checkpoint.write_error(lock, error) from None
        console.warn(
            "train",
            f"cannot lock {lock} ({error.strerror}: this filesystem has no flock): make sure "
            "no other gpt2 train writes this run",
        )
    with stack:
        try:
            yield
        finally:
            if created and os.listdir(run_dir) == [LOCK_NAME]:
                lock.unlink()
                run_dir.rmdir()


def claim(run_dir: Path) -> None:
    """Check that a new run may start in ``run_dir``: refuse one holding a checkpoint that
    loads; take over (clear) one whose run stopped before its first checkpoint, or whose every
    checkpoint is damaged (nothing there can be resumed or sampled)."""
    if not run_dir.is_dir():
        return
    leftovers = [
        run_dir / name
        for name in (*RUN_FILES, run_layout.CHECKPOINTS, run_layout.FINAL)
        if os.path.lexists(run_dir / name)
    ] + sorted(run_dir.glob(f"{run_layout.FINAL}.*"))
    if not leftovers:
        return
    why = "holds no complete checkpoint (its run stopped before the first save)"
    if run_layout.latest_complete(run_dir) is not None:
        if run_layout.newest_loadable(run_dir, with_state=False, warn=False) is not None:
            raise UsageError(
                f"-o {run_dir}: already holds a run",
                "add --resume to continue it, or choose another -o",
            )
        why = "holds only damaged checkpoints (none loads)"
    for path in leftovers:
        remove_entry(path)
    console.info(f"gpt2 train: {run_dir} {why}: starting the run there afresh")


def resume_source(run_dir: Path, main: bool) -> Path:
    """The newest complete checkpoint of ``run_dir`` that loads (rank 0 names each skipped)."""
    found = run_layout.newest_loadable(run_dir, with_state=True, command="train", warn=main)
    if found is None:
        damaged = run_layout.latest_resumable(run_dir)
        raise Gpt2Error(
            f"--resume: {run_dir} has no "
            + ("loadable checkpoint" if damaged else "complete checkpoint"),
            "start it again without --resume: a new start takes the directory over"
            if damaged is None
            else "every checkpoint is damaged (see the warnings above): start it again "
            "without --resume to start the directory afresh",
        )
    return found


def rerun(run_dir: Path, last_saved: str | None) -> str:
    """What running the same command again does, after a failure."""
    if last_saved is None:
        return f"nothing was saved yet: the same command starts {run_dir} afresh"
    return f"--resume continues from {last_saved}"


def with_rerun(error: Gpt2Error, run_dir: Path, last_saved: str | None) -> Gpt2Error:
    """``error`` with :func:`rerun` added to its hint."""
    error.hint = "; ".join(filter(None, (error.hint, rerun(run_dir, last_saved))))
    return error
