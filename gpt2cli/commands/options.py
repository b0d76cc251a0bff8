"""Options shared by several subcommands, defined once so their help never drifts apart."""

import typer

from gpt2cli.text.tokenizer import EOT_TEXT

# Reading documents (tokenize, score, overlap build/check): the formats of gpt2cli.text.readers.
FORMAT = typer.Option(
    None,
    "--format",
    "-f",
    help="Input format: jsonl, text, nul, file or parquet. Default: parquet for a Parquet "
    "file, jsonl for a name ending in .jsonl, .ndjson or .json or an input whose first "
    "non-blank character is '{', else text. gzip, zstd, xz and bzip2 input is recognised by "
    "its magic bytes and decompressed, on files and stdin.",
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
    help="fp32, bf16, fp16, or int8 (CPU only: 8-bit weights) (default: bf16 on GPU, fp32 "
    "on CPU). On a CPU, fp16/bf16/int8 are the weights' precision; activations stay fp32.",
    show_default=False,
)

# Corpus stages (gpt2 corpus VERB).
STATS_FILE = typer.Option(
    None,
    "--stats",
    help="Also write the stage's counters (documents in and out, drops by reason, MB/s) "
    "to this file as JSON.",
    show_default=False,
)
STRICT = typer.Option(
    False,
    "--strict",
    help="Stop at the first bad record instead of counting and skipping it.",
)
CORPUS_OUTPUT = typer.Option(
    None,
    "--output",
    "-o",
    help="Write the JSON Lines here (atomically) instead of stdout.",
    show_default=False,
)
EXCLUDE_DOMAIN = typer.Option(
    None,
    "--exclude-domain",
    help="Drop this domain and its subdomains (repeatable), e.g. wikipedia.org.",
    show_default=False,
)
EXCLUDE_DOMAIN_FILE = typer.Option(
    None,
    "--exclude-domain-file",
    help="Drop the domains listed in this file, one a line, # comments (repeatable).",
    show_default=False,
)
