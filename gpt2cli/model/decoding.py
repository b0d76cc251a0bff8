"""Decoding with a KV cache: the cache, and the step that runs new ids after the cached ones.

:func:`forward_cached` is the one way in. It builds the attention mask of the step from the
cache's positions and padding and passes it down ``GPT.hidden_states`` to every block. One new
position per row on a CPU without padding, the common step of ``gpt2 sample``, goes through
:func:`_decode_step_cpu` instead (in eager mode): the same computation on the same block
parameters.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from gpt2cli.errors import Gpt2Error
from gpt2cli.model.compiled_kernels import decode_block_, layer_norm
from gpt2cli.model.cpu_kernels import add_linear_, linear
from gpt2cli.model.gpt import GPT, Attend, Block, GPTConfig


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


def new_cache(
    model: GPT, batch_size: int, max_len: int | None = None, pad: torch.Tensor | None = None
) -> KVCache:
    """An empty KV cache on the model's device and dtype (``max_len`` <= block_size)."""
    weight = model.transformer.wte.weight
    max_len = min(max_len or model.config.block_size, model.config.block_size)
    return KVCache(model.config, batch_size, max_len, weight.device, weight.dtype, pad)


def forward_cached(
    model: GPT, idx: torch.Tensor, cache: KVCache, last_only: bool = True
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
        and not model.training
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()  # compiled: the general path, as on CUDA
    ):
        logits = _decode_step_cpu(model, idx[:, 0], cache)
        return logits if last_only else logits[:, None]
    device = idx.device
    queries = torch.arange(start, end, dtype=torch.long, device=device)  # (T,)
    pos = queries
    mask, causal = None, False  # one new position: it attends to every cached one
    if cache.pad is not None:
        pos = (queries[None, :] - cache.pad[:, None]).clamp(min=0)  # (B, T)
        keys = torch.arange(end, device=device)  # (S,)
        attend = keys[None, :] <= queries[:, None]  # (T, S)
        attend = attend[None] & (keys[None, None, :] >= cache.pad[:, None, None])  # (B, T, S)
        # A padding query attends to itself so that no row of scores is all -inf (NaN).
        attend |= (keys[None, :] == queries[:, None])[None]
        mask = attend[:, None]  # (B, 1, T, S)
    elif T > 1 and start == 0:
        causal = True
    elif T > 1:
        keys = torch.arange(end, device=device)
        mask = keys[None, :] <= queries[:, None]  # (T, S)
    x = model.hidden_states(idx, pos, Attend(cache, mask, causal))  # (B, T, C)
    cache.length = end
    return model.logits(x[:, -1, :] if last_only else x)


def _decode_step_cpu(model: GPT, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B, vocab_size) of one new position per row (no padding), on a CPU, without
    autograd or dropout.

    ``GPT.hidden_states`` and ``GPT.logits`` written out on (B, C) rows with functional calls
    on the same parameters, each line as in ``Block.forward``: at batch 1 the module calls and
    reshapes of the general path cost about a tenth of a 124M step. The single query is the
    newest position, so it attends to every cached one and needs no mask.
    """
    config, modules = model.config, model.transformer
    eps, t = config.layer_norm_epsilon, cache.length
    x = modules.wte.weight[ids] + modules.wpe.weight[t]  # (B, C), a new tensor: added to in place
    for layer, block in enumerate(modules.h):
        k_cache, v_cache = cache.k[layer], cache.v[layer]
        if not decode_block_(x, block, k_cache, v_cache, t, config.n_head, eps):
            _block_step(x, block, cache, layer, config)
    cache.length = t + 1
    x = layer_norm(x, modules.ln_f.weight, modules.ln_f.bias, eps)
    return model.without_padding(linear(x, model.lm_head))


def _block_step(
    x: torch.Tensor, block: Block, cache: KVCache, layer: int, config: GPTConfig
) -> None:
    """``Block.forward`` on rows x (B, C) of one new position, in place, by torch's ops."""
    attn, mlp, eps = block.attn, block.mlp, config.layer_norm_epsilon
    # x = x + attn(ln_1(x))
    h = layer_norm(x, block.ln_1.weight, block.ln_1.bias, eps)
    q, k, v = linear(h, attn.c_attn).split(config.n_embd, dim=1)
    heads = (x.shape[0], config.n_head, 1, config.head_dim)
    k, v = cache.update(layer, k.view(heads), v.view(heads))  # (B, nh, S, hs)
    y = F.scaled_dot_product_attention(q.view(heads), k, v).view(x.shape)
    add_linear_(x, y, attn.c_proj)
    # x = x + mlp(ln_2(x))
    h = layer_norm(x, block.ln_2.weight, block.ln_2.bias, eps)
    h = F.gelu(linear(h, mlp.c_fc), approximate="tanh")
    add_linear_(x, h, mlp.c_proj)
