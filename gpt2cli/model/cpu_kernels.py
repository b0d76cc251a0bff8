"""CPU kernels the model runs through: a linear layer and a cross-entropy that are faster on a
CPU than torch's defaults, with the same outputs and gradients; on other devices, torch's.

:class:`Linear` and :func:`cross_entropy` are the one seam ``gpt2cli.model.gpt`` calls; the CPU
decoding step (``gpt2cli.model.decoding``) calls :func:`linear` and :func:`add_linear_`
directly, and :func:`decode_block_` and :func:`layer_norm`. :func:`prepare_output_layer` lays
out the output layer for decoding on a CPU.

A few rows without autograd (a decoding step) go through the package's compiled kernels
(``gpt2cli.model._kernels``, C with AVX2/F16C and OpenMP) when they were built and the CPU runs
them: a matrix-vector product that streams a weight near the memory bandwidth (~1.3x oneDNN's
one-row linear), and a whole Transformer block of the step in one call (LayerNorms,
attention over the KV cache, GELU), without torch's per-op costs. Without them, torch's
kernels (:func:`cpu_linear`, ``F.layer_norm``, ``F.scaled_dot_product_attention``).

Reduced-precision weights on a CPU (``--dtype fp16``, ``bf16``, ``int8``) are packed by
:func:`pack_weights`: each linear layer keeps its weight in the packed format only, and
:func:`linear` multiplies fp32 activations by it (see :func:`pack_weights` for the formats).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt2cli.errors import UsageError

_FEW_ROWS = 64
# Rows up to which the compiled kernel beats torch: for fp32 weights, BLAS's matrix product from
# 17 rows on; for fp16/int8, widening the weight for BLAS (a copy of it in fp32) up to 64.
_KERNEL_ROWS = 16
_PACKED_KERNEL_ROWS = 64


def _load_kernels() -> Any:
    """The compiled kernel module, if it was built and this CPU runs it."""
    try:
        from gpt2cli.model import _kernels
    except ImportError:
        return None
    return _kernels if _kernels.supported() else None


_KERNELS = _load_kernels()


def has_compiled_kernels() -> bool:
    """Whether decoding steps go through the compiled kernels."""
    return _KERNELS is not None


def _applies(*tensors: torch.Tensor) -> bool:
    """Whether the compiled kernels can take these tensors: fp32, contiguous, no autograd."""
    return (
        _KERNELS is not None
        and not torch.is_grad_enabled()
        and all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors)
    )


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """``F.layer_norm`` over the last dimension of rows (rows, C): in the compiled kernel where
    it applies (a decoding step's few rows: torch's per-call cost is most of the time)."""
    if not (_applies(x, weight, bias) and x.dim() == 2 and x.shape[0] <= _KERNEL_ROWS):
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
        or any(n is None for n in norms)
        or not _applies(x, k_cache, v_cache, *norms)
        or k_cache.shape != v_cache.shape
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
        operands = _kernel_operands(x, layer)
        bias = layer.bias
        if operands is None or operands[1].shape != shape:
            return False
        if bias is not None and (bias.shape != shape[:1] or not bias.is_contiguous()):
            return False
        kind, values, scale = operands
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

    packed: PackedWeight | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None and (x.device.type != "cpu" or torch.compiler.is_compiling()):
            return super().forward(x)
        y = linear(x.reshape(-1, self.in_features), self)
        return y.reshape(*x.shape[:-1], self.out_features)


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)`` for (rows, in) on a CPU: by the compiled kernel where it applies, else by
    its packed weight if it has one, else by :func:`cpu_linear`."""
    operands = _kernel_operands(x, layer)
    if operands is not None:
        y = x.new_empty(x.shape[0], layer.out_features)
        _run_matvec(operands, x, layer.bias, y, accumulate=False)
        return y
    packed = getattr(layer, "packed", None)
    if packed is not None:
        return packed(x, layer.bias)
    return cpu_linear(x, layer.weight, layer.bias)


def add_linear_(x: torch.Tensor, h: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``x += layer(h)`` in place (a residual connection), in one pass where the compiled
    kernel applies; returns ``x``."""
    operands = _kernel_operands(h, layer)
    if operands is not None and x.is_contiguous() and x.dtype == torch.float32:
        _run_matvec(operands, h, layer.bias, x, accumulate=True)
        return x
    return x.add_(linear(h, layer))


_Operands = tuple[int, torch.Tensor, "torch.Tensor | None"]


def _kernel_operands(x: torch.Tensor, layer: nn.Linear) -> _Operands | None:
    """(kind, weight values, row scales) for the compiled kernel, or None where it does not
    apply: no kernel, too many rows, autograd, other dtypes or layouts."""
    if _KERNELS is None or x.dtype != torch.float32 or torch.is_grad_enabled():
        return None
    bias = layer.bias
    if bias is not None and bias.dtype != torch.float32:
        return None
    rows = x.shape[0]
    packed = getattr(layer, "packed", None)
    if isinstance(packed, StreamedWeight):
        return packed.operands if 0 < rows <= _PACKED_KERNEL_ROWS else None
    weight = layer.weight
    if (
        packed is None
        and 0 < rows <= _KERNEL_ROWS
        and weight.dtype == torch.float32
        and weight.is_contiguous()
    ):
        return _KERNELS.F32, weight, None
    return None


def _run_matvec(
    operands: _Operands,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    y: torch.Tensor,
    accumulate: bool,
) -> None:
    kind, values, scale = operands
    if not x.is_contiguous():
        x = x.contiguous()
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    out, n = values.shape
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


# --- packed weights for CPU inference -------------------------------------------------------

PACKED_FORMATS = ("fp16", "bf16", "int8")


class PackedWeight:
    """A linear layer's weight in a CPU inference format; called as ``packed(x, bias)`` on fp32
    rows (rows, in), it gives fp32 (rows, out)."""

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class StreamedWeight(PackedWeight):
    """fp16, or int8 with one scale per output row (``w ≈ q * max|w_row| / 127``), row-major,
    for the compiled kernel: up to 64 rows of fp32 activations stream the weight once and widen
    it in registers (activations stay fp32: int8 rounds only the weights). More rows (a long
    prompt, scoring) multiply by the weight widened to fp32 by torch."""

    def __init__(self, weight: torch.Tensor, fmt: str) -> None:
        weight = weight.detach().float()
        self.scale: torch.Tensor | None = None
        if fmt == "int8":
            scale = (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
            self.values = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
            self.scale = scale.contiguous()
            kind = _KERNELS.I8
        else:
            self.values = weight.to(torch.float16).contiguous()
            kind = _KERNELS.F16
        self.operands: _Operands = (kind, self.values, self.scale)

    def dequantized(self) -> torch.Tensor:
        """The weight as the fp32 values it stands for."""
        weight = self.values.float()
        return weight if self.scale is None else weight.mul_(self.scale[:, None])

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if 0 < x.shape[0] <= _PACKED_KERNEL_ROWS:
            y = x.new_empty(x.shape[0], self.values.shape[0], dtype=torch.float32)
            _run_matvec(self.operands, x.float(), bias, y, False)
            return y
        return F.linear(x.float(), self.dequantized(), bias)


def fbgemm_fp16_available() -> bool:
    """Whether this torch has FBGEMM's fp16-weight linear (x86 builds)."""
    try:
        packed = torch.ops.quantized.linear_prepack_fp16(torch.ones(3, 2), torch.ones(3))
        probe = torch.ops.quantized.linear_dynamic_fp16(torch.ones(1, 2), packed)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return probe.tolist() == [[3.0, 3.0, 3.0]]


class Fp16Weight(PackedWeight):
    """fp16 weights times fp32 activations, fp32 out: FBGEMM's packed fp16 matmul, which streams
    half the bytes of fp32 weights and widens them in registers (F16C)."""

    def __init__(self, weight: torch.Tensor) -> None:
        exact = weight.detach().to(torch.float16).float()  # the values FBGEMM stores
        self.packed = torch.ops.quantized.linear_prepack_fp16(exact, None)

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic_fp16(x.float(), self.packed)
        return y if bias is None else y.add_(bias)


class Int8Weight(PackedWeight):
    """Int8 weights with one scale per output row (``w ≈ q * max|w_row| / 127``).

    One row at a time (the decoding step) goes through FBGEMM's int8 matrix-vector product,
    which also rounds the row of activations to 8 bits (one scale for the row, as llama.cpp's
    q8_0 rounds activations to 8 bits, there per block of 32), accumulates in int32 and gives
    fp32: it streams a quarter of fp32's bytes. Several rows (a prompt, a batch, scoring) are
    multiplied in fp32 by the int8 weights widened on the fly, so that no row's activations are
    rounded with another's scale. Without VNNI (AVX2's 16-bit sums could saturate) the
    activations use 7 bits, as FBGEMM's ``reduce_range`` does.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        weight = weight.detach().float()
        rows = weight.shape[0]
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
        with warnings.catch_warnings():  # quantized tensors are deprecated, FBGEMM's op is not
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(
                weight, scale.double(), torch.zeros(rows, dtype=torch.long), 0, torch.qint8
            )
            self.packed = torch.ops.quantized.linear_prepack(q, None)
        self.reduce_range = not _has_vnni()

    def dequantized(self) -> torch.Tensor:
        """The weight as the fp32 values it stands for."""
        weight, _ = torch.ops.quantized.linear_unpack(self.packed)
        return weight.dequantize()

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if x.shape[0] != 1:
            return F.linear(x.float(), self.dequantized(), bias)
        y = torch.ops.quantized.linear_dynamic(x.float(), self.packed, self.reduce_range)
        return y if bias is None else y.add_(bias)


def _has_vnni() -> bool:
    check = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(check()) if check is not None else False


def fbgemm_int8_available() -> bool:
    """Whether this torch has FBGEMM's int8 linear with per-row weight scales (x86 builds)."""
    try:
        probe = Int8Weight(torch.ones(3, 2))(torch.ones(1, 2), None)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return probe.tolist() == [[2.0, 2.0, 2.0]]


def pack_weights(model: nn.Module, fmt: str) -> None:
    """Hold every linear layer's weight of an fp32 model in a CPU inference format, in place.

    - ``fp16``: weights rounded to fp16, multiplied as fp16, activations, biases, LayerNorms
      and the KV cache in fp32.
    - ``bf16``: weights rounded to bf16, multiplied by the same fp16 kernels (a CPU without bf16
      arithmetic has nothing faster): bf16's 8-bit significand fits fp16's 10 bits, so the
      values are the bf16 weights exactly, but for weights under 2^-17 in magnitude, rounded to
      fp16's subnormal step of 2^-24 (off by at most 3e-8).
    - ``int8``: int8 with one scale per output row, the output layer (the token embedding)
      included; with FBGEMM's kernels, which also round a decoding step's activations to 8
      bits, the output layer in fp16 (8-bit activations would move the logits by tenths).

    The kernels: the compiled one (:class:`StreamedWeight`) where it runs, else FBGEMM's
    (:class:`Fp16Weight`, :class:`Int8Weight`). The token embedding, also the output layer,
    is rounded in place to the output layer's values, so that the input and output layers
    agree. With neither (non-x86 builds) the model is cast to torch's fp16 or bf16 (int8:
    UsageError).
    """
    if fmt not in PACKED_FORMATS:
        raise ValueError(f"unknown packed format {fmt!r}")
    has_fp16 = _KERNELS is not None or fbgemm_fp16_available()
    if fmt == "int8" and not (_KERNELS is not None or (has_fp16 and fbgemm_int8_available())):
        raise UsageError(
            "--dtype int8 needs int8 kernels, which this CPU or torch build lacks",
            "use --dtype fp16 or bf16",
        )
    if not has_fp16:
        model.to(torch.float16 if fmt == "fp16" else torch.bfloat16)
        return
    rounding = {"fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float16}[fmt]
    int8_head = fmt == "int8" and _KERNELS is not None
    with torch.no_grad():
        embedding = model.get_submodule("transformer.wte").weight
        if int8_head:
            head = StreamedWeight(embedding, "int8")
            embedding.copy_(head.dequantized())
        else:
            embedding.copy_(embedding.to(rounding).float())
            head = _packed(embedding, rounding)
        for name, module in model.named_modules():
            if not isinstance(module, Linear):
                continue
            if name == "lm_head":  # its weight is the token embedding: it stays
                module.packed = head
                continue
            module.packed = _packed(module.weight, "int8" if fmt == "int8" else rounding)
            module.weight = nn.Parameter(module.weight.new_empty(0), requires_grad=False)


def _packed(weight: torch.Tensor, fmt: str | torch.dtype) -> PackedWeight:
    """``weight`` as int8 (``"int8"``) or rounded to ``fmt``'s values and held as fp16."""
    if fmt == "int8":
        return StreamedWeight(weight, "int8") if _KERNELS is not None else Int8Weight(weight)
    half = weight.to(fmt)
    return StreamedWeight(half, "fp16") if _KERNELS is not None else Fp16Weight(half)


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
    store_column_major(weight, on_cpu and rows == 1 and _KERNELS is None)
