"""``gpt2 score``: per-document log-likelihoods, perplexities and bits per byte (JSON Lines)."""

from __future__ import annotations

import math
import sys
from typing import Any

import typer

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.infer.score_options import ScoreOptions
from gpt2cli.text.tokenizer import get_encoding

NAME = "score"


def _dumps(value: dict) -> str:
    return jsonio.dumps(value, ensure_ascii=False)


def score_command(inputs: list[str], options: ScoreOptions) -> None:
    options.check()
    timer = console.Stopwatch()
    from gpt2cli.evaluate.language_model import LanguageModel
    from gpt2cli.infer import document_scores
    from gpt2cli.model.resolve import resolve_device

    lm = LanguageModel.load(
        options.model,
        device=resolve_device(options.device),
        dtype=options.dtype,
        batch_size=options.batch_size,
    )
    lm.use_stride(options.stride)
    encoding = get_encoding() if options.per_token else None
    totals = document_scores.Totals()
    out = sys.stdout
    documents = document_scores.read_documents(inputs, options)
    if options.stream:
        documents = document_scores.joined(documents, options.max_tokens)
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
                if encoding is not None:
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
    if options.summary:
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
    @options.with_fields(ScoreOptions, {"format": "dtype", "batch_size": "dtype"})
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
        **given: Any,
    ) -> None:
        """Score documents under a model: one JSON line per document with tokens, characters,
        bytes, words, nll (nats), ppl (per token), bits_per_byte and word_ppl. Every token is
        predicted once, the first from <|endoftext|>; long documents use rolling windows.
        Token streams and llm.c .bin token files are read as they are. A corpus summary
        goes to stderr."""
        loading = {"model": model, "device": device, "dtype": dtype}
        score_command(files or ["-"], options.build(ScoreOptions, {**given, **loading}))
