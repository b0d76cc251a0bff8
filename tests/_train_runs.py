"""What the training tests share: a tiny pack directory, `gpt2 train` options for a few steps
of a tiny model, the losses a run logged, a crash raised from a step hook, benchmark files for
--eval-task."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gpt2cli.train import metrics_log

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_shards(directory: Path, documents: int = 150, val_tokens: int = 1500) -> Path:
    """A tiny pack directory through gpt2cli.data.pack: patterned documents, so loss falls."""
    from gpt2cli.data.pack import PackOptions, pack
    from gpt2cli.text import token_stream

    rng = np.random.default_rng(0)
    stream = directory.parent / f"{directory.name}.tokens"
    with open(stream, "wb") as handle:
        handle.write(token_stream.HEADER)
        for _ in range(documents):
            start = int(rng.integers(0, 500))
            ids = (start + np.arange(int(rng.integers(20, 100))) % 13).astype(np.uint16)
            handle.write(token_stream.encode_document(ids))
    pack([str(stream)], directory, PackOptions(val_tokens=val_tokens))
    return directory


def options(data: Path, out: Path, **extra: object) -> dict:
    base = dict(
        data=str(data),
        out=str(out),
        size="tiny",
        seq_len=32,
        batch_size=8,
        micro_batch=4,
        max_steps=4,
        save_every=2,
        eval_every=2,
        eval_steps=2,
        device="cpu",
    )
    base.update(extra)
    return base


def train_losses(run: Path) -> list[float]:
    return [
        r["loss"] for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == "train"
    ]


class Crash(Exception):
    pass


HELLASWAG = [
    {
        "activity_label": "Cooking",
        "ctx_a": f"A cook {verb} the pan.",
        "ctx_b": "then she",
        "endings": ["stirs it.", "sings a song.", "goes home.", "eats the pan."],
        "label": i % 4,
    }
    for i, verb in enumerate(["heats", "cleans", "lifts", "drops", "fills"])
]
LAMBADA = [f"the {w} sat on the mat and the {w} looked at the {w}" for w in ("cat", "dog", "owl")]


def write_task_data(folder: Path) -> Path:
    """hellaswag_val.jsonl and lambada_test.jsonl, a few examples each."""
    folder.mkdir()
    (folder / "hellaswag_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HELLASWAG))
    (folder / "lambada_test.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in LAMBADA)
    )
    return folder
