"""The options of ``gpt2 export``: each field is also its flag and --help text
(:mod:`gpt2cli.option_fields`). Light to import (no torch), for ``gpt2 export --help``."""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from pathlib import Path

from gpt2cli.option_fields import option


@dataclass
class ExportOptions:
    model: str  # the command's MODEL argument
    output: Path = option(
        MISSING,
        "The directory (hf) or file (gguf) to create; must not exist.",
        "-o",
        metavar="OUT",
        path=True,
        show_default=False,
    )
    format: str | None = option(  # None: gguf when OUT ends in .gguf, else hf
        None,
        "hf or gguf (default: gguf when OUT ends in .gguf, else hf).",
        "-f",
        metavar="FORMAT",
        show_default=False,
    )
    dtype: str | None = option(  # None: fp32 / f32
        None,
        "hf: fp32, fp16 or bf16; gguf: f32, f16 or q8_0 (default: fp32 / f32).",
        metavar="TYPE",
        show_default=False,
    )
