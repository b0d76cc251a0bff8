"""Log-likelihoods under a GPT-2 model: windows, batching, per-token log-probabilities.

Terms. A *sequence* is a list of token ids ``tokens`` of which the positions
``first_scored .. len(tokens)-1`` are predicted ("scored"); the positions before are context
only. A document is scored as the sequence ``[<|endoftext|>] + ids`` with ``first_scored=1``,
so its first token is predicted from the end-of-text token, as lm-evaluation-harness does.
A log-likelihood request (context, continuation) is the sequence ``context + continuation``
with ``first_scored=len(context)``.

Windows. A model sees at most ``block_size`` (L) tokens. :func:`windows` covers the scored
positions of a sequence with windows of at most L input tokens; each scored position is scored
in exactly one window:

- the first window predicts the first L scored positions (or all, if fewer), from as much
  context before them as fits;
- with the default stride S = L, each following window predicts the next L positions
  (disjoint spans); the last one is right-aligned, so it sees L tokens of context in total.
  This is exactly lm-evaluation-harness's ``get_rolling_token_windows`` with
  ``context_len=1`` followed by ``make_disjoint_window``;
- with a stride S < L, each following window moves S positions and predicts only the S new
  ones, so every token after the first window is predicted with at least L − S tokens of
  context (more compute, lower perplexity).

Batching. :func:`score_spans` takes windows of many sequences, sorts them by length (longest
first), pads each batch on the right (harmless under causal attention) and returns, for every
window, the log-probability of each scored token (float64 numpy) and whether it was the
greedy argmax. The model is anything whose call ``model(idx)`` returns ``(logits, loss)`` with
logits (B, T, V) (``gpt2cli.model.gpt.GPT``) or an object with ``.logits`` (transformers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from gpt2cli.model.gpt import GPT
from gpt2cli.text.tokenizer import EOT

LN2 = math.log(2.0)
T = TypeVar("T")


@dataclass(frozen=True)
class Span:
    """One window of a sequence: inputs ``tokens[start:end]``, the last ``n_scored`` of which
    predict ``tokens[end - n_scored + 1 : end + 1]``."""

    start: int
    end: int
    n_scored: int


@dataclass(frozen=True)
class ScoringSettings:
    """How sequences are cut into windows and batched: ``stride`` as in :func:`windows`,
    the rest as in :func:`score_spans`."""

    batch_size: int = 8
    stride: int | None = None
    device: str | torch.device = "cpu"
    vocab_size: int | None = None
    on_batch: Callable[[int], None] | None = None
    token_budget: int | None = None


def windows(
    length: int, first_scored: int, block_size: int, stride: int | None = None
) -> list[Span]:
    """The windows that score positions ``first_scored .. length-1`` of a sequence of ``length``.

    See the module docstring. ``stride`` defaults to ``block_size`` (disjoint spans).
    """
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    stride = block_size if stride is None else stride
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be between 1 and the block size {block_size}")
    if first_scored < 1:
        raise ValueError("first_scored must be >= 1 (the first token has no context)")
    if first_scored >= length:
        return []
    last = min(length - 1, first_scored - 1 + block_size)
    spans = [Span(max(0, last - block_size), last, last - first_scored + 1)]
    while last < length - 1:
        new_last = min(length - 1, last + stride)
        spans.append(Span(max(0, new_last - block_size), new_last, new_last - last))
        last = new_last
    return spans


@dataclass
class SpanScore:
    logprobs: np.ndarray  # float64, one per scored token
    greedy: np.ndarray  # bool, whether each scored token was the argmax
    greedy_filtered: np.ndarray | None = None  # the same with ``exclude`` applied


def model_logits(model: Callable, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of ``model(idx)`` for our GPT (a tuple) or a transformers model."""
    out = model(idx)
    if isinstance(out, tuple):
        return out[0]
    return out.logits


def selected_logits(
    model: Callable, idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Logits (N, V) at positions (rows[i], cols[i]) of ``idx`` (B, T).

    For ``gpt2cli.model.gpt.GPT`` the output layer runs only at those positions (a log-likelihood
    request scores a few tokens of a long context: this skips most of the 50257-wide matmul);
    other models run their full forward.
    """
    if isinstance(model, GPT):
        return model.logits(model.hidden_states(idx)[rows, cols])
    return model_logits(model, idx)[rows, cols]


def _batches(
    order: list[int], lengths: Sequence[int], batch_size: int, token_budget: int | None
) -> Iterator[list[int]]:
    """Consecutive runs of ``order`` (longest first): ``batch_size`` rows, or more while the
    padded batch stays within ``token_budget`` tokens."""
    begin = 0
    while begin < len(order):
        width = max(1, lengths[order[begin]])
        rows = batch_size
        if token_budget is not None:
            rows = max(batch_size, token_budget // width)
        yield order[begin : begin + rows]
        begin += rows


def score_spans(
    model: Callable,
    requests: Sequence[tuple[Sequence[int], Span]],
    settings: ScoringSettings = ScoringSettings(),
    exclude: Sequence[int] | None = None,
    exclude_rows: Sequence[bool] | None = None,
) -> list[SpanScore]:
    """Score each (tokens, span) request; results come back in the order of the requests.

    A forward pass takes ``batch_size`` windows, or with ``token_budget`` as many more short
    windows as fit in that many (padded) tokens: LAMBADA-length requests then run dozens to
    a batch for the memory of ``batch_size`` full-context windows.

    ``vocab_size`` cuts padded vocabulary rows off the logits before the softmax.
    ``on_batch(n_windows)`` is called after every forward pass (progress).
    ``exclude``: also report ``greedy_filtered``, where these token ids never count as the
    argmax at the first scored position of the requests flagged in ``exclude_rows`` (all when
    None) -- the LAMBADA stop-word filter.
    """
    batch_size, device, vocab_size = settings.batch_size, settings.device, settings.vocab_size
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    lengths = [span.end - span.start for _, span in requests]
    order = sorted(range(len(requests)), key=lambda i: -lengths[i])
    results: list[SpanScore | None] = [None] * len(requests)
    with torch.inference_mode():
        for chunk in _batches(order, lengths, batch_size, settings.token_budget):
            width = max(requests[i][1].end - requests[i][1].start for i in chunk)
            batch = np.zeros((len(chunk), width), dtype=np.int64)
            rows: list[tuple[int, int, np.ndarray]] = []  # (first row position, n, targets)
            for row, i in enumerate(chunk):
                tokens, span = requests[i]
                n_in = span.end - span.start
                batch[row, :n_in] = np.asarray(tokens[span.start : span.end], dtype=np.int64)
                targets = np.asarray(
                    tokens[span.end - span.n_scored + 1 : span.end + 1], dtype=np.int64
                )
                rows.append((n_in - span.n_scored, span.n_scored, targets))
            idx = torch.from_numpy(batch).to(device)
            # Every scored position of the batch, gathered into one (N, V) matrix.
            row_index = torch.from_numpy(
                np.concatenate([np.full(n, r) for r, (_, n, _) in enumerate(rows)])
            ).to(device)
            col_index = torch.from_numpy(
                np.concatenate([np.arange(p, p + n) for p, n, _ in rows])
            ).to(device)
            targets_all = torch.from_numpy(np.concatenate([t for _, _, t in rows])).to(device)
            picked = selected_logits(model, idx, row_index, col_index)
            if vocab_size is not None and picked.shape[-1] > vocab_size:
                picked = picked[..., :vocab_size]
            picked = picked.float()
            logprobs = torch.log_softmax(picked, dim=-1)
            chosen = logprobs.gather(1, targets_all[:, None])[:, 0]
            greedy = picked.argmax(dim=-1) == targets_all
            filtered_np = None
            if exclude:
                firsts = np.cumsum([0] + [n for _, n, _ in rows[:-1]]).tolist()
                firsts = [
                    f for f, i in zip(firsts, chunk) if exclude_rows is None or exclude_rows[i]
                ]
                filtered = greedy.clone()
                if firsts:
                    masked = picked[firsts].clone()
                    masked[:, torch.as_tensor(list(exclude), device=masked.device)] = -math.inf
                    index = torch.as_tensor(firsts, device=greedy.device)
                    filtered[index] = masked.argmax(dim=-1) == targets_all[index]
                filtered_np = filtered.cpu().numpy()
            chosen_np = chosen.double().cpu().numpy()
            greedy_np = greedy.cpu().numpy()
            at = 0
            for i, (_, n, _) in zip(chunk, rows):
                results[i] = SpanScore(
                    chosen_np[at : at + n],
                    greedy_np[at : at + n],
                    filtered_np[at : at + n] if filtered_np is not None else None,
                )
                at += n
            if settings.on_batch is not None:
                settings.on_batch(len(chunk))
    return results  # type: ignore[return-value]


@dataclass
class SequenceScore:
    logprobs: np.ndarray  # float64, one per scored token, in order
    greedy: np.ndarray  # bool
    greedy_filtered: np.ndarray | None = None  # with ``exclude`` applied (when given)

    @property
    def total(self) -> float:
        return float(math.fsum(self.logprobs.tolist()))

    @property
    def all_greedy(self) -> bool:
        return bool(self.greedy.all())


def score_sequences(
    model: Callable,
    sequences: Sequence[tuple[Sequence[int], int]],
    block_size: int,
    settings: ScoringSettings = ScoringSettings(),
    exclude: Sequence[int] | None = None,
) -> list[SequenceScore]:
    """Score many (tokens, first_scored) sequences, batching their windows together.

    ``exclude``: token ids not counted as the argmax at each sequence's first scored token
    (in ``greedy_filtered``).
    """
    requests: list[tuple[Sequence[int], Span]] = []
    owners: list[int] = []
    firsts: list[bool] = []
    for number, (tokens, first_scored) in enumerate(sequences):
        for k, span in enumerate(windows(len(tokens), first_scored, block_size, settings.stride)):
            requests.append((tokens, span))
            owners.append(number)
            firsts.append(k == 0)
    scores = score_spans(model, requests, settings, exclude, firsts)
    parts: list[list[SpanScore]] = [[] for _ in sequences]
    for owner, score in zip(owners, scores):
        parts[owner].append(score)
    out = []
    for pieces in parts:
        if pieces:
            filtered = [p.greedy_filtered for p in pieces]
            out.append(
                SequenceScore(
                    np.concatenate([p.logprobs for p in pieces]),
                    np.concatenate([p.greedy for p in pieces]),
                    None if any(f is None for f in filtered) else np.concatenate(filtered),
                )
            )
        else:
            out.append(SequenceScore(np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool)))
    return out


def score_documents(
    model: Callable,
    documents: Sequence[Sequence[int]],
    block_size: int,
    settings: ScoringSettings = ScoringSettings(),
    prefix: int = EOT,
) -> list[SequenceScore]:
    """Per-token log-probabilities of whole documents, each predicted after ``prefix``."""
    sequences = [([prefix, *list(doc)], 1) for doc in documents]
    return score_sequences(model, sequences, block_size, settings)


def count_windows(lengths: Iterable[int], block_size: int, stride: int | None = None) -> int:
    """How many windows documents of these token lengths take (for progress totals)."""
    return sum(len(windows(n + 1, 1, block_size, stride)) for n in lengths)


def chunked(
    items: Iterable[T], size: int, weight: Callable[[T], int] | None = None
) -> Iterator[list[T]]:
    """Lists of consecutive items, each closed once it weighs ``size`` (each item weighs
    ``weight(item)``, default 1: lists of up to ``size`` items)."""
    chunk: list[T] = []
    total = 0
    for item in items:
        chunk.append(item)
        total += 1 if weight is None else weight(item)
        if total >= size:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


@dataclass
class DocumentMetrics:
    """The per-document figures ``gpt2 score`` writes (None where undefined: empty text)."""

    tokens: int
    characters: int
    bytes: int
    words: int
    nll: float  # nats, summed over tokens
    ppl: float | None  # per token
    bits_per_byte: float | None
    word_ppl: float | None

    def as_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "characters": self.characters,
            "bytes": self.bytes,
            "words": self.words,
            "nll": self.nll,
            "ppl": self.ppl,
            "bits_per_byte": self.bits_per_byte,
            "word_ppl": self.word_ppl,
        }


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def document_metrics(
    nll: float, tokens: int, characters: int, n_bytes: int, words: int
) -> DocumentMetrics:
    return DocumentMetrics(
        tokens=tokens,
        characters=characters,
        bytes=n_bytes,
        words=words,
        nll=nll,
        ppl=_safe_exp(nll / tokens) if tokens else None,
        bits_per_byte=nll / n_bytes / LN2 if n_bytes else None,
        word_ppl=_safe_exp(nll / words) if words else None,
    )
