"""The model as evaluation tasks see it: log-likelihoods, rolling NLL, generation.

:class:`LanguageModel` wraps a loaded model (``gpt2cli.model.resolve.LoadedModel``, or any module
whose call returns ``(logits, loss)`` or a transformers output) and answers the requests
lm-evaluation-harness's ``LM`` interface answers, with the same conventions:

- ``loglikelihood([(context, continuation), ...])``: trailing spaces of the context move to
  the continuation; the continuation's tokens are those of ``encode(context + continuation)``
  after the context's tokens; an empty context becomes ``<|endoftext|>``; a context too long
  for the model is cut from the left. Returns ``(sum of log-probs, all tokens greedy)``.
- ``rolling_nll(text)``: the negative log-likelihood (nats) of a whole document predicted after
  ``<|endoftext|>`` in rolling windows (see :mod:`gpt2cli.infer.scoring`).
- ``generate(prompts, max_tokens, until)``: greedy (or top-k sampled) continuations cut at the
  first stop string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gpt2cli.errors import UsageError
from gpt2cli.infer import scoring
from gpt2cli.model import resolve
from gpt2cli.model.gpt import GPT
from gpt2cli.text.tokenizer import EOT, encode


@dataclass(eq=False)
class LanguageModel:
    model: Callable = field(repr=False)
    block_size: int
    device: str | torch.device = "cpu"
    batch_size: int = 8
    vocab_size: int = 50257
    stride: int | None = None
    loaded: Any = field(default=None, repr=False)  # the LoadedModel, when there is one (identity)
    on_batch: Callable[[int], None] | None = None  # progress: windows done per forward pass

    def use_stride(self, stride: int | None) -> None:
        """Score documents in overlapping windows moving ``stride`` tokens (None: disjoint)."""
        if stride is not None and not 1 <= stride <= self.block_size:
            raise UsageError(
                f"--stride must be between 1 and the model's context {self.block_size}"
            )
        self.stride = stride

    @property
    def token_budget(self) -> int:
        """Tokens per forward pass: ``batch_size`` full-context windows' worth (shorter
        windows are packed more to a batch)."""
        return self.batch_size * self.block_size

    @classmethod
    def from_loaded(
        cls, loaded: Any, device: str | torch.device = "cpu", batch_size: int = 8
    ) -> LanguageModel:
        config = loaded.config
        model = loaded.model
        model.eval()
        return cls(
            model,
            block_size=config.block_size,
            device=device,
            batch_size=batch_size,
            vocab_size=config.vocab_size,
            loaded=loaded,
        )

    @classmethod
    def load(
        cls,
        spec: str,
        device: str | torch.device = "cpu",
        dtype: str | None = None,
        batch_size: int = 8,
    ) -> LanguageModel:
        loaded = resolve.load_model(spec, device=device, dtype=dtype)
        return cls.from_loaded(loaded, device=device, batch_size=batch_size)

    # ------------------------------------------------------------------ log-likelihoods

    @staticmethod
    def encode_pair(context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of (context, continuation) exactly as lm-evaluation-harness splits them."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        if context == "":
            return [EOT], encode(continuation)
        whole = encode(context + continuation)
        context_ids = encode(context)
        return context_ids, whole[len(context_ids) :]

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], exclude: Sequence[int] | None = None
    ) -> list[tuple[float, bool]]:
        """(sum of log-probs of the continuation, whether every token was the argmax).

        ``exclude``: token ids that never count as the argmax for the continuation's first
        token (the greedy check only; the log-probs are unchanged)."""
        return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in requests], exclude)

    def loglikelihood_tokens(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        exclude: Sequence[int] | None = None,
    ) -> list[tuple[float, bool]]:
        """Like :meth:`loglikelihood` on token ids. An empty context becomes [EOT];
        an empty continuation gives (0.0, True)."""
        scores = self._loglikelihood_scores(requests, exclude)
        if exclude:
            return [(score.total, bool(score.greedy_filtered.all())) for score in scores]
        return [(score.total, score.all_greedy) for score in scores]

    def loglikelihood_filtered(
        self, requests: Sequence[tuple[str, str]], exclude: Sequence[int]
    ) -> list[tuple[float, bool, bool]]:
        """(log-prob, greedy, greedy with ``exclude`` barred from the first token), one pass."""
        scores = self._loglikelihood_scores([self.encode_pair(c, x) for c, x in requests], exclude)
        return [
            (score.total, score.all_greedy, bool(score.greedy_filtered.all())) for score in scores
        ]

    def _loglikelihood_scores(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        exclude: Sequence[int] | None,
    ) -> list[scoring.SequenceScore]:
        sequences = []
        for context, continuation in requests:
            if not context:
                context = [EOT]
            tokens = [*context, *continuation]
            # Keep only what the scoring windows can use: a right-aligned window of block_size
            # inputs (lm-eval: (context + continuation)[-(max_length + 1):][:-1]).
            cut = max(0, min(len(tokens) - self.block_size - 1, len(context) - 1))
            sequences.append((tokens[cut:], len(context) - cut))
        return scoring.score_sequences(
            self.model, sequences, self.block_size, self._scoring(stride=None), exclude
        )

    def score_documents(self, documents: Sequence[Sequence[int]]) -> list[scoring.SequenceScore]:
        """Per-token log-probs of whole documents (rolling windows, ``self.stride``)."""
        return scoring.score_documents(
            self.model, documents, self.block_size, self._scoring(self.stride)
        )

    def _scoring(self, stride: int | None) -> scoring.ScoringSettings:
        return scoring.ScoringSettings(
            self.batch_size, stride, self.device, self.vocab_size, self.on_batch, self.token_budget
        )

    def rolling_nll(self, text: str) -> tuple[float, int]:
        """(negative log-likelihood in nats, number of tokens) of a whole document."""
        ids = encode(text)
        score = self.score_documents([ids])[0]
        return -score.total, len(ids)

    def rolling_nll_many(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """:meth:`rolling_nll` of many documents, their windows batched together."""
        all_ids = [encode(text) for text in texts]
        scores = self.score_documents(all_ids)
        return [(-score.total, len(ids)) for score, ids in zip(scores, all_ids)]

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompts: Sequence[str],
        max_tokens: int,
        until: Sequence[str] = (),
        greedy: bool = True,
        top_k: int | None = None,
        seed: int = 0,
    ) -> list[str]:
        """Continuations of each prompt: at most ``max_tokens`` tokens, cut before the first
        of ``until`` and at <|endoftext|>. Prompts longer than the context keep their last
        tokens. Greedy unless ``greedy=False`` (then top-k sampling at temperature 1)."""
        from gpt2cli.infer import generation

        prompt_ids = [encode(prompt) for prompt in prompts]
        settings = generation.SamplingSettings(
            max_tokens, greedy=greedy, top_k=top_k, stop=list(until), seed=seed
        )
        if isinstance(self.model, GPT):
            completions = generation.generate(
                self.model, prompt_ids, settings, batch_size=self.batch_size
            )
        else:
            completions = generation.generate_uncached(
                self._next_logits, prompt_ids, self.block_size, settings
            )
        return [completion.text for completion in completions]

    def _next_logits(self, window: list[int]) -> torch.Tensor:
        """Logits (1, V) on the CPU of the token after ``window``, by a full forward pass."""
        idx = torch.tensor([window], dtype=torch.long, device=self.device)
        return scoring.model_logits(self.model, idx)[:, -1, : self.vocab_size].float().cpu()
