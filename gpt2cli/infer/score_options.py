"""The options of ``gpt2 score``: each field is also its flag and --help text
(:mod:`gpt2cli.option_fields`), after the reading options it shares with ``gpt2 tokenize``
(:class:`~gpt2cli.text.read_options.ReadOptions`). Light to import (no torch), for --help."""

from __future__ import annotations

from dataclasses import dataclass

from gpt2cli import option_fields
from gpt2cli.errors import UsageError
from gpt2cli.option_fields import at_least, option
from gpt2cli.text.read_options import ReadOptions


@dataclass(frozen=True, kw_only=True)
class ScoreOptions(ReadOptions):
    # --model, --device and --dtype are those of every command that loads a model
    # (gpt2cli.commands.options).
    model: str
    device: str | None = None
    dtype: str | None = None
    batch_size: int = option(
        8,
        "Full-context windows per forward pass (shorter windows are packed more to a batch, "
        "within the same number of tokens).",
        "-b",
        rule=at_least(1),
    )
    stride: int | None = option(  # None: disjoint windows
        None,
        "Overlapping windows moving S tokens: every token is predicted with at least "
        "context-S tokens of context. Default: disjoint windows of the full context, as "
        "lm-evaluation-harness.",
        show_default=False,
        rule=at_least(1),
    )
    per_token: bool = option(False, "Add each token's id, text and log-probability.")
    summary: bool = option(False, "Write the corpus summary as the last JSON line too.")
    stream: bool = option(
        False,
        "Score all inputs as one sequence, documents joined by <|endoftext|>, in disjoint "
        "full-context windows: on an llm.c .bin file, the val loss llm.c and nanoGPT report.",
    )
    max_tokens: int | None = option(  # None: every token
        None,
        "With --stream: score only the first N tokens (llm.c's FineWeb val loss: 10485760).",
        show_default=False,
        rule=at_least(1),
    )

    def check(self) -> None:
        """UsageError for values no run accepts, before the model is loaded."""
        option_fields.check(self)
        if self.max_tokens is not None and not self.stream:
            raise UsageError("--max-tokens N goes with --stream")
