"""Reduced-precision weights for CPU inference (``--dtype fp16``, ``bf16``, ``int8`` on a CPU):
:func:`pack_weights` holds each linear layer's weight in one format, multiplied by fp32
activations: through the compiled kernels (``compiled_kernels.StreamedWeight``) where they run,
else through FBGEMM's (:class:`Fp16Weight`, :class:`Int8Weight`)."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt2cli.errors import UsageError
from gpt2cli.model import compiled_kernels
from gpt2cli.model.compiled_kernels import StreamedWeight
from gpt2cli.model.cpu_kernels import Linear

PACKED_FORMATS = ("fp16", "bf16", "int8")


class PackedWeight:
    """A linear layer's weight in a CPU inference format; called as ``packed(x, bias)`` on fp32
    rows (rows, in), it gives fp32 (rows, out)."""

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


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
        scale = compiled_kernels.int8_row_scales(weight)
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
    compiled = compiled_kernels.available()
    has_fp16 = compiled or fbgemm_fp16_available()
    if fmt == "int8" and not (compiled or (has_fp16 and fbgemm_int8_available())):
        raise UsageError(
            "--dtype int8 needs int8 kernels, which this CPU or torch build lacks",
            "use --dtype fp16 or bf16",
        )
    if not has_fp16:
        model.to(torch.float16 if fmt == "fp16" else torch.bfloat16)
        return
    rounding = {"fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float16}[fmt]
    int8_head = fmt == "int8" and compiled
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


def _packed(weight: torch.Tensor, fmt: str | torch.dtype) -> PackedWeight | StreamedWeight:
    """``weight`` as int8 (``"int8"``) or rounded to ``fmt``'s values and held as fp16."""
    compiled = compiled_kernels.available()
    if fmt == "int8":
        return StreamedWeight(weight, "int8") if compiled else Int8Weight(weight)
    half = weight.to(fmt)
    return StreamedWeight(half, "fp16") if compiled else Fp16Weight(half)
