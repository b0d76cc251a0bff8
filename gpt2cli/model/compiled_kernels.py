"""The Python side of the compiled kernels (``gpt2cli/model/_kernels.c``, built by setup.py
as the optional extension ``gpt2cli.model._kernels``): what a CPU decoding step runs through
when they were built and the CPU has AVX2, FMA and F16C.

- :func:`matvec`: a few rows of fp32 activations times a weight held as fp32, fp16 or int8
  (:class:`StreamedWeight`), streamed from memory once for all rows, widened in registers;
  ~1.3x oneDNN's one-row linear. The bias, and a residual add, in the same pass.
- :func:`decode_block_`: a whole Transformer block of a decoding step in one call (LayerNorms,
  the four matrix-vector products, attention over the KV cache, GELU), without torch's
  per-op costs; :func:`layer_norm` for the final one.

Each applies only to fp32, contiguous tensors without autograd, and says so (None / False)
otherwise: the callers (``cpu_kernels``, ``decoding``) then run torch's ops. Without the
extension, :func:`available` is False and nothing here runs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

# Weight kinds, as the C code numbers them (checked against the module in the tests).
F32, F16, I8 = 0, 1, 2
# Rows up to which the compiled kernel beats torch: for fp32 weights, BLAS's matrix product from
# 17 rows on; for fp16/int8, widening the weight for BLAS (a copy of it in fp32) up to 64.
KERNEL_ROWS = 16
PACKED_KERNEL_ROWS = 64


def _load() -> Any:
    """The compiled kernel module, if it was built (with OpenMP) and this CPU runs it."""
    try:
        from gpt2cli.model import _kernels
    except ImportError:
        return None
    # Built without OpenMP (a compiler without it), the kernels would run on one thread.
    return _kernels if _kernels.supported() and _kernels.OPENMP else None


_KERNELS = _load()


def available() -> bool:
    """Whether decoding steps go through the compiled kernels."""
    return _KERNELS is not None


def applies(*tensors: torch.Tensor | None) -> bool:
    """Whether the compiled kernels can take these tensors: fp32, contiguous, on the CPU, no
    autograd."""
    return (
        _KERNELS is not None
        and not torch.is_grad_enabled()
        and all(_fp32_on_cpu(t) and t.is_contiguous() for t in tensors)
    )


def _fp32_on_cpu(t: torch.Tensor | None) -> bool:
    return t is not None and t.dtype == torch.float32 and t.device.type == "cpu"


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """``F.layer_norm`` over the last dimension of rows (rows, C): in the compiled kernel where
    it applies (a decoding step's few rows: torch's per-call cost is most of the time)."""
    fits = x.dim() == 2 and x.shape[0] <= KERNEL_ROWS and weight.shape == x.shape[1:]
    if not (fits and applies(x, weight, bias) and bias.shape == weight.shape):
        return F.layer_norm(x, weight.shape, weight, bias, eps)
    y = torch.empty_like(x)
    rows, n = x.shape
    _KERNELS.layer_norm(
        x.data_ptr(), weight.data_ptr(), bias.data_ptr(), y.data_ptr(), rows, n, eps
    )
    return y


def decode_block_(
    x: torch.Tensor,
    block: nn.Module,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    t: int,
    n_head: int,
    eps: float,
) -> bool:
    """One Transformer block (``gpt.Block``) of a decoding step in the compiled kernels, in one
    call: on rows ``x`` (B, C) in place, ``x += attn(ln_1(x))`` then ``x += mlp(ln_2(x))``,
    each row's new key and value stored at position ``t`` of the caches (B, n_head, max_len,
    head_size) and its query attending over positions 0..t.

    Returns False, having touched nothing, where the kernels do not apply (the caller runs
    torch's ops): no kernels, autograd, other dtypes, layouts or shapes.
    """
    norms = (block.ln_1.weight, block.ln_1.bias, block.ln_2.weight, block.ln_2.bias)
    if (
        x.dim() != 2
        or k_cache.dim() != 4
        or not applies(x, k_cache, v_cache, *norms)
        or k_cache.shape != v_cache.shape
        or any(n.shape != x.shape[1:] for n in norms)
    ):
        return False
    batch, C = x.shape
    _, heads, max_len, head_size = k_cache.shape
    if k_cache.shape[0] != batch or heads != n_head or heads * head_size != C:
        return False
    if not 0 <= t < max_len:
        return False
    layers = (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj)
    hidden = layers[2].out_features
    shapes = ((3 * C, C), (C, C), (hidden, C), (C, hidden))
    arguments: list[int] = []
    for layer, shape in zip(layers, shapes):
        found = layer_operands(layer, batch)
        bias = layer.bias
        if found is None or found[1].shape != shape:
            return False
        kind, values, scale = found
        arguments += [
            kind,
            values.data_ptr(),
            scale.data_ptr() if scale is not None else 0,
            bias.data_ptr() if bias is not None else 0,
            shape[0],
        ]
    _KERNELS.block(
        x.data_ptr(),
        batch,
        C,
        *(n.data_ptr() for n in norms),
        eps,
        *arguments,
        k_cache.data_ptr(),
        v_cache.data_ptr(),
        heads,
        max_len,
        t,
        torch.get_num_threads(),
    )
    return True


Operands = tuple[int, torch.Tensor, "torch.Tensor | None"]


def operands(x: torch.Tensor, layer: nn.Linear) -> Operands | None:
    """(kind, weight values, row scales) for the compiled kernel to multiply rows ``x`` (rows,
    in) by, or None where it does not apply: no kernel, too many rows, autograd, other dtypes,
    layouts or shapes."""
    if not _fp32_on_cpu(x) or x.dim() != 2:
        return None
    found = layer_operands(layer, x.shape[0])
    return found if found is not None and found[1].shape[1] == x.shape[1] else None


def layer_operands(layer: nn.Linear, rows: int) -> Operands | None:
    """:func:`operands` of a layer for ``rows`` rows of fp32 activations of its width."""
    if _KERNELS is None or torch.is_grad_enabled():
        return None
    packed = getattr(layer, "packed", None)
    if isinstance(packed, StreamedWeight):
        found = packed.operands if 0 < rows <= PACKED_KERNEL_ROWS else None
    elif packed is None and 0 < rows <= KERNEL_ROWS:
        weight = layer.weight
        contiguous = weight.dtype == torch.float32 and weight.is_contiguous() and weight.dim() == 2
        found = (F32, weight, None) if contiguous else None
    else:
        found = None
    bias = layer.bias
    if found is None or found[1].device.type != "cpu":
        return None
    if bias is not None and not (
        _fp32_on_cpu(bias) and bias.shape == found[1].shape[:1] and bias.is_contiguous()
    ):
        return None
    return found


def matvec(
    operands: Operands,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    y: torch.Tensor,
    accumulate: bool,
) -> None:
    kind, values, scale = operands
    out, n = values.shape
    tensors_fit = all(_fp32_on_cpu(t) for t in (x, y)) and y.is_contiguous()
    tensors_fit &= bias is None or (_fp32_on_cpu(bias) and bias.shape == (out,))
    tensors_fit &= scale is None or (_fp32_on_cpu(scale) and scale.shape == (out,))
    if not tensors_fit or x.shape[1] != n or y.shape != (x.shape[0], out):
        raise ValueError(
            f"compiled matvec: rows {tuple(x.shape)}, weight {tuple(values.shape)}, "
            f"output {tuple(y.shape)} do not match, or not all fp32 on the CPU"
        )
    if not x.is_contiguous():
        x = x.contiguous()
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    _KERNELS.matvec(
        kind,
        values.data_ptr(),
        scale.data_ptr() if scale is not None else 0,
        x.data_ptr(),
        bias.data_ptr() if bias is not None else 0,
        y.data_ptr(),
        x.shape[0],
        out,
        n,
        int(accumulate),
        torch.get_num_threads(),
    )


def int8_row_scales(weight: torch.Tensor) -> torch.Tensor:
    """One scale per row of an fp32 weight for int8 (``w ≈ q * scale``, ``|q| <= 127``)."""
    return (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)


class StreamedWeight:
    """fp16, or int8 with one scale per output row (``w ≈ q * max|w_row| / 127``), row-major,
    for the compiled kernel: up to 64 rows of fp32 activations stream the weight once and widen
    it in registers (activations stay fp32: int8 rounds only the weights). More rows (a long
    prompt, scoring) multiply by the weight widened to fp32 by torch."""

    def __init__(self, weight: torch.Tensor, fmt: str) -> None:
        weight = weight.detach().float()
        self.scale: torch.Tensor | None = None
        if fmt == "int8":
            scale = int8_row_scales(weight)
            self.values = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
            self.scale = scale.contiguous()
            kind = I8
        else:
            self.values = weight.to(torch.float16).contiguous()
            kind = F16
        self.operands: Operands = (kind, self.values, self.scale)

    def dequantized(self) -> torch.Tensor:
        """The weight as the fp32 values it stands for."""
        weight = self.values.float()
        return weight if self.scale is None else weight.mul_(self.scale[:, None])

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        out = self.values.shape[0]
        fits = x.device.type == "cpu" and x.shape[1:] == self.values.shape[1:]
        fits &= bias is None or (_fp32_on_cpu(bias) and bias.shape == (out,))
        if 0 < x.shape[0] <= PACKED_KERNEL_ROWS and fits:
            y = x.new_empty(x.shape[0], out, dtype=torch.float32)
            matvec(self.operands, x.float(), bias, y, False)
            return y
        return F.linear(x.float(), self.dequantized(), bias)
