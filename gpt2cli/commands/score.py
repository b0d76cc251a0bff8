"""``gpt2 score``: per-document log-likelihoods, perplexities and bits per byte (JSON Lines)."""

from __future__ import annotations

import math
import sys

import typer

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.errors import UsageError
from gpt2cli.text.tokenizer import get_encoding

NAME = "score"


def _dumps(value: dict) -> str:
    return jsonio.dumps(value, ensure_ascii=False)


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
    stream: bool = False,
    max_tokens: int | None = None,
) -> None:
    timer = console.Stopwatch()
    # Deferred: these import torch, which `gpt2 score --help` does not need.
    from gpt2cli.evaluate.language_model import LanguageModel
    from gpt2cli.infer import document_scores
    from gpt2cli.model.resolve import resolve_device

    lm = LanguageModel.load(
        model_spec, device=resolve_device(device), dtype=dtype, batch_size=batch_size
    )
    lm.use_stride(stride)
    encoding = get_encoding() if per_token else None
    totals = document_scores.Totals()
    out = sys.stdout
    documents = document_scores.read_documents(inputs, fmt, field, delimiter, errors)
    if stream:
        documents = document_scores.joined(documents, max_tokens)
    non_finite = 0
    with console.progress() as bar:
        task = bar.add_task("score", total=None, status="")
        for chunk in document_scores.score_corpus(lm.score_documents, documents, totals):
            for scored in chunk:
                document = scored.document
                record: dict = {"document": scored.number, "source": document.source}
                if document.line is not None:
                    record["line"] = document.line
                record.update(scored.metrics.as_dict())
                if not math.isfinite(scored.metrics.nll):
                    non_finite += 1
                if per_token and encoding is not None:
                    record["per_token"] = [
                        {
                            "id": token,
                            "text": encoding.decode_single_token_bytes(token).decode(
                                "utf-8", "replace"
                            ),
                            "logprob": float(logprob),
                        }
                        for token, logprob in zip(document.ids, scored.score.logprobs.tolist())
                    ]
                out.write(_dumps(record) + "\n")
            out.flush()
            bar.update(task, status=f"{totals.documents:,} docs {totals.tokens:,} tokens")
    summary = totals.metrics()
    seconds = timer.seconds
    if summary_json:
        record = {
            "summary": True,
            "documents": totals.documents,
            **summary.as_dict(),
            "seconds": round(seconds, 3),
        }
        out.write(_dumps(record) + "\n")
        out.flush()
    if non_finite:
        console.warn(
            NAME,
            f"{non_finite:,} of {totals.documents:,} documents have a non-finite log-likelihood "
            "(NaN or inf, written as null): the model's weights are damaged or overflow in "
            "this dtype",
        )
    figures = (
        f"loss {summary.nll / summary.tokens:.4f} nats/token, token ppl {summary.ppl:.4f}, "
        f"{summary.bits_per_byte:.4f} bits/byte"
        if summary.ppl is not None and summary.bits_per_byte is not None
        else "no tokens"
    )
    console.info(
        f"gpt2 score: {totals.documents:,} documents, {totals.tokens:,} tokens, {figures} "
        f"({seconds:.1f} s, {totals.tokens / seconds:,.0f} tokens/s)"
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
        model: str = options.model_option(),
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
        stream: bool = typer.Option(
            False,
            "--stream",
            help="Score all inputs as one sequence, documents joined by <|endoftext|>, in "
            "disjoint full-context windows: on an llm.c .bin file, the val loss llm.c and "
            "nanoGPT report.",
        ),
        max_tokens: int = typer.Option(
            None,
            "--max-tokens",
            help="With --stream: score only the first N tokens (llm.c's FineWeb val loss: "
            "10485760).",
            show_default=False,
        ),
        fmt: str = options.FORMAT,
        field: str = options.FIELD,
        delimiter: str = options.DELIMITER,
        errors: str = options.ERRORS,
    ) -> None:
        """Score documents under a model: one JSON line per document with tokens, characters,
        bytes, words, nll (nats), ppl (per token), bits_per_byte and word_ppl. Every token is
        predicted once, the first from <|endoftext|>; long documents use rolling windows.
        Token streams and llm.c .bin token files are read as they are. A corpus summary
        goes to stderr."""
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if stride is not None and stride < 1:
            raise UsageError("--stride must be at least 1")
        if max_tokens is not None and (max_tokens < 1 or not stream):
            raise UsageError("--max-tokens N goes with --stream and must be at least 1")
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
            stream,
            max_tokens,
        )
