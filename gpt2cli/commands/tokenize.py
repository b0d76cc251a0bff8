"""``gpt2 tokenize``: documents → binary token stream (or JSON Lines of ids), and back."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

import typer

from gpt2cli import console
from gpt2cli.commands import options
from gpt2cli.errors import Gpt2Error, malformed_json
from gpt2cli.fileio import atomic_write, binary_stdout, check_output_file, open_binary_input
from gpt2cli.text import token_stream
from gpt2cli.text.parallel_encoder import default_threads, encode_pieces
from gpt2cli.text.tokenize_options import TokenizeOptions
from gpt2cli.text.tokenizer import EOT_TEXT, get_encoding

NAME = "tokenize"
DOC_SEPARATOR = f"\n{EOT_TEXT}\n".encode()


def _output(stack: ExitStack, output: Path | None, binary: bool) -> BinaryIO:
    if output is not None:
        return stack.enter_context(atomic_write(output, "wb"))
    if binary:
        return binary_stdout("a binary token stream", "pipe it into `gpt2 pack`, or use --ids")
    return sys.stdout.buffer


def _input_size(inputs: list[str]) -> int | None:
    if any(name == "-" for name in inputs):
        return None
    try:
        return sum(Path(name).stat().st_size for name in inputs)
    except OSError:
        return None


def encode_command(inputs: list[str], options: TokenizeOptions) -> None:
    timer = console.Stopwatch()
    ids = options.ids
    pieces = options.pieces(inputs)
    documents = tokens = text_bytes = 0
    with ExitStack() as stack:
        out = _output(stack, options.output, binary=not ids)
        if not ids:
            out.write(token_stream.HEADER)
        bar = stack.enter_context(console.progress())
        task = bar.add_task("tokenize", total=_input_size(inputs), status="")
        current: list[int] = []
        for batch in encode_pieces(pieces, options.threads or default_threads()):
            if ids:
                for piece_ids, last in zip(batch.ids, batch.last):
                    current.extend(
                        piece_ids.tolist() if hasattr(piece_ids, "tolist") else piece_ids
                    )
                    if last:
                        out.write(json.dumps(current, separators=(",", ":")).encode() + b"\n")
                        current = []
            else:
                out.write(batch.stream_bytes())
            documents += sum(batch.last)
            tokens += sum(len(piece_ids) for piece_ids in batch.ids)
            text_bytes += batch.text_bytes
            bar.update(task, completed=text_bytes, status=f"{documents:,} docs {tokens:,} tokens")
        out.flush()
    seconds = timer.seconds
    summary = (
        f"gpt2 tokenize: {documents:,} documents, {tokens:,} tokens, "
        f"{text_bytes / 1e6:,.1f} MB in {seconds:.1f} s ({text_bytes / 1e6 / seconds:,.1f} MB/s)"
    )
    if documents == 0:
        summary += " (empty input: zero documents)"
    console.info(summary)


def _decode_ids_lines(handle: BinaryIO, name: str, out: BinaryIO) -> int:
    encoding = get_encoding()
    count = 0
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            ids = json.loads(line)
        except UnicodeDecodeError:
            raise Gpt2Error(
                f"{name}: line {number}: not UTF-8: neither a token stream nor --ids lines"
            ) from None
        except json.JSONDecodeError as error:
            raise malformed_json(name, number, error) from None
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and 0 <= i < encoding.n_vocab for i in ids
        ):
            raise Gpt2Error(f"{name}: line {number}: expected a JSON array of token ids")
        if count:
            out.write(DOC_SEPARATOR)
        out.write(encoding.decode_bytes(ids))
        count += 1
    return count


def decode_command(inputs: list[str], output: Path | None) -> None:
    encoding = get_encoding()
    count = 0
    with ExitStack() as stack:
        out = _output(stack, output, binary=False)
        for name in inputs:
            handle = open_binary_input(name)
            source = "<stdin>" if name == "-" else name
            head = (
                handle.peek(len(token_stream.MAGIC))[: len(token_stream.MAGIC)]
                if hasattr(handle, "peek")
                else b""
            )
            if token_stream.looks_like_token_stream(head):
                for document in token_stream.TokenStreamReader(handle, source):
                    if count:
                        out.write(DOC_SEPARATOR)
                    out.write(encoding.decode_bytes(document.tolist()))
                    count += 1
            else:
                count += _decode_ids_lines(handle, source, out)
        out.flush()
    console.info(f"gpt2 tokenize --decode: {count:,} documents")


def register(app: typer.Typer) -> None:
    @app.command(NAME)
    @options.with_fields(TokenizeOptions, {"format": "files"})
    def tokenize(
        files: list[str] = typer.Argument(
            None, help="Input files; '-' or none reads stdin.", show_default=False
        ),
        **given: Any,
    ) -> None:
        """Turn documents into a GPT-2 token stream.

        Reads documents (JSON Lines, delimited text, NUL-separated records or one file per
        document) and writes a binary token stream for `gpt2 pack`: uint16 ids, each document
        ended by <|endoftext|> (50256). Ids equal tiktoken's "gpt2" encoding; a literal
        "<|endoftext|>" in the text is encoded as ordinary text. Encoding runs on --threads
        threads while reading and writing stream in bounded memory. A summary line (documents,
        tokens, bytes, MB/s) goes to stderr."""
        inputs = files or ["-"]
        settings = options.build(TokenizeOptions, given)
        settings.check()
        if settings.output is not None:
            check_output_file(settings.output)
        if settings.decode:
            decode_command(inputs, settings.output)
        else:
            encode_command(inputs, settings)
