"""``gpt2 export``: a model as a complete Hugging Face repository or a GGUF file for llama.cpp."""

from __future__ import annotations

from typing import Any

import typer

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.model.export_options import ExportOptions

NAME = "export"

HELP = """Export a model as a complete Hugging Face repository or a GGUF file for llama.cpp.

MODEL is what --model takes elsewhere: a run directory (its newest complete checkpoint), a
checkpoint, an HF-layout directory, or an HF model name in the local cache.

--format hf writes a directory that transformers (AutoTokenizer, pipeline), vLLM and llama.cpp's
converter load: config.json, generation_config.json, model.safetensors and the tokenizer files
(vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json); --dtype fp32, fp16 or
bf16. --format gguf writes one file for llama.cpp, ollama and LM Studio (llama.cpp's "gpt2"
architecture, with the tokenizer); --dtype f32, f16 or q8_0 (8-bit blocks). The default format
is gguf when OUT ends in .gguf, else hf.

OUT must not exist. It is written under a temporary name beside it and renamed when complete:
an error (a full disk) leaves nothing behind.
"""


def register(app: typer.Typer) -> None:
    @app.command(NAME, help=HELP)
    @options.with_fields(ExportOptions, {"output": "model"})
    def export(
        model: str = typer.Argument(..., metavar="MODEL", help=options.MODEL_HELP),
        as_json: bool = options.switch("--json", help="Print the summary as JSON on stdout."),
        **given: Any,
    ) -> None:
        from gpt2cli.model.export import export as export_model

        report = export_model(options.build(ExportOptions, {**given, "model": model}))
        if as_json:
            print(jsonio.dumps(report.to_dict(), indent=2))
        console.info(
            f"gpt2 export: {report.model} → {report.output} ({report.format} {report.dtype}, "
            f"{report.tensors} tensors, {report.bytes / 1e6:,.1f} MB) in {report.seconds:.1f} s"
        )
