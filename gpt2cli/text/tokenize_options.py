"""The options of ``gpt2 tokenize``: each field is also its flag and --help text
(:mod:`gpt2cli.option_fields`), after the reading options
(:class:`~gpt2cli.text.read_options.ReadOptions`). Light to import, for --help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpt2cli import option_fields
from gpt2cli.errors import UsageError
from gpt2cli.option_fields import option
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.tokenizer import EOT_TEXT


def _all_cores_or_count(threads: int) -> str | None:
    return None if threads >= 0 else "0 (all cores) or a positive number"


@dataclass(frozen=True)
class TokenizeOptions(ReadOptions):
    ids: bool = option(False, "Write JSON Lines, one array of ids per document.")
    decode: bool = option(
        False,
        "Decode a token stream (or --ids lines) back to text; documents are separated by a "
        f"line holding only {EOT_TEXT}.",
        "-d",
    )
    threads: int = option(  # 0: all cores
        0, "Encoding threads (0: all cores).", "-t", show_default=False, rule=_all_cores_or_count
    )
    output: Path | None = option(  # None: stdout
        None, "Write here (atomically) instead of stdout.", "-o", path=True, show_default=False
    )

    def check(self) -> None:
        """UsageError for values or flags that do not go together, before any work."""
        option_fields.check(self)
        if self.decode and self.ids:
            raise UsageError(
                "--decode and --ids do not go together", "--decode reads --ids lines by itself"
            )
