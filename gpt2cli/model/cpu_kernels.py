"""CPU kernels the model runs through: a linear layer and a cross-entropy that are faster on a
CPU than torch's defaults, with the same outputs and gradients; on other devices, torch's.

:class:`Linear` and :func:`cross_entropy` are the one seam ``gpt2cli.model.gpt`` calls; the CPU
decoding step (``gpt2cli.model.decoding``) calls :func:`linear` and :func:`add_linear_`
directly. :func:`prepare_output_layer` lays out the output layer for decoding on a CPU.

A few rows without autograd (a decoding step) go through the compiled kernels
(``compiled_kernels``) when they were built and the CPU runs them; otherwise through torch's
(:func:`cpu_linear`). A layer holding reduced-precision weights (``packed_weights``,
``--dtype fp16|bf16|int8`` on a CPU) multiplies fp32 activations by them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt2cli.model import compiled_kernels

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
    streams a row-major weight near the memory bandwidth (~1.5x BLAS's matrix-vector product).
    A column-major weight (:func:`store_column_major`) goes to BLAS's matrix-vector product,
    which streams it faster still (oneDNN would reorder it: ~1.3x slower).
    """
    rows = x.shape[0]
    if not 0 < rows <= _FEW_ROWS:
        return F.linear(x, weight, bias)
    if (
        rows == 1
        and _ONEDNN_LINEAR is not None
        and x.dtype == torch.float32
        and weight.is_contiguous()
        and not torch.is_grad_enabled()
    ):
        return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")
    if rows == 1:
        y = torch.mv(weight, x[0]) if bias is None else torch.addmv(bias, weight, x[0])
        return y[None]
    y = torch.mm(weight, x.t()) if bias is None else torch.addmm(bias[:, None], weight, x.t())
    return y.t().contiguous()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters) that takes :func:`cpu_linear`'s kernels on a CPU, in
    eager mode: under torch.compile the graph holds torch's op, as on CUDA. A layer whose weight
    :func:`pack_weights` packed multiplies by the packed weight."""

    packed: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None and (x.device.type != "cpu" or torch.compiler.is_compiling()):
            return super().forward(x)
        y = linear(x.reshape(-1, self.in_features), self)
        return y.reshape(*x.shape[:-1], self.out_features)


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)`` for (rows, in) on a CPU: by the compiled kernel where it applies, else by
    its packed weight if it has one, else by :func:`cpu_linear`."""
    operands = compiled_kernels.operands(x, layer)
    if operands is not None:
        y = x.new_empty(x.shape[0], layer.out_features)
        compiled_kernels.matvec(operands, x, layer.bias, y, accumulate=False)
        return y
    packed = getattr(layer, "packed", None)
    if packed is not None:
        return packed(x, layer.bias)
    return cpu_linear(x, layer.weight, layer.bias)


def add_linear_(x: torch.Tensor, h: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``x += layer(h)`` in place (a residual connection), in one pass where the compiled
    kernel applies; returns ``x``."""
    operands = compiled_kernels.operands(h, layer)
    fits = operands is not None and x.shape == (h.shape[0], operands[1].shape[0])
    # The kernel writes x while it reads h: they must not share memory.
    apart = x.untyped_storage().data_ptr() != h.untyped_storage().data_ptr()
    if fits and apart and x.is_contiguous() and x.dtype == torch.float32:
        compiled_kernels.matvec(operands, h, layer.bias, x, accumulate=True)
        return x
    return x.add_(linear(h, layer))


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

    On CUDA and under torch.compile ``F.cross_entropy`` (which torch.compile fuses); on a CPU
    in eager mode :class:`_CrossEntropy`, the same loss and gradient with less memory traffic.
    """
    classes = logits.shape[-1] if classes is None else classes
    if logits.is_cuda or logits.dtype != torch.float32 or torch.compiler.is_compiling():
        if classes != logits.shape[-1]:
            logits = logits[:, :classes]
        return F.cross_entropy(logits, targets, ignore_index=-1)
    return _CrossEntropy.apply(logits, targets, classes)


def store_column_major(weight: nn.Parameter, column_major: bool = True) -> None:
    """Store ``weight`` (the tied token embedding / output layer) column-major (a transposed
    view of a contiguous (C, rows) tensor), or back row-major: same parameter, same values.

    A CPU computes one row of logits ~1.3x faster from the column-major layout (it streams
    the matrix as the rows of x @ W^T), but several rows ~2x slower; training keeps the
    row-major layout that distributed data parallel and the optimizers expect.
    """
    if (weight.stride() == (1, weight.shape[0])) == column_major:
        return
    with torch.no_grad():  # the Parameter stays (lm_head is tied to it)
        transposed = weight.data.t().contiguous().t()
        weight.data = transposed if column_major else weight.data.contiguous()


def prepare_output_layer(weight: nn.Parameter, rows: int) -> None:
    """Lay out the output layer for decoding ``rows`` sequences at a time: column-major for
    one row on a CPU without the compiled kernel (torch's matrix-vector product streams it
    faster that way), row-major everywhere else (the kernel reads rows)."""
    on_cpu = weight.device.type == "cpu"
    store_column_major(weight, on_cpu and rows == 1 and not compiled_kernels.available())
