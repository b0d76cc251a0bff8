"""GPT-2, exactly as released: the config, the sizes, the blocks. No I/O, no training code.

The module follows nanoGPT: learned position embeddings, pre-LayerNorm blocks and a final
LayerNorm, GELU in its tanh form, the output projection tied to the token embedding. Submodules
are named like Hugging Face's ``GPT2LMHeadModel`` (``transformer.h.N.attn.c_attn`` ...) so that
released weights map by name; the linear layers are ``nn.Linear`` here, whose weights are the
transpose of Hugging Face's ``Conv1D`` (``gpt2cli.model.hf`` transposes on the way in and out).

Attention goes through ``F.scaled_dot_product_attention`` (flash attention on GPU). For generation,
``GPT.forward_cached`` runs new tokens against a preallocated :class:`KVCache`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt2cli.errors import Gpt2Error, UsageError

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
# shapes for tests and CPU runs.
SIZES: dict[str, GPTConfig] = {
    "124m": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "355m": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "774m": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "1.5b": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=128),
    "mini": GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=256),
}

SIZE_ALIASES: dict[str, str] = {
    "124m": "124m",
    "117m": "124m",
    "small": "124m",
    "gpt2": "124m",
    "355m": "355m",
    "345m": "355m",
    "medium": "355m",
    "gpt2-medium": "355m",
    "774m": "774m",
    "762m": "774m",
    "large": "774m",
    "gpt2-large": "774m",
    "1.5b": "1.5b",
    "1558m": "1.5b",
    "1542m": "1.5b",
    "xl": "1.5b",
    "gpt2-xl": "1.5b",
    "tiny": "tiny",
    "mini": "mini",
}


def config_for_size(name: str) -> GPTConfig:
    """The config of a size given by any of its names (``124m``, ``small``, ``xl``, ``tiny``...)."""
    key = SIZE_ALIASES.get(name.strip().lower())
    if key is None:
        raise UsageError(
            f"unknown model size {name!r}",
            "sizes: 124m/117m/small/gpt2, 355m/345m/medium, 774m/762m/large, "
            "1.5b/1558m/1542m/xl, tiny, mini",
        )
    return dataclasses.replace(SIZES[key])


class KVCache:
    """Keys and values of every layer for a batch of sequences, preallocated to ``max_len``.

    ``length`` positions are filled. Rows may be left-padded: ``pad[b]`` leading positions of row
    ``b`` are padding, never attended to, and the row's position ids start after them.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        pad: torch.Tensor | None = None,
    ) -> None:
        self.max_len = max_len or config.block_size
        shape = (batch_size, config.n_head, self.max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0
        self.pad = pad.to(device) if pad is not None else None
        # Set by GPT.forward_cached for the current step.
        self._mask: torch.Tensor | None = None
        self._causal = False

    @property
    def batch_size(self) -> int:
        return self.k[0].shape[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Store the new keys/values (B, nh, T, hs); return all keys/values so far."""
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length : end] = k
        self.v[layer][:, :, self.length : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. the sequences still being generated)."""
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        if self.pad is not None:
            self.pad = self.pad.index_select(0, rows)


_FEW_ROWS = 64


def _onednn_linear() -> Any:
    """oneDNN's linear on dense tensors (the op torch.compile's CPU backend calls), if present."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise.default
        probe = op(torch.ones(1, 2), torch.ones(3, 2), torch.ones(3), "none", [], "")
    except (AttributeError, RuntimeError, TypeError):  # absent, or another signature
        return None
    return op if probe.tolist() == [[3.0, 3.0, 3.0]] else None


_ONEDNN_LINEAR = _onednn_linear()


def cpu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` of (rows, in) on a CPU, by the fastest kernel for the number of rows.

    CPU BLAS computes rows x weight^T for 2 to 64 rows (a decoding step's batch) up to 3x slower
    than weight x rows^T; a single row without autograd goes through oneDNN, whose kernel
    streams the weights near the memory bandwidth (~1.5x BLAS's matrix-vector product).
    """
    rows = x.shape[0]
    if not 0 < rows <= _FEW_ROWS:
        return F.linear(x, weight, bias)
    if (
        rows == 1
        and _ONEDNN_LINEAR is not None
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
    ):
        return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")
    if rows == 1:
        y = torch.mv(weight, x[0]) if bias is None else torch.addmv(bias, weight, x[0])
        return y[None]
    y = torch.mm(weight, x.t()) if bias is None else torch.addmm(bias[:, None], weight, x.t())
    return y.t().contiguous()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters) that takes :func:`cpu_linear`'s kernels on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        y = cpu_linear(x.reshape(-1, self.in_features), self.weight, self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads
        self.c_proj = Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is None:
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            k, v = cache.update(layer, k, v)  # (B, nh, S, hs), S = positions so far
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=cache._mask, is_causal=cache._causal
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
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

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        x = x + self.mlp(self.ln_2(x))
        return x


_CE_ROWS = 16


class _CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over rows of logits (targets of -1 ignored) in fewer memory passes.

    ``F.cross_entropy`` writes the log-softmax in the forward, and in the backward fills a zero
    gradient, scatters into it and reads the log-softmax back: on a CPU, where a (tokens x 50257)
    matrix lives in main memory, those passes cost as much as the output matmul. Here the forward
    keeps only the log-sum-exp per row, and the backward writes softmax x scale in one pass
    (the scale folded into the exponent) and subtracts at the targets. Columns from ``classes``
    on (padding of the output layer) take no probability and get a zero gradient.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, targets: torch.Tensor, classes: int
    ) -> torch.Tensor:
        # Row chunks small enough for the cache, so logsumexp's temporaries never reach memory.
        lse = torch.cat(
            [torch.logsumexp(rows[:, :classes], dim=-1) for rows in logits.split(_CE_ROWS)]
        )
        valid = targets >= 0
        safe = targets.clamp(min=0)
        picked = logits.gather(1, safe[:, None]).squeeze(1)
        count = valid.sum().clamp(min=1).to(logits.dtype)
        ctx.save_for_backward(logits, lse, safe, valid, count)
        ctx.classes = classes
        return torch.where(valid, lse - picked, 0.0).sum() / count

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits, lse, safe, valid, count = ctx.saved_tensors
        classes = ctx.classes
        scale = torch.where(valid, grad / count, 0.0)  # (N,)
        negative = bool((scale < 0).any())
        # softmax * scale = exp(logits - lse + log scale); log 0 = -inf gives 0
        shift = lse if negative else lse - torch.log(scale)
        out = torch.empty_like(logits)
        for start in range(0, logits.shape[0], _CE_ROWS):
            rows = slice(start, start + _CE_ROWS)
            torch.sub(logits[rows], shift[rows, None], out=out[rows])
            out[rows].exp_()
        if negative:
            out.mul_(scale[:, None])
        out[:, classes:] = 0.0
        out.scatter_add_(1, safe[:, None], -scale[:, None])
        return out, None, None


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, classes: int | None = None
) -> torch.Tensor:
    """Mean cross-entropy of (N, C) logits against (N,) targets, -1 ignored; only the first
    ``classes`` columns count (the rest is padding), all of them by default.

    On CUDA ``F.cross_entropy`` (which torch.compile fuses); elsewhere :class:`_CrossEntropy`,
    which gives the same loss and gradient with less memory traffic.
    """
    classes = logits.shape[-1] if classes is None else classes
    if logits.is_cuda or logits.dtype != torch.float32:
        if classes != logits.shape[-1]:
            logits = logits[:, :classes]
        return F.cross_entropy(logits, targets, ignore_index=-1)
    return _CrossEntropy.apply(logits, targets, classes)


class GPT(nn.Module):
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

    def _trunk(self, idx: torch.Tensor, pos: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer)
        return self.transformer.ln_f(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits_of(self.lm_head(x))

    def _logits_of(self, full: torch.Tensor) -> torch.Tensor:
        """The logits without the padding columns of the output layer."""
        V = self.config.vocab_size
        return full[..., :V] if full.shape[-1] != V else full

    def _check_length(self, T: int) -> None:
        if T > self.config.block_size:
            raise Gpt2Error(
                f"sequence of {T} tokens is longer than the model's context "
                f"{self.config.block_size}"
            )

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab_size) for ids (B, T); mean cross-entropy if targets are given
        (positions with target -1 are ignored)."""
        B, T = idx.shape
        self._check_length(T)
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self._trunk(idx, pos, None)  # (B, T, C)
        full = self.lm_head(x)  # (B, T, embedding_rows)
        V = self.config.vocab_size
        loss = None
        if targets is not None:
            # Padding columns take no probability mass: the loss equals the unpadded one.
            loss = cross_entropy(full.view(-1, full.size(-1)), targets.reshape(-1), V)
        return self._logits_of(full), loss

    def forward_at(self, idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Logits (N, vocab_size) at positions (rows[i], cols[i]) of ids (B, T) only: the
        output layer, most of a small model's work, runs just where a score is needed."""
        self._check_length(idx.shape[1])
        pos = torch.arange(idx.shape[1], dtype=torch.long, device=idx.device)  # (T,)
        hidden = self._trunk(idx, pos, None)  # (B, T, C)
        return self._logits(hidden[rows, cols])

    def forward_last(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, vocab_size) of the last position only."""
        B, T = idx.shape
        self._check_length(T)
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self._trunk(idx, pos, None)
        return self._logits(x[:, -1, :])

    def new_cache(
        self, batch_size: int, max_len: int | None = None, pad: torch.Tensor | None = None
    ) -> KVCache:
        """An empty KV cache on the model's device and dtype (``max_len`` <= block_size)."""
        weight = self.transformer.wte.weight
        max_len = min(max_len or self.config.block_size, self.config.block_size)
        return KVCache(self.config, batch_size, max_len, weight.device, weight.dtype, pad)

    def output_layer_column_major(self, column_major: bool = True) -> None:
        """Store the tied token embedding / output layer column-major (a transposed view of a
        contiguous (C, rows) tensor), or back row-major: same parameter, same values.

        A CPU computes one row of logits ~1.3x faster from the column-major layout (it streams
        the matrix as the rows of x @ W^T), but several rows ~2x slower; training keeps the
        row-major layout that distributed data parallel and the optimizers expect.
        """
        weight = self.transformer.wte.weight
        if (weight.stride() == (1, weight.shape[0])) == column_major:
            return
        with torch.no_grad():  # lm_head shares this Parameter
            transposed = weight.data.t().contiguous().t()
            weight.data = transposed if column_major else weight.data.contiguous()

    def _decode_cpu(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, vocab_size) of one new position per row (no padding), on a CPU, without
        autograd or dropout: ``_trunk`` and ``_logits`` in functional calls on the parameters,
        because at batch 1 the module calls and reshapes cost about a tenth of a 124M step."""
        config, modules = self.config, self.transformer
        C, eps, t = config.n_embd, config.layer_norm_epsilon, cache.length
        B = ids.shape[0]
        heads = (B, config.n_head, 1, config.head_dim)
        x = modules.wte.weight[ids] + modules.wpe.weight[t]  # (B, C)
        for layer, block in enumerate(modules.h):
            attn, mlp = block.attn, block.mlp
            h = F.layer_norm(x, (C,), block.ln_1.weight, block.ln_1.bias, eps)
            q, k, v = cpu_linear(h, attn.c_attn.weight, attn.c_attn.bias).split(C, dim=1)
            k, v = cache.update(layer, k.view(heads), v.view(heads))
            # One query, the newest position: it attends to every cached one, no mask.
            y = F.scaled_dot_product_attention(q.view(heads), k, v).view(B, C)
            x = x + cpu_linear(y, attn.c_proj.weight, attn.c_proj.bias)
            h = F.layer_norm(x, (C,), block.ln_2.weight, block.ln_2.bias, eps)
            h = F.gelu(cpu_linear(h, mlp.c_fc.weight, mlp.c_fc.bias), approximate="tanh")
            x = x + cpu_linear(h, mlp.c_proj.weight, mlp.c_proj.bias)
        cache.length = t + 1
        x = F.layer_norm(x, (C,), modules.ln_f.weight, modules.ln_f.bias, eps)
        return self._logits_of(cpu_linear(x, self.lm_head.weight, None))

    def forward_cached(
        self, idx: torch.Tensor, cache: KVCache, last_only: bool = True
    ) -> torch.Tensor:
        """Run new ids (B, T) after the ``cache.length`` positions already in ``cache``.

        Appends their keys/values to the cache and returns the logits of the last position
        (B, vocab_size), or of every new position (B, T, vocab_size) with ``last_only=False``.
        Padded rows (``cache.pad``) give garbage logits at their padding positions.
        """
        B, T = idx.shape
        start = cache.length
        end = start + T
        if end > cache.max_len:
            raise Gpt2Error(f"KV cache full: {start} + {T} positions > {cache.max_len}")
        if (
            T == 1
            and cache.pad is None
            and idx.device.type == "cpu"
            and not self.training
            and not torch.is_grad_enabled()
        ):
            logits = self._decode_cpu(idx[:, 0], cache)
            return logits if last_only else logits[:, None]
        device = idx.device
        queries = torch.arange(start, end, dtype=torch.long, device=device)  # (T,)
        pos = queries
        cache._mask, cache._causal = None, False
        if cache.pad is not None:
            pos = (queries[None, :] - cache.pad[:, None]).clamp(min=0)  # (B, T)
            keys = torch.arange(end, device=device)  # (S,)
            causal = keys[None, :] <= queries[:, None]  # (T, S)
            mask = causal[None] & (keys[None, None, :] >= cache.pad[:, None, None])  # (B, T, S)
            # A padding query attends to itself so that no row of scores is all -inf (NaN).
            mask |= (keys[None, :] == queries[:, None])[None]
            cache._mask = mask[:, None]  # (B, 1, T, S)
        elif T > 1 and start == 0:
            cache._causal = True
        elif T > 1:
            keys = torch.arange(end, device=device)
            cache._mask = keys[None, :] <= queries[:, None]  # (T, S)
        try:
            x = self._trunk(idx, pos, cache)
        finally:
            cache._mask, cache._causal = None, False
        cache.length = end
        return self._logits(x[:, -1, :] if last_only else x)
