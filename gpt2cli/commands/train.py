"""``gpt2 train``: train or fine-tune a GPT-2 on packed shards, on CPU, one GPU or many."""

from __future__ import annotations

from pathlib import Path

import typer

from gpt2cli.errors import UsageError

NAME = "train"


def _micro_batch(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"--micro-batch must be a number or 'auto', not {value!r}") from None
    return number


def register(app: typer.Typer) -> None:
    @app.command(NAME)
    def train(
        data: str = typer.Option(
            None,
            "--data",
            "-d",
            show_default=False,
            help="Pack directory (from `gpt2 pack`): its train split is trained on, its val "
            "split validated on.",
        ),
        out: Path = typer.Option(
            None,
            "--output",
            "-o",
            show_default=False,
            help="Run directory: config.yaml, metrics.jsonl, loss.png, checkpoints/, final/.",
        ),
        size: str = typer.Option(
            None,
            "--size",
            "-s",
            show_default=False,
            help="Model size: 124m/117m/small/gpt2, 355m/345m/medium, 774m/762m/large, "
            "1.5b/1558m/1542m/xl, tiny, mini. Default 124m, or the shape of --init-from.",
        ),
        config_file: Path = typer.Option(
            None,
            "--config",
            "-c",
            show_default=False,
            help="YAML file with any of these options (underscores or dashes; `model:` a "
            "mapping of n_layer, n_head, n_embd... for a custom shape). Flags override it.",
        ),
        resume: bool = typer.Option(
            False,
            "--resume",
            help="Continue the run in -o from its newest complete checkpoint, with its "
            "config.yaml (flags may change the length, logging and hardware options only).",
        ),
        init_from: str = typer.Option(
            None,
            "--init-from",
            show_default=False,
            help="Start from these weights (fine-tuning): a run directory, a checkpoint, an "
            "HF-layout directory or an HF model name in the local cache.",
        ),
        max_steps: int = typer.Option(
            None,
            "--max-steps",
            show_default=False,
            help="Optimizer steps to train. Default: from --max-tokens, else one pass over "
            "the train split.",
        ),
        max_tokens: int = typer.Option(
            None,
            "--max-tokens",
            show_default=False,
            help="Tokens to train on (rounded up to whole steps of --batch-size x --seq-len).",
        ),
        batch_size: int = typer.Option(
            None,
            "--batch-size",
            "-b",
            show_default=False,
            help="Sequences per optimizer step over all processes [default: 512].",
        ),
        micro_batch: str = typer.Option(
            None,
            "--micro-batch",
            show_default=False,
            help="Sequences per forward pass and process; steps accumulate gradients over "
            "batch-size / (processes x micro-batch) of them. 'auto' [default]: the largest "
            "power of two that fits the GPU (tried); 8 on CPU.",
        ),
        seq_len: int = typer.Option(
            None, "--seq-len", show_default=False, help="Tokens per sequence [default: 1024]."
        ),
        lr: float = typer.Option(
            None,
            "--lr",
            show_default=False,
            help="Peak learning rate. Default by size (GPT-3 table): 6e-4 up to 124M, 3e-4 "
            "355M, 2.5e-4 774M, 2e-4 1.5B.",
        ),
        warmup: int = typer.Option(
            None,
            "--warmup",
            show_default=False,
            help="Linear warmup steps, then cosine decay to 10% of --lr. Default: 375M tokens "
            "(GPT-3), at most a tenth of the run.",
        ),
        weight_decay: float = typer.Option(
            None,
            "--weight-decay",
            show_default=False,
            help="AdamW weight decay on matrices (not biases, LayerNorms) [default: 0.1].",
        ),
        grad_clip: float = typer.Option(
            None,
            "--grad-clip",
            show_default=False,
            help="Clip the gradient norm to this (0: off) [default: 1.0].",
        ),
        seed: int = typer.Option(
            None,
            "--seed",
            show_default=False,
            help="Seed of the initialisation and the data order [default: 0].",
        ),
        device: str = typer.Option(
            None,
            "--device",
            show_default=False,
            help="auto [default: CUDA if available], cpu, cuda or cuda:N.",
        ),
        dtype: str = typer.Option(
            None,
            "--dtype",
            show_default=False,
            help="Compute precision: auto [default: bf16 autocast on CUDA (fp16 + loss "
            "scaling without bf16), fp32 on CPU], float32, bfloat16, float16.",
        ),
        compile_: bool = typer.Option(
            None,
            "--compile/--no-compile",
            show_default=False,
            help="torch.compile the model [default: on with CUDA, off on CPU].",
        ),
        fsdp: bool = typer.Option(
            None,
            "--fsdp/--ddp",
            show_default=False,
            help="Under torchrun: shard parameters, gradients and optimizer state (FSDP) "
            "instead of replicating them (DDP, the default).",
        ),
        eval_every: int = typer.Option(
            None,
            "--eval-every",
            show_default=False,
            help="Validate on the val split before the first step, every this many steps "
            "and at the end [default: 250].",
        ),
        eval_steps: int = typer.Option(
            None,
            "--eval-steps",
            show_default=False,
            help="Micro-batches per validation [default: 20].",
        ),
        save_every: int = typer.Option(
            None,
            "--save-every",
            show_default=False,
            help="Write a checkpoint every this many steps [default: 1000].",
        ),
        keep: int = typer.Option(
            None,
            "--keep",
            show_default=False,
            help="Checkpoints to keep (the newest) [default: 3]; final/ is always kept.",
        ),
        log_every: int = typer.Option(
            None,
            "--log-every",
            show_default=False,
            help="When stderr is not a terminal: a progress line every this many steps "
            "[default: 10].",
        ),
        pad_vocab: int = typer.Option(
            None,
            "--pad-vocab",
            show_default=False,
            help="Pad the embedding rows to a multiple of this for speed; outputs do not "
            "change (1: no padding) [default: 64].",
        ),
        peak_tflops: float = typer.Option(
            None,
            "--peak-tflops",
            show_default=False,
            help="Peak TFLOP/s of one GPU for MFU, when the built-in table does not know it.",
        ),
    ) -> None:
        """Train or fine-tune a GPT-2 on packed shards.

        Paper / GPT-3 defaults: context 1024, 512 sequences per step, AdamW (0.9, 0.95),
        weight decay 0.1 on matrices, learning rate by size with linear warmup and cosine decay
        to 10%, gradient clipping at 1.0. On CUDA: bf16 autocast, TF32, fused AdamW and
        torch.compile. Under torchrun (RANK / WORLD_SIZE set) every process takes its own
        stride of the data and the global batch stays --batch-size: DDP, or FSDP with --fsdp.

        The run directory gets config.yaml (the effective config), metrics.jsonl (one JSON
        record per step and per validation), loss.png, checkpoints/step-NNNNNNNN/ every
        --save-every steps (Hugging Face layout + training state, written atomically, marked
        COMPLETE last) and final/ at the end. --resume continues exactly where the newest
        complete checkpoint stopped. Progress goes to stderr.
        """
        from gpt2cli.train import trainer

        given = {
            "data": data,
            "out": str(out) if out is not None else None,
            "size": size,
            "init_from": init_from,
            "max_steps": max_steps,
            "max_tokens": max_tokens,
            "batch_size": batch_size,
            "micro_batch": _micro_batch(micro_batch),
            "seq_len": seq_len,
            "lr": lr,
            "warmup": warmup,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "seed": seed,
            "device": device,
            "dtype": dtype,
            "compile": compile_,
            "fsdp": fsdp,
            "eval_every": eval_every,
            "eval_steps": eval_steps,
            "save_every": save_every,
            "keep": keep,
            "log_every": log_every,
            "pad_vocab": pad_vocab,
            "peak_tflops": peak_tflops,
        }
        trainer.train(given, str(config_file) if config_file is not None else None, resume)
