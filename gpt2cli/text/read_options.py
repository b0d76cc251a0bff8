"""How a command reads documents (:mod:`gpt2cli.text.readers`): the --format, --field,
--delimiter and --errors options of every command that reads them (tokenize, score, overlap
build and check), declared once (:mod:`gpt2cli.option_fields`). A command's options dataclass
extends :class:`ReadOptions`. Light to import, for --help."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpt2cli.option_fields import option
from gpt2cli.text.tokenizer import EOT_TEXT

if TYPE_CHECKING:
    from gpt2cli.text.readers import Document, Piece


@dataclass(frozen=True)
class ReadOptions:
    format: str | None = option(  # None: detected per input
        None,
        "Input format: jsonl, text, nul, file or parquet. Default: parquet for a Parquet "
        "file, jsonl for a name ending in .jsonl, .ndjson or .json or an input whose first "
        "non-blank character is '{', else text. gzip, zstd, xz and bzip2 input is recognised "
        "by its magic bytes and decompressed, on files and stdin.",
        "-f",
        show_default=False,
    )
    field: str = option("text", "JSON field (or Parquet column) that holds the text.")
    delimiter: str = option(
        EOT_TEXT, "For --format text: a line holding only this string ends a document."
    )
    errors: str = option(
        "strict", "Invalid UTF-8: strict (stop with an error), replace (U+FFFD) or ignore."
    )

    def check_format(self) -> None:
        """UsageError for a --format that is not one of readers.FORMATS."""
        from gpt2cli.text import readers

        readers.check_format(self.format)

    def pieces(self, inputs: Iterable[str]) -> Iterator[Piece]:
        """:func:`gpt2cli.text.readers.iter_pieces` of ``inputs``, read as these options say."""
        from gpt2cli.text import readers

        return readers.iter_pieces(inputs, self)

    def documents(self, inputs: Iterable[str]) -> Iterator[Document]:
        """:func:`gpt2cli.text.readers.iter_documents` of ``inputs``."""
        from gpt2cli.text import readers

        return readers.iter_documents(inputs, self)
