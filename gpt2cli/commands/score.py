"""``gpt2 score``: per-document log-likelihoods, perplexities and bits per byte (JSON Lines)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import typer

from gpt2cli import console
from gpt2cli.commands import options
from gpt2cli.errors import UsageError
from gpt2cli.fileio import open_binary_input
from gpt2cli.text import readers, token_stream
from gpt2cli.text.tokenizer import decode_bytes, encode, get_encoding

NAME = "score"
CHUNK_TOKENS = 1 << 18  # documents are read and scored in chunks of about this many tokens


@dataclass
class _Doc:
    ids: list[int]
    text: str
    source: str
    line: int | None


def _documents(
    inputs: list[str], fmt: str | None, field: str, delimiter: str, errors: str
) -> Iterator[_Doc]:
    for name in inputs:
        handle = open_binary_input(name)
        source = "<stdin>" if name == "-" else name
        peek = getattr(handle, "peek", None)
        head = peek(len(token_stream.MAGIC))[: len(token_stream.MAGIC)] if peek else b""
        if token_stream.looks_like_token_stream(head):
            try:
                for array in token_stream.TokenStreamReader(handle, source):
                    ids = array.tolist()
                    yield _Doc(ids, decode_bytes(ids).decode("utf-8", "replace"), source, None)
            finally:
                if handle is not sys.stdin.buffer:
                    handle.close()
            continue
        if handle is not sys.stdin.buffer:
            handle.close()
        for document in readers.iter_documents([name], fmt, field, delimiter, errors):
            yield _Doc(encode(document.text), document.text, document.source, document.line)


def _chunks(documents: Iterator[_Doc]) -> Iterator[list[_Doc]]:
    chunk: list[_Doc] = []
    tokens = 0
    for document in documents:
        chunk.append(document)
        tokens += len(document.ids) + 1
        if tokens >= CHUNK_TOKENS:
            yield chunk
            chunk, tokens = [], 0
    if chunk:
        yield chunk


def _dumps(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False)


def _clean(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def score_command(
    inputs: list[str],
    model_spec: str,
    device: str | None,
    dtype: str | None,
    batch_size: int,
    stride: int | None,
    per_token: bool,
    summary_json: bool,
    fmt: str | None,
    field: str,
    delimiter: str,
    errors: str,
) -> None:
    timer = console.Stopwatch()
    # Deferred: every gpt2 command imports this module at start-up, and these import torch.
    from gpt2cli.evaluate.language_model import LanguageModel
    from gpt2cli.infer import scoring
    from gpt2cli.model.resolve import resolve_device

    lm = LanguageModel.load(
        model_spec, device=resolve_device(device), dtype=dtype, batch_size=batch_size
    )
    if stride is not None and not 1 <= stride <= lm.block_size:
        raise UsageError(f"--stride must be between 1 and the model's context {lm.block_size}")
    lm.stride = stride
    encoding = get_encoding() if per_token else None
    total_docs = total_tokens = total_bytes = total_words = total_chars = 0
    total_nll = 0.0
    out = sys.stdout
    with console.progress() as bar:
        task = bar.add_task("score", total=None, status="")
        for chunk in _chunks(_documents(inputs, fmt, field, delimiter, errors)):
            scores = lm.score_documents([d.ids for d in chunk])
            for document, score in zip(chunk, scores):
                nll = 0.0 - score.total
                n_bytes = len(document.text.encode("utf-8"))
                words = len(document.text.split())
                metrics = scoring.document_metrics(
                    nll, len(document.ids), len(document.text), n_bytes, words
                )
                record: dict = {"document": total_docs + 1, "source": document.source}
                if document.line is not None:
                    record["line"] = document.line
                record.update(metrics.as_dict())
                for key in ("ppl", "word_ppl"):
                    record[key] = _clean(record[key])
                if per_token and encoding is not None:
                    record["per_token"] = [
                        {
                            "id": token,
                            "text": encoding.decode_single_token_bytes(token).decode(
                                "utf-8", "replace"
                            ),
                            "logprob": float(logprob),
                        }
                        for token, logprob in zip(document.ids, score.logprobs.tolist())
                    ]
                out.write(_dumps(record) + "\n")
                total_docs += 1
                total_tokens += len(document.ids)
                total_bytes += n_bytes
                total_words += words
                total_chars += len(document.text)
                total_nll += nll
            out.flush()
            bar.update(task, status=f"{total_docs:,} docs {total_tokens:,} tokens")
    corpus = scoring.document_metrics(
        total_nll, total_tokens, total_chars, total_bytes, total_words
    )
    seconds = timer.seconds
    if summary_json:
        record = {
            "summary": True,
            "documents": total_docs,
            **corpus.as_dict(),
            "seconds": round(seconds, 3),
        }
        for key in ("ppl", "word_ppl"):
            record[key] = _clean(record[key])
        out.write(_dumps(record) + "\n")
        out.flush()
    figures = (
        f"token ppl {corpus.ppl:.4f}, {corpus.bits_per_byte:.4f} bits/byte"
        if corpus.ppl is not None and corpus.bits_per_byte is not None
        else "no tokens"
    )
    console.info(
        f"gpt2 score: {total_docs:,} documents, {total_tokens:,} tokens, {figures} "
        f"({seconds:.1f} s, {total_tokens / seconds:,.0f} tokens/s)"
    )


def register(app: typer.Typer) -> None:
    @app.command(NAME)
    def score(
        files: list[str] = typer.Argument(
            None,
            help="Documents (same formats as `gpt2 tokenize`) or a token stream; '-' or "
            "none reads stdin.",
            show_default=False,
        ),
        model: str = typer.Option(
            ...,
            "--model",
            "-m",
            help=options.MODEL_HELP,
            show_default=False,
        ),
        device: str = options.DEVICE,
        dtype: str = options.DTYPE,
        batch_size: int = typer.Option(
            8,
            "--batch-size",
            "-b",
            help="Full-context windows per forward pass (shorter windows are packed more to a "
            "batch, within the same number of tokens).",
        ),
        stride: int = typer.Option(
            None,
            "--stride",
            help="Overlapping windows moving S tokens: every token is predicted with at least "
            "context-S tokens of context. Default: disjoint windows of the full context, as "
            "lm-evaluation-harness.",
            show_default=False,
        ),
        per_token: bool = typer.Option(
            False, "--per-token", help="Add each token's id, text and log-probability."
        ),
        summary: bool = typer.Option(
            False, "--summary", help="Write the corpus summary as the last JSON line too."
        ),
        fmt: str = options.FORMAT,
        field: str = options.FIELD,
        delimiter: str = options.DELIMITER,
        errors: str = options.ERRORS,
    ) -> None:
        """Score documents under a model: one JSON line per document with tokens, characters,
        bytes, words, nll (nats), ppl (per token), bits_per_byte and word_ppl. Every token is
        predicted once, the first from <|endoftext|>; long documents use rolling windows.
        A corpus summary goes to stderr."""
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if stride is not None and stride < 1:
            raise UsageError("--stride must be at least 1")
        score_command(
            files or ["-"],
            model,
            device,
            dtype,
            batch_size,
            stride,
            per_token,
            summary,
            fmt,
            field,
            delimiter,
            errors,
        )
