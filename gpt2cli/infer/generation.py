"""Text generation with a KV cache: the core of ``gpt2 sample`` and of eval's generation tasks.

:func:`generate` runs many sequences as one batch (prompts of different lengths are left-padded
and masked), never recomputes the prefix (the keys/values live in a preallocated
:class:`~gpt2cli.model.decoding.KVCache`), picks tokens greedily or by sampling with temperature,
top-k and top-p from a seeded ``torch.Generator`` (same seed, same device, same batch -> same text).

A sequence ends at ``<|endoftext|>`` (unless ``ignore_eot``), at the first stop string (the text
is cut before it), or after ``max_new_tokens``. A prompt longer than the context keeps its last
``block_size`` tokens; generation past the context slides the window: when the cache is full the
keys/values are recomputed for the last 3/4 of the context and generation goes on from there.

Text is decoded incrementally (a multi-byte character split over tokens is emitted whole) and
streamed through ``on_text(row, piece)``; text that could be the start of a stop string is held
back until it is known not to be one.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.model import decoding
from gpt2cli.model.cpu_kernels import prepare_output_layer
from gpt2cli.model.gpt import GPT
from gpt2cli.text.tokenizer import EOT, token_bytes


@dataclass
class Completion:
    """One generated continuation."""

    prompt_index: int  # which prompt of the call
    sample_index: int  # which of its num_samples
    prompt_ids: list[int]  # the prompt as the model saw it (truncated, or [EOT] if it was empty)
    ids: list[int] = field(default_factory=list)  # generated ids, without a final <|endoftext|>
    text: str = ""  # generated text, cut before a stop string
    finish_reason: str = "length"  # "eot", "stop" or "length"
    prompt_truncated: int = 0  # tokens dropped from the front of a prompt longer than the context

    @property
    def completion_tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class SamplingSettings:
    """How :func:`generate` and :func:`generate_uncached` pick and end continuations."""

    max_new_tokens: int = 256
    greedy: bool = False  # or temperature == 0: the most likely token
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: Sequence[str] = ()
    ignore_eot: bool = False
    seed: int | None = None

    def check(self) -> None:
        validate_options(self.max_new_tokens, self.temperature, self.top_k, self.top_p)

    def pick(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return pick_tokens(logits, self.greedy, self.temperature, self.top_k, self.top_p, generator)


def validate_options(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    """UsageError for values no sampler accepts."""
    if max_new_tokens <= 0:
        raise UsageError(f"--max-tokens must be positive, not {max_new_tokens}")
    if not 0 <= temperature < math.inf:
        raise UsageError(
            f"--temperature must be a finite number >= 0, not {temperature}", "0 means greedy"
        )
    if top_k is not None and top_k <= 0:
        raise UsageError(f"--top-k must be positive, not {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise UsageError(f"--top-p must be in (0, 1], not {top_p}")


def pick_tokens(
    logits: torch.Tensor,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next ids (B,) from logits (B, V): argmax, or a sample from the filtered distribution."""
    lowest, highest = torch.aminmax(logits)  # NaN in either if any is NaN: ~15x isfinite's speed
    if not (math.isfinite(lowest.item()) and math.isfinite(highest.item())):
        raise Gpt2Error(
            "the model's next-token logits are not finite (NaN or inf): nothing to sample from",
            "the weights are damaged, or overflow in this dtype: try --dtype fp32",
        )
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens before it already hold top_p of the mass (keeps >= 1).
        drop = probs.cumsum(dim=-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class _Row:
    """The decoding state of one sequence: ids, text, stop-string search, streaming."""

    def __init__(
        self,
        completion: Completion,
        row: int,
        stop: Sequence[str],
        on_text: Callable[[int, str], None] | None,
    ) -> None:
        self.completion = completion
        self.row = row
        self.tokens = list(completion.prompt_ids)  # everything the model has seen or will see
        self.stop = [s for s in stop if s]
        self.longest_stop = max((len(s) for s in self.stop), default=0)
        self.on_text = on_text
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.full = ""  # decoded generated text so far
        self.emitted = 0  # characters of self.full handed to on_text
        self.done = False

    def _emit(self, upto: int) -> None:
        if upto > self.emitted:
            if self.on_text is not None:
                self.on_text(self.row, self.full[self.emitted : upto])
            self.emitted = upto

    def _held_back(self) -> int:
        """Length of the longest end of the text that may be the start of a stop string."""
        for length in range(min(self.longest_stop - 1, len(self.full)), 0, -1):
            tail = self.full[-length:]
            if any(s.startswith(tail) for s in self.stop):
                return length
        return 0

    def finish(self, reason: str) -> None:
        if not self.done:
            if reason != "stop":
                self.full += self.decoder.decode(b"", final=True)
                self.completion.text = self.full
                self._emit(len(self.full))
            self.completion.finish_reason = reason
            self.done = True

    def add(self, token: int, ignore_eot: bool, last: bool) -> None:
        if token == EOT and not ignore_eot:
            self.finish("eot")
            return
        self.completion.ids.append(token)
        self.tokens.append(token)
        before = len(self.full)
        self.full += self.decoder.decode(token_bytes(token))
        if self.stop:
            start = max(0, before - self.longest_stop + 1)
            found = [i for i in (self.full.find(s, start) for s in self.stop) if i >= 0]
            if found:
                cut = min(found)
                self.completion.text = self.full[:cut]
                self._emit(cut)
                self.finish("stop")
                return
        if last:
            self.finish("length")
            return
        self.completion.text = self.full
        self._emit(len(self.full) - self._held_back())


def _left_pad(sequences: list[list[int]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """A (B, T) id matrix of left-padded sequences and the padding counts (B,)."""
    width = max(len(s) for s in sequences)
    pads = [width - len(s) for s in sequences]
    ids = torch.tensor([[EOT] * p + s for p, s in zip(pads, sequences)], dtype=torch.long)
    return ids.to(device), torch.tensor(pads, dtype=torch.long, device=device)


def _prefill(model: GPT, sequences: list[list[int]], max_len: int) -> tuple:
    """A fresh cache holding ``sequences`` (left-padded) and the logits of their last position."""
    device = model.transformer.wte.weight.device
    ids, pads = _left_pad(sequences, device)
    cache = decoding.new_cache(
        model, len(sequences), max_len, pad=pads if any(pads.tolist()) else None
    )
    return cache, decoding.forward_cached(model, ids, cache)


@torch.inference_mode()
def _generate_batch(
    model: GPT,
    rows: list[_Row],
    settings: SamplingSettings,
    generator: torch.Generator | None,
    on_done: Callable[[Completion], None] | None,
) -> None:
    max_new_tokens = settings.max_new_tokens
    block = model.config.block_size
    longest_prompt = max(len(r.tokens) for r in rows)
    max_len = min(block, longest_prompt + max_new_tokens)
    keep = max(1, block - block // 4)  # context kept when the window slides
    cache, logits = _prefill(model, [r.tokens for r in rows], max_len)
    active = rows
    for step in range(max_new_tokens):
        next_ids = settings.pick(logits, generator)
        last = step == max_new_tokens - 1
        for row, token in zip(active, next_ids.tolist()):
            row.add(token, settings.ignore_eot, last)
            if row.done and on_done is not None:
                on_done(row.completion)
        if last:
            break
        still = [i for i, row in enumerate(active) if not row.done]
        if not still:
            break
        if len(still) < len(active):
            index = torch.tensor(still, device=next_ids.device)
            cache.select(index)
            if cache.pad is not None and not bool(cache.pad.any()):
                cache.pad = None
            next_ids = next_ids.index_select(0, index)
            active = [active[i] for i in still]
        if cache.length >= cache.max_len:
            # The window is full: recompute the cache for the last `keep` positions of each row.
            shift = cache.length + 1 - keep
            pads = cache.pad.tolist() if cache.pad is not None else [0] * len(active)
            windows = [r.tokens[-(keep - max(p - shift, 0)) :] for r, p in zip(active, pads)]
            cache, logits = _prefill(model, windows, block)
        else:
            logits = decoding.forward_cached(model, next_ids[:, None], cache)


def prepare_model(model: GPT, rows: int) -> None:
    """Lay out the model's weights for generating ``rows`` sequences at a time
    (``cpu_kernels.prepare_output_layer``). Values never change; a transposition costs a copy
    of the matrix (~0.15 s for 124M), once per model, not per call."""
    prepare_output_layer(model.transformer.wte.weight, rows)


def generate(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    settings: SamplingSettings,
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    on_text: Callable[[int, str], None] | None = None,
    on_done: Callable[[Completion], None] | None = None,
) -> list[Completion]:
    """Continuations of token-id prompts: ``num_samples`` per prompt, in prompt order.

    Rows (prompt i, sample j) are numbered ``i * num_samples + j``; ``on_text(row, piece)`` gets
    their text as it is generated, ``on_done(completion)`` each completion as it ends. Rows are
    generated in batches of ``batch_size`` (default: all at once). An empty prompt starts from
    ``<|endoftext|>``. ``settings.seed`` (or an explicit ``generator`` on the model's device)
    makes sampling repeatable.
    """
    settings.check()
    if num_samples <= 0:
        raise UsageError(f"--num-samples must be positive, not {num_samples}")
    device = model.transformer.wte.weight.device
    if generator is None and settings.seed is not None:
        generator = torch.Generator(device=device).manual_seed(settings.seed)
    block = model.config.block_size
    completions: list[Completion] = []
    rows: list[_Row] = []
    for i, prompt in enumerate(prompts):
        ids = [int(t) for t in prompt] or [EOT]
        dropped = max(0, len(ids) - block)
        for j in range(num_samples):
            completion = Completion(i, j, ids[dropped:], prompt_truncated=dropped)
            completions.append(completion)
            rows.append(_Row(completion, len(rows), settings.stop, on_text))
    step = batch_size or max(1, len(rows))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), step):
            _generate_batch(model, rows[start : start + step], settings, generator, on_done)
    finally:
        model.train(was_training)
    return completions


@torch.inference_mode()
def generate_uncached(
    next_logits: Callable[[list[int]], torch.Tensor],
    prompts: Sequence[Sequence[int]],
    block_size: int,
    settings: SamplingSettings,
) -> list[Completion]:
    """:func:`generate` for a model without a KV cache (a foreign model): one sequence at a
    time, one full forward pass per token. ``next_logits(window)`` gives the logits (1, V), on
    the CPU, of the token after ``window`` (its last ``block_size`` ids at most). One sample per
    prompt; ``settings.seed`` seeds a CPU generator shared by the prompts in turn."""
    settings.check()
    seed, steps = settings.seed, settings.max_new_tokens
    generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
    completions: list[Completion] = []
    for i, prompt in enumerate(prompts):
        ids = [int(t) for t in prompt] or [EOT]
        dropped = max(0, len(ids) - block_size)
        completion = Completion(i, 0, ids[dropped:], prompt_truncated=dropped)
        row = _Row(completion, i, settings.stop, None)
        for step in range(steps):
            logits = next_logits(row.tokens[-block_size:])
            token = settings.pick(logits, generator)
            row.add(int(token[0]), settings.ignore_eot, step == steps - 1)
            if row.done:
                break
        completions.append(completion)
    return completions
