"""Options shared by several subcommands, defined once so their help never drifts apart."""

import typer

from gpt2cli.text.tokenizer import EOT_TEXT

# Reading documents (tokenize, score, overlap build/check): the formats of gpt2cli.text.readers.
FORMAT = typer.Option(
    None,
    "--format",
    "-f",
    help="Input format: jsonl, text, nul, file or parquet. Default: parquet for a Parquet "
    "file, jsonl when the input starts with '{', else text. gzip, zstd, xz and bzip2 input "
    "is recognised by its magic bytes and decompressed, on files and stdin.",
    show_default=False,
)
FIELD = typer.Option("text", "--field", help="JSON field (or Parquet column) that holds the text.")
DELIMITER = typer.Option(
    EOT_TEXT,
    "--delimiter",
    help="For --format text: a line holding only this string ends a document.",
)
ERRORS = typer.Option(
    "strict",
    "--errors",
    help="Invalid UTF-8: strict (stop with an error), replace (U+FFFD) or ignore.",
)

# Loading a model (sample, score, eval).
MODEL_HELP = (
    "A run directory (its newest complete checkpoint), a checkpoint directory, an HF-layout "
    "directory, or an HF model name in the local cache."
)
DEVICE = typer.Option(
    None,
    "--device",
    help="cpu, cuda, cuda:N or mps (default: cuda when available).",
    show_default=False,
)
DTYPE = typer.Option(
    None,
    "--dtype",
    help="fp32, bf16 or fp16 (default: bf16 on GPU, fp32 on CPU).",
    show_default=False,
)
