"""GPT-2, exactly as released: the config, the sizes, the blocks. No I/O, no training code.

The module follows nanoGPT: learned position embeddings, pre-LayerNorm blocks and a final
LayerNorm, GELU in its tanh form, the output projection tied to the token embedding. Submodules
are named like Hugging Face's ``GPT2LMHeadModel`` (``transformer.h.N.attn.c_attn`` ...) so that
released weights map by name; the linear layers are ``nn.Linear`` here, whose weights are the
transpose of Hugging Face's ``Conv1D`` (``gpt2cli.model.hf`` transposes on the way in and out).
One difference from nanoGPT: ``forward(idx)`` without targets gives every position's logits.

Attention goes through ``F.scaled_dot_product_attention`` (flash attention on GPU). The one seam
to the CPU kernels is ``Linear`` (an ``nn.Linear``, same parameters) and ``cross_entropy`` from
``gpt2cli.model.cpu_kernels``: torch's own off the CPU. Decoding with a KV cache (the cache, the
attention masks, the CPU's one-position step) is ``gpt2cli.model.decoding``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.model.cpu_kernels import Linear, cross_entropy
from gpt2cli.model.sizes import SIZE_ALIASES, SIZE_LIST

if TYPE_CHECKING:
    from gpt2cli.model.decoding import KVCache

GPT2_VOCAB_SIZE = 50257


@dataclass
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int = 1024
    vocab_size: int = GPT2_VOCAB_SIZE
    # Pad the embedding rows (and the logits computed) to this many, for faster matmuls; the
    # extra logits are sliced off, so no output changes. None: no padding.
    padded_vocab_size: int | None = None
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise Gpt2Error(f"model config: {name} must be a positive integer, not {value!r}")
        if self.n_embd % self.n_head:
            raise Gpt2Error(
                f"model config: n_embd {self.n_embd} is not divisible by n_head {self.n_head}"
            )
        if self.padded_vocab_size is not None and self.padded_vocab_size < self.vocab_size:
            raise Gpt2Error(
                f"model config: padded_vocab_size {self.padded_vocab_size} is smaller than "
                f"vocab_size {self.vocab_size}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise Gpt2Error(f"model config: dropout must be in [0, 1), not {self.dropout}")
        if not 0.0 < self.layer_norm_epsilon < 1.0:  # nan would make every output nan
            raise Gpt2Error(
                f"model config: layer_norm_epsilon must be in (0, 1), not {self.layer_norm_epsilon}"
            )

    @property
    def embedding_rows(self) -> int:
        """Rows of the token embedding (and columns of the logits before slicing)."""
        return self.padded_vocab_size or self.vocab_size

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GPTConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise Gpt2Error(
                f"model config: unknown key(s) {', '.join(unknown)}",
                f"known keys: {', '.join(sorted(known))}",
            )
        try:
            return cls(**values)
        except TypeError as error:  # a required key is missing
            raise Gpt2Error(f"model config: {error}") from None

    def with_padding(self, multiple: int = 64) -> GPTConfig:
        """This config with the vocabulary padded up to a multiple of ``multiple``."""
        padded = (self.vocab_size + multiple - 1) // multiple * multiple
        return dataclasses.replace(self, padded_vocab_size=padded)


# The four released sizes (GPT-2 paper table 2, with the parameter counts as released) and small
# shapes for tests and CPU runs; their other names are in gpt2cli.model.sizes.
SIZES: dict[str, GPTConfig] = {
    "124m": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "355m": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "774m": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "1.5b": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=128),
    "mini": GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=256),
}


def config_for_size(name: str) -> GPTConfig:
    """The config of a size given by any of its names (``124m``, ``small``, ``xl``, ``tiny``...)."""
    key = SIZE_ALIASES.get(name.strip().lower())
    if key is None:
        raise UsageError(
            f"unknown model size {name!r}",
            f"sizes: {SIZE_LIST}",
        )
    return dataclasses.replace(SIZES[key])


@dataclass(frozen=True)
class Attend:
    """What attention sees besides the sequence itself, for decoding
    (``gpt2cli.model.decoding``): with a ``cache``, the keys and values so far as well;
    ``mask`` (bool, True = attend), when given, replaces the causal mask (``causal`` False)."""

    cache: KVCache | None = None
    mask: torch.Tensor | None = None
    causal: bool = True


CAUSAL = Attend()  # a whole sequence, each position attending to those before it


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads
        self.c_proj = Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, layer: int = 0, attend: Attend = CAUSAL) -> torch.Tensor:
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if attend.cache is not None:
            k, v = attend.cache.update(layer, k, v)  # (B, nh, S, hs), S = positions so far
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend.mask, dropout_p=dropout, is_causal=attend.causal
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, layer: int = 0, attend: Attend = CAUSAL) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layer, attend)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    # Training switch, not part of the config: keep only each block's input and recompute its
    # activations in the backward (less memory for about a third more compute).
    recompute: bool = False

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.embedding_rows, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
            )
        )
        self.lm_head = Linear(config.n_embd, config.embedding_rows, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied
        if not self.lm_head.weight.is_meta:  # built on "meta" to load weights: nothing to init
            self.init_weights()

    @classmethod
    def without_weights(cls, config: GPTConfig) -> GPT:
        """The model with every tensor on the "meta" device (no memory, no init): to count
        parameters, or to fill with ``load_state_dict(..., assign=True)``."""
        layers = (nn.Linear, nn.Embedding, nn.LayerNorm)
        saved = [(layer, layer.reset_parameters) for layer in layers]
        try:
            for layer in layers:  # skip the default init: slow on "meta" the first time
                layer.reset_parameters = lambda self: None  # type: ignore[method-assign]
            with torch.device("meta"):
                return cls(config)
        finally:
            for layer, reset in saved:
                layer.reset_parameters = reset  # type: ignore[method-assign]

    def init_weights(self) -> None:
        """GPT-2's initialization: N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer)),
        biases 0, LayerNorm weights 1."""
        config = self.config
        self.apply(self._init_weights)
        # GPT-2 paper: residual projections scaled by 1/sqrt(N), N = 2 per layer.
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(parameter, mean=0.0, std=residual_std)
        with torch.no_grad():
            self.transformer.wte.weight[config.vocab_size :].zero_()  # padding rows, never used

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters (the tied embedding counted once, padding rows not counted).

        ``non_embedding=True`` leaves out the position embedding (nanoGPT's convention: the token
        embedding stays in because it is also the output layer).
        """
        total = sum(p.numel() for p in self.parameters())
        total -= (self.config.embedding_rows - self.config.vocab_size) * self.config.n_embd
        if non_embedding:
            total -= self.transformer.wpe.weight.numel()
        return total

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward) at context ``seq_len``.

        ``6 N + 12 L H Q T`` (PaLM appendix B, as in nanoGPT's ``estimate_mfu``): N non-embedding
        parameters (matmuls: 2 FLOPs per multiply-add, x3 for forward + backward), plus attention
        scores and weighted values for L layers, H heads of size Q over T positions.
        """
        cfg = self.config
        T = seq_len or cfg.block_size
        return 6 * self.num_parameters(non_embedding=True) + 12 * cfg.n_layer * cfg.n_embd * T

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab_size) for ids (B, T); mean cross-entropy if targets are given
        (positions with target -1 are ignored)."""
        x = self.hidden_states(idx)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, embedding_rows)
        loss = None
        if targets is not None:
            # Padding columns take no probability mass: the loss equals the unpadded one.
            V = self.config.vocab_size
            loss = cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), V)
        return self.without_padding(logits), loss

    def hidden_states(
        self,
        idx: torch.Tensor,
        pos: torch.Tensor | None = None,
        attend: Attend = CAUSAL,
    ) -> torch.Tensor:
        """The final hidden states (B, T, C) of ids (B, T), before the output layer.

        ``pos``: position ids, (T,) or (B, T), by default 0..T-1. ``attend`` is for decoding
        (``gpt2cli.model.decoding``).
        """
        if pos is None:
            T = idx.size(1)
            if T > self.config.block_size:
                raise Gpt2Error(
                    f"sequence of {T} tokens is longer than the model's context "
                    f"{self.config.block_size}"
                )
            pos = torch.arange(0, T, dtype=torch.long, device=idx.device)  # (T,)
        tok_emb = self.transformer.wte(idx)  # token embeddings (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # position embeddings (T, C) or (B, T, C)
        x = self.transformer.drop(tok_emb + pos_emb)
        recompute = self.recompute and attend.cache is None and torch.is_grad_enabled()
        for layer, block in enumerate(self.transformer.h):
            if recompute:
                x = checkpoint(block, x, layer, attend, use_reentrant=False)
            else:
                x = block(x, layer, attend)
        return self.transformer.ln_f(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (..., vocab_size) of hidden states (..., C): the output layer, run only on
        the states given (scoring a few positions skips most of its matmul)."""
        return self.without_padding(self.lm_head(x))

    def without_padding(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits without the padding columns of the output layer."""
        V = self.config.vocab_size
        return logits[..., :V] if logits.size(-1) != V else logits
