"""``gpt2 train``: train or fine-tune a GPT-2 on packed shards, on CPU, one GPU or many.

The flags are :class:`gpt2cli.train.config.TrainConfig`'s fields (one declaration each, with a
default of None here: "not given", so that --config and a resumed run's config.yaml show
through); only --config and --resume, which are not options of the run, are declared here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gpt2cli.commands import options
from gpt2cli.train.config import TrainConfig

NAME = "train"

_DOC = """Train or fine-tune a GPT-2 on packed shards.

Paper / GPT-3 defaults: context {c.seq_len}, {c.batch_size} sequences per step, AdamW
({c.beta1}, {c.beta2}), weight decay {c.weight_decay} on matrices, learning rate by size with
linear warmup and cosine decay to {c.min_lr_ratio:.0%}, gradient clipping at {c.grad_clip}. On
CUDA: bf16 autocast, TF32, fused AdamW and torch.compile. Under torchrun (RANK / WORLD_SIZE set)
every process takes its own stride of the data and the global batch stays --batch-size: DDP, or
FSDP with --fsdp.

The run directory gets config.yaml (the effective config), metrics.jsonl (one JSON record per
step and per validation), loss.png, checkpoints/step-NNNNNNNN/ every --save-every steps (Hugging
Face layout + training state, written atomically, marked COMPLETE last) and final/ at the end.
--resume continues exactly where the newest complete checkpoint stopped. Progress goes to
stderr.
"""


@options.with_fields(TrainConfig, {"data": None, "init_from": "resume"}, unset_default=True)
def train(
    config_file: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        show_default=False,
        help="YAML file with any of these options (underscores or dashes; `model:` a "
        "mapping of n_layer, n_head, n_embd... for a custom shape). Flags override it.",
    ),
    resume: bool = options.switch(
        "--resume",
        help="Continue the run in -o from its newest complete checkpoint, with its "
        "config.yaml (flags may change the length, logging and hardware options only).",
    ),
    **given: Any,
) -> None:
    from gpt2cli.train import setup

    setup.train(given, str(config_file) if config_file is not None else None, resume)


train.__doc__ = _DOC.format(c=TrainConfig())


def register(app: typer.Typer) -> None:
    app.command(NAME)(train)
