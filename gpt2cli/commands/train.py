"""``gpt2 train``: train or fine-tune a GPT-2 on packed shards, on CPU, one GPU or many.

The flags are built from :class:`gpt2cli.train.config.TrainConfig`'s fields (one declaration
each); only --config and --resume, which are not options of the run, are declared here.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from gpt2cli.train import config as trainconfig

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

_COMMAND_ONLY = [
    inspect.Parameter(
        "config_file",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Path,
        default=typer.Option(
            None,
            "--config",
            "-c",
            show_default=False,
            help="YAML file with any of these options (underscores or dashes; `model:` a "
            "mapping of n_layer, n_head, n_embd... for a custom shape). Flags override it.",
        ),
    ),
    inspect.Parameter(
        "resume",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=bool,
        default=typer.Option(
            False,
            "--resume",
            help="Continue the run in -o from its newest complete checkpoint, with its "
            "config.yaml (flags may change the length, logging and hardware options only).",
        ),
    ),
]


def _parameter(flag: trainconfig.Flag) -> inspect.Parameter:
    # Default None: "not given", so that --config and a resumed run's config.yaml show through.
    metavar = "<str>" if flag.type == list[str] else None  # a repeatable option: one value each
    option = typer.Option(None, *flag.names, show_default=False, help=flag.help, metavar=metavar)
    return inspect.Parameter(
        flag.name, inspect.Parameter.KEYWORD_ONLY, annotation=flag.type, default=option
    )


def _signature() -> inspect.Signature:
    parameters = [_parameter(flag) for flag in trainconfig.flags()]
    after_size = [p.name for p in parameters].index("size") + 1  # where --help lists them
    parameters[after_size:after_size] = _COMMAND_ONLY
    return inspect.Signature(parameters, return_annotation=None)


def train(config_file: Path | None = None, resume: bool = False, **given: Any) -> None:
    from gpt2cli.train import trainer

    trainer.train(given, str(config_file) if config_file is not None else None, resume)


train.__signature__ = _signature()  # type: ignore[attr-defined]
train.__doc__ = _DOC.format(c=trainconfig.TrainConfig())


def register(app: typer.Typer) -> None:
    app.command(NAME)(train)
