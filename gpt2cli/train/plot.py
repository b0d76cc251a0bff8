"""``RUN/loss.png``: train and validation loss against step, and a second panel for the
--eval-task benchmarks when the run has them (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from gpt2cli.fileio import atomic_write


def plot_losses(
    records: Iterable[dict[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> None:
    """Draw the ``train``, ``val`` (and ``task``) records of metrics.jsonl to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    train_steps, train_loss, val_steps, val_loss = [], [], [], []
    tasks: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        if record.get("kind") == "train":
            train_steps.append(record["step"])
            train_loss.append(record["loss"])
        elif record.get("kind") == "val":
            val_steps.append(record["step"])
            val_loss.append(record["loss"])
        elif record.get("kind") == "task" and record.get("value") is not None:
            steps, values = tasks.setdefault(f"{record['task']} {record['metric']}", ([], []))
            steps.append(record["step"])
            values.append(record["value"])
    figure = Figure(figsize=(8, 8 if tasks else 5), dpi=100)
    axes = figure.add_subplot(2, 1, 1) if tasks else figure.add_subplot()
    if train_steps:
        axes.plot(train_steps, train_loss, label="train", linewidth=1, alpha=0.8)
    if val_steps:
        axes.plot(val_steps, val_loss, label="val", marker="o", markersize=3, linewidth=1.5)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats/token)")
    axes.grid(True, alpha=0.3)
    if train_steps or val_steps:
        axes.legend()
    if title:
        axes.set_title(title)
    if tasks:
        bench = figure.add_subplot(2, 1, 2, sharex=axes)
        for label, (steps, values) in tasks.items():
            bench.plot(steps, values, label=label, marker="o", markersize=3, linewidth=1.5)
        bench.set_xlabel("step")
        bench.set_ylabel("--eval-task metric")
        bench.grid(True, alpha=0.3)
        bench.legend()
    figure.tight_layout()
    try:
        with atomic_write(path, "wb") as handle:
            figure.savefig(handle, format="png")
    except OSError as error:
        from gpt2cli.train.checkpoint import write_error

        raise write_error(path, error) from None
