"""Experiment trackers: TensorBoard event files (``--tensorboard``) and Weights & Biases
(``--wandb PROJECT``), behind one small interface.

``metrics.jsonl`` stays the record of truth: the trackers get the same records, as scalars
named ``train/loss``, ``val/loss``, ``task/hellaswag/acc_norm``..., and the run's config. Both
packages are optional (``pip install 'gpt2cli[track]'``); asking for a tracker that is not
installed is a usage error before training starts.
"""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path
from typing import Any, Protocol

import yaml

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write
from gpt2cli.train.config import TrainConfig

TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb-id"  # the run's W&B id, so that --resume continues the same W&B run


class Tracker(Protocol):
    def log_scalars(self, step: int, scalars: dict[str, float]) -> None: ...

    def log_config(self, config: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record as tracker scalars: ``KIND/NAME`` for its numbers."""
    kind = record.get("kind", "train")
    if kind == "task":
        prefix = f"task/{record['task']}/"
        return {prefix + k: float(v) for k, v in record["metrics"].items() if v is not None}
    return {
        f"{kind}/{key}": float(value)
        for key, value in record.items()
        if key not in ("kind", "step") and isinstance(value, int | float) and value is not None
    }


# What W&B accepts as a project name: at most 128 characters, none of these.
_WANDB_FORBIDDEN = set("/\\#?%:")


def check_wandb_project(project: str) -> None:
    """UsageError for a --wandb PROJECT that W&B would refuse (or that tracks nothing)."""
    if not project.strip():
        raise UsageError("--wandb: the project name is empty", "give --wandb PROJECT")
    bad = sorted(_WANDB_FORBIDDEN & set(project))
    if bad or len(project) > 128 or not project.isprintable():
        raise UsageError(
            f"--wandb {project!r}: not a W&B project name",
            "at most 128 printable characters, none of / \\ # ? % :",
        )


def check_installed(config: TrainConfig) -> None:
    """UsageError for a tracker option that cannot work: a project name W&B refuses, or the
    missing package of a tracker asked for."""
    if config.wandb is not None:
        check_wandb_project(config.wandb)
    wanted = [
        ("--tensorboard", "tensorboard", config.tensorboard),
        ("--wandb", "wandb", config.wandb),
    ]
    for option, package, asked in wanted:
        if asked and importlib.util.find_spec(package) is None:
            raise UsageError(
                f"{option} needs the {package} package, which is not installed",
                "pip install 'gpt2cli[track]'",
            )


class TensorBoard:
    """Event files in RUN/tensorboard/. A resumed run purges what the interrupted launch logged
    after its checkpoint, so that no step appears twice."""

    def __init__(self, directory: Path, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(directory), purge_step=purge)
        self.step = resume_step or 0

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self.step = step
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)

    def log_config(self, config: dict[str, Any]) -> None:
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "```\n" + text + "```", self.step)

    def close(self) -> None:
        self.writer.close()


class Wandb:
    """A W&B run named after the run directory, its files under RUN/wandb/; WANDB_MODE=offline
    (or ``wandb offline``) keeps it on disk, for ``wandb sync`` later."""

    def __init__(self, project: str, run_dir: Path, resume: bool) -> None:
        import wandb

        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        if not run_id:
            run_id = secrets.token_hex(4)
            with atomic_write(id_file, "w") as handle:
                handle.write(run_id + "\n")
        try:
            self.run = wandb.init(
                project=project,
                name=run_dir.resolve().name,
                id=run_id,
                resume="allow",
                dir=str(run_dir),
                settings=wandb.Settings(console="off"),
            )
        except Exception as error:  # noqa: BLE001 - wandb raises many kinds (login, network)
            raise Gpt2Error(
                f"--wandb {project}: {str(error).splitlines()[0] if str(error) else error!r}",
                "log in with `wandb login`, or set WANDB_MODE=offline",
            ) from None

    def log_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """Every tracker of the run; :meth:`record` takes a metrics.jsonl record."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def record(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        if values:
            for tracker in self.trackers:
                tracker.log_scalars(int(record["step"]), values)

    def log_config(self, config: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_config(config)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(
    config: TrainConfig, run_dir: Path, resume_step: int | None, runtime: dict[str, Any]
) -> Trackers:
    """The trackers ``config`` asks for (rank 0 only), given the config and ``runtime``;
    ``resume_step``: the step of the checkpoint resumed from."""
    trackers: list[Tracker] = []
    if config.tensorboard:
        trackers.append(TensorBoard(run_dir / TENSORBOARD_DIR, resume_step))
    if config.wandb:
        trackers.append(Wandb(config.wandb, run_dir, resume_step is not None))
    opened = Trackers(trackers)
    opened.log_config({**config.to_dict(), "runtime": runtime})
    return opened
