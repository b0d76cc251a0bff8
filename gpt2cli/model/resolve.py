"""What ``--model`` names, resolved to a loaded model; the checkpoint layout's lookup rules.

A model spec is, in this order:

1. a **run directory** (it has ``final/`` or ``checkpoints/``): its newest complete checkpoint,
   ``RUN/final`` if complete, else the highest-step complete ``RUN/checkpoints/step-NNNNNNNN``;
2. a **checkpoint directory** (``config.json`` + ``model.safetensors`` + the file ``COMPLETE``);
3. an **HF-layout directory** (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``),
   or a weights/config file inside one;
4. an **HF model name** (``gpt2``, ``gpt2-xl``, ``openai-community/gpt2``...) found in the local
   Hugging Face cache (never downloaded).

A checkpoint directory without ``COMPLETE`` is never used: it is a save that did not finish.
The layout and its lookup rules have one home, ``gpt2cli.train.checkpoint``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from gpt2cli import dtypes
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.model import hf
from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.model.packed_weights import pack_weights
from gpt2cli.run_layout import (
    CHECKPOINTS,
    COMPLETE,
    FINAL,
    STATE_FILE,
    is_complete,
    latest_complete,
    newest_loadable,
)


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    root = Path(path)
    return (root / FINAL).is_dir() or (root / CHECKPOINTS).is_dir()


# --- device and dtype ----------------------------------------------------------------------


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` (or None): cuda if available, else cpu; otherwise the named device, checked."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for but CUDA is not available", "use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"device {name!r} asked for but MPS is not available", "use --device cpu")
    return device


def resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """fp32/bf16/fp16 (or a torch dtype); None or ``auto``: bf16 on CUDA (fp16 where bf16 is
    missing), fp32 elsewhere. ``int8`` (``torch.int8``: weight-only 8-bit) on a CPU only."""
    if isinstance(name, torch.dtype):
        return name
    canonical = dtypes.canonical(name or "auto", int8=True)
    if canonical == "int8":
        if device.type != "cpu":
            raise UsageError("--dtype int8 is a CPU inference format", "use bf16 or fp16 on a GPU")
        return torch.int8
    if canonical == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, canonical)


# --- loading -------------------------------------------------------------------------------

# --dtype on a CPU -> the format packed_weights.pack_weights holds the linear layers' weights in.
PACKED_CPU_FORMATS = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.int8: "int8"}


@dataclass
class LoadedModel:
    model: GPT
    config: GPTConfig
    path: Path  # the directory the weights came from
    description: str  # for messages: what was loaded, from where


def resolve_model_dir(spec: str | os.PathLike[str]) -> tuple[Path, str]:
    """The directory holding the weights a spec names, and a description of it."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        if path.name in (hf.CONFIG_NAME,) + hf.WEIGHT_NAMES:
            path = path.parent
        else:
            raise Gpt2Error(
                f"{text}: not a model (a file that is not config.json or model weights)",
                "give a run directory, a checkpoint or HF-layout directory, or an HF model name",
            )
    if path.is_dir():
        if (path / hf.CONFIG_NAME).exists():
            if not is_complete(path) and (
                (path / STATE_FILE).exists() or (path / COMPLETE).exists()
            ):
                raise Gpt2Error(
                    f"{text}: an incomplete checkpoint (no {COMPLETE} marker: its save did "
                    "not finish)",
                    "use the run directory to take its newest complete checkpoint",
                )
            kind = "checkpoint" if is_complete(path) else "model directory"
            return path, f"{kind} {path}"
        if is_run_dir(path):
            found = newest_loadable(path, with_state=False)  # a damaged one is skipped
            if found is None and latest_complete(path) is not None:
                raise Gpt2Error(f"{text}: every complete checkpoint is damaged (see above)")
            if found is None:
                raise Gpt2Error(
                    f"{text}: a run directory without a complete checkpoint",
                    f"train until it saves one ({CHECKPOINTS}/step-N/ or {FINAL}/)",
                )
            return found, f"run {path}, checkpoint {found.name}"
        raise Gpt2Error(
            f"{text}: not a model (no config.json, and not a run directory)",
            "give a run directory, a checkpoint or HF-layout directory, or an HF model name",
        )
    if hf.looks_like_hub_name(text):
        found = hf.find_in_cache(text)
        return found, f"{text} from the Hugging Face cache ({found})"
    raise Gpt2Error(f"model {text!r} not found: no such file or directory")


def load_model(
    spec: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    padded_vocab_size: int | None = None,
) -> LoadedModel:
    """Load what a ``--model`` spec names, in eval mode, on ``device`` in ``dtype``.

    ``dtype`` None: bf16 on CUDA, fp32 on CPU (see :func:`resolve_dtype`). On a CPU, fp16, bf16
    and int8 load the weights in fp32 and pack each linear layer's weight in that format
    (``packed_weights.pack_weights``: the weights of that precision, fp32 activations). Errors
    (missing, not a model, weights of the wrong shape) are one Gpt2Error naming the spec.
    """
    device = torch.device(device) if isinstance(device, str) else device
    torch_dtype = resolve_dtype(dtype, device)
    packed = PACKED_CPU_FORMATS.get(torch_dtype) if device.type == "cpu" else None
    path, description = resolve_model_dir(spec)
    model = hf.load_pretrained(
        path,
        device=device,
        dtype=torch.float32 if packed else torch_dtype,
        padded_vocab_size=padded_vocab_size,
    )
    model.eval()
    millions = model.num_parameters() / 1e6
    description += f" ({model.config.n_layer} layers, {millions:,.1f}M parameters)"
    if packed:
        pack_weights(model, packed)
    return LoadedModel(model=model, config=model.config, path=path, description=description)
