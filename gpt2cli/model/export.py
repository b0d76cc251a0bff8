"""``gpt2 export``: a model (run, checkpoint, HF directory or cached name) as a complete Hugging
Face repository or as a GGUF file for llama.cpp.

Nothing is half-written: the output is built under a temporary name beside ``OUT``
(``.OUT.tmp-PID``) and renamed to ``OUT`` only once complete and fsynced; an error (a full disk,
an interrupt) removes it. An existing ``OUT`` is never replaced.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import fsync_directory
from gpt2cli.model import export_gguf, hf, resolve
from gpt2cli.model.export_options import ExportOptions

FORMATS = ("hf", "gguf")
# --dtype for each format: the HF names map to torch dtypes, the GGUF names are GGML types.
HF_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_HF_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
_GGUF_ALIASES = {"fp32": "f32", "float32": "f32", "fp16": "f16", "float16": "f16", "q8": "q8_0"}


@dataclass
class ExportReport:
    model: str  # what was exported, from where
    output: Path
    format: str
    dtype: str
    tensors: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "output": str(self.output),
            "format": self.format,
            "dtype": self.dtype,
            "tensors": self.tensors,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


def choose_format(options: ExportOptions) -> tuple[str, str]:
    """The format and the canonical dtype name; UsageError for an unknown or mismatched one."""
    fmt = options.format
    if fmt is None:
        fmt = "gguf" if options.output.suffix.lower() == ".gguf" else "hf"
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {options.format!r}", "use hf or gguf")
    name = (options.dtype or ("fp32" if fmt == "hf" else "f32")).strip().lower()
    if fmt == "hf":
        name = _HF_ALIASES.get(name, name)
        if name not in HF_DTYPES:
            raise UsageError(f"--format hf takes --dtype fp32, fp16 or bf16, not {name!r}")
    else:
        name = _GGUF_ALIASES.get(name, name)
        if name not in export_gguf.GGUF_TYPES:
            raise UsageError(f"--format gguf takes --dtype f32, f16 or q8_0, not {name!r}")
    return fmt, name


def _os_error(error: BaseException) -> OSError | None:
    """The OSError behind a failed write, also when a library reports it as text
    (safetensors: ``... os error 28``)."""
    if isinstance(error, OSError):
        return error
    match = re.search(r"os error (\d+)", str(error))
    if match:
        number = int(match.group(1))
        return OSError(number, os.strerror(number))
    return None


def model_name(spec: str) -> str:
    """A name for the model's metadata: the run's (not ``final`` or ``step-N``), the
    directory's, or the HF name's last part."""
    path = Path(str(spec).rstrip("/"))
    if path.name == "final" or path.name.startswith("step-"):
        path = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path.name or "gpt2"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(child.stat().st_size for child in path.iterdir())


def export(options: ExportOptions) -> ExportReport:
    """Write the model ``options.model`` names to ``options.output`` (see the module doc)."""
    fmt, dtype = choose_format(options)
    output = options.output
    if output.exists() or output.is_symlink():
        raise Gpt2Error(f"{output}: already exists", "give a new name, or remove it first")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise Gpt2Error(f"{parent}: no such directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Gpt2Error(f"{parent}: permission denied")
    start = time.monotonic()
    loaded = resolve.load_model(options.model, device="cpu", dtype=torch.float32)
    model = loaded.model
    tmp = parent / f".{output.name}.tmp-{os.getpid()}"
    try:
        if fmt == "hf":
            if dtype != "fp32":
                model = model.to(HF_DTYPES[dtype])
            hf.save_pretrained(model, tmp)
            tensors = len(model.state_dict()) - 1  # lm_head is the token embedding
            fsync_directory(tmp)
        else:
            tensors = export_gguf.write_gguf(model, tmp, dtype, model_name(options.model))
        if output.exists():
            raise Gpt2Error(f"{output}: already exists (created while exporting)")
        os.rename(tmp, output)
        fsync_directory(parent)
    except BaseException as error:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        cause = _os_error(error)
        if cause is not None:
            reason = cause.strerror or str(cause)
            raise Gpt2Error(
                f"{output}: {reason[:1].lower()}{reason[1:]} (nothing written)"
            ) from None
        raise
    return ExportReport(
        model=loaded.description,
        output=output,
        format=fmt,
        dtype=dtype,
        tensors=tensors,
        bytes=_size(output),
        seconds=time.monotonic() - start,
    )
