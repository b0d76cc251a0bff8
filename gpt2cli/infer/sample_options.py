"""The options of ``gpt2 sample`` that decide the text: each field is also its flag and --help
text (:mod:`gpt2cli.option_fields`). Light to import (no torch), for ``gpt2 sample --help``."""

from __future__ import annotations

from dataclasses import dataclass

from gpt2cli import option_fields
from gpt2cli.option_fields import option, positive


@dataclass
class SampleOptions:
    max_tokens: int = option(256, "Most tokens to generate per sample (> 0).", metavar="N")
    temperature: float = option(
        1.0, "Softmax temperature (>= 0; 0 means greedy).", "-t", metavar="T"
    )
    top_k: int | None = option(None, "Sample only from the K most likely tokens.", metavar="K")
    top_p: float | None = option(
        None,
        "Nucleus sampling: the smallest set of tokens with mass P, in (0, 1].",
        metavar="P",
    )
    greedy: bool = option(False, "Always take the most likely token (no sampling).")
    num_samples: int = option(
        1, "Samples per prompt, generated as one batch.", "-n", metavar="N", rule=positive
    )
    seed: int | None = option(  # None: a random one
        None,
        "Random seed: the same seed on the same device gives the same text (default: random, "
        "printed on stderr).",
        metavar="S",
    )
    stop: list[str] = option(
        help="End a sample at this string (not printed); repeatable.",
        metavar="TEXT",
        default_factory=list,
    )
    ignore_eot: bool = option(False, "Go on past <|endoftext|> (it is printed as text).")
    batch_size: int = option(
        16, "With --jsonl: most sequences generated together.", metavar="N", rule=positive
    )

    def check(self) -> None:
        """UsageError for values no run accepts."""
        from gpt2cli.infer import generation  # deferred: it imports torch

        generation.validate_options(self.max_tokens, self.temperature, self.top_k, self.top_p)
        option_fields.check(self)

    @property
    def prompts_per_batch(self) -> int:
        """Prompts generated together when there are many (each has ``num_samples`` rows)."""
        return max(1, self.batch_size // self.num_samples)
