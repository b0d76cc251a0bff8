"""The model a run trains: its shape from the options, and the weights it starts from (new,
``--init-from``, or the checkpoint being resumed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from gpt2cli.errors import UsageError
from gpt2cli.model.gpt import GPT, GPTConfig, config_for_size
from gpt2cli.train.config import TrainConfig


def model_config(config: TrainConfig, base: GPTConfig | None = None) -> GPTConfig:
    """The model's shape: --size (or the --init-from weights), the YAML ``model`` mapping,
    the context grown to --seq-len for a new model, the vocabulary padded to --pad-vocab."""
    if base is None:
        base = config_for_size(config.size or "124m")
        base = dataclasses.replace(base, block_size=max(base.block_size, config.seq_len))
    values = base.to_dict()
    if config.model:
        values.update(config.model)
    values["padded_vocab_size"] = None
    shape = GPTConfig.from_dict(values)
    if config.pad_vocab > 1:
        shape = shape.with_padding(config.pad_vocab)
    return shape


def same_shape(a: GPTConfig, b: GPTConfig) -> bool:
    keys = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def describe_shape(c: GPTConfig) -> str:
    return f"{c.n_layer} layers, {c.n_head} heads, {c.n_embd} wide, context {c.block_size}"


def build_model(
    config: TrainConfig, resume_from: Path | None, saved_model: dict[str, Any] | None = None
) -> tuple[GPT, str]:
    """A new model, or weights from --init-from, or from the checkpoint being resumed
    (``saved_model``: the model shape recorded in the run's config.yaml)."""
    from gpt2cli.model import hf, resolve

    if resume_from is not None:
        shape = GPTConfig.from_dict(saved_model) if saved_model else model_config(config)
        stored = hf.read_config(resume_from)
        if not same_shape(stored, shape):
            raise UsageError(
                f"{resume_from}: checkpoint is a {describe_shape(stored)} model, the run's "
                f"config gives {describe_shape(shape)}",
                "the run directory's config.yaml does not match its checkpoints",
            )
        model = hf.load_pretrained(
            resume_from, dtype=torch.float32, padded_vocab_size=shape.padded_vocab_size
        )
        return model, f"resumed from {resume_from}"
    if config.init_from:
        loaded = resolve.load_model(config.init_from, device="cpu", dtype=torch.float32)
        shape = model_config(config, loaded.config)
        if config.size is not None:
            wanted = model_config(config)
            if not same_shape(
                dataclasses.replace(wanted, block_size=loaded.config.block_size), loaded.config
            ):
                raise UsageError(
                    f"--init-from {config.init_from}: the weights are a "
                    f"{describe_shape(loaded.config)} model, not --size {config.size}",
                    "drop --size to take the shape from the weights",
                )
        if config.seq_len > shape.block_size:
            raise UsageError(
                f"--seq-len {config.seq_len} is longer than the context "
                f"{shape.block_size} of --init-from {config.init_from}"
            )
        if shape.padded_vocab_size != loaded.config.padded_vocab_size:
            model = hf.from_hf_state_dict(
                hf.to_hf_state_dict(loaded.model), shape, config.init_from, dtype=torch.float32
            )
        else:
            model = loaded.model
        return model, f"initialised from {loaded.description}"
    torch.manual_seed(config.seed)
    model = GPT(model_config(config))
    return model, "new model, random initialisation"
