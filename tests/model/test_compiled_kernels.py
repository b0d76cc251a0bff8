"""The compiled kernels (gpt2cli.model._kernels) against torch on the same values: the
matrix-vector product (every weight kind, ragged sizes, bias, accumulation, threads), LayerNorm,
a decoding step's attention, a whole block in one call; where they must be built; bad calls."""

from __future__ import annotations

import copy
import platform
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gpt2cli.model import compiled_kernels, cpu_kernels, decoding
from gpt2cli.model.compiled_kernels import StreamedWeight
from gpt2cli.model.cpu_kernels import add_linear_, linear
from gpt2cli.model.gpt import Block, GPTConfig


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_kernels_are_built_where_it_can_be() -> None:
    """On x86-64 Linux with AVX2/FMA/F16C (CI's machines) the extension must have been built:
    a silent fallback would leave the kernel untested."""
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("the kernel is optional off x86-64 Linux")
    if not {"avx2", "fma", "f16c"} <= cpu_flags():
        assert not compiled_kernels.available()
        return
    assert compiled_kernels.available(), "gpt2cli.model._kernels did not build or import"


pytestmark_kernel = pytest.mark.skipif(
    not compiled_kernels.available(), reason="no compiled kernel"
)


def layer_of(out: int, n: int, bias: bool, seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return cpu_kernels.Linear(n, out, bias=bias).eval()


@pytestmark_kernel
@pytest.mark.parametrize("rows", [1, 3, 16, 40, 65])
@pytest.mark.parametrize("out, n", [(80, 48), (7, 3), (33, 77), (600, 1000)])
@pytest.mark.parametrize("fmt", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_equals_torch_on_the_same_values(
    rows: int, out: int, n: int, fmt: str, threads: int
) -> None:
    layer = layer_of(out, n, bias=out % 2 == 0, seed=out + n)
    if fmt != "fp32":
        layer.packed = StreamedWeight(layer.weight, fmt)
        weight = layer.packed.dequantized()
    else:
        weight = layer.weight.detach()
    x = torch.randn(rows, n)
    residual = torch.randn(rows, out)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            expected = F.linear(x, weight, layer.bias)
            got = linear(x, layer)
            summed = add_linear_(residual.clone(), x, layer)
            ran = compiled_kernels.operands(x, layer) is not None
    finally:
        torch.set_num_threads(before)
    # The kernel takes up to 16 rows of fp32 weights, 64 of fp16/int8; torch the rest.
    assert ran == (rows <= (16 if fmt == "fp32" else 64))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(summed, residual + expected, rtol=1e-5, atol=1e-5)


@pytestmark_kernel
def test_int8_rounds_each_weight_to_the_nearest_step_of_its_row() -> None:
    weight = torch.randn(64, 96) * torch.logspace(-3, 2, 64)[:, None]
    weight[5] = 0.0  # an all-zero row: scale stays positive, values zero
    packed = StreamedWeight(weight, "int8")
    steps = weight.abs().amax(dim=1, keepdim=True) / 127
    assert packed.values.dtype == torch.int8 and int(packed.values.abs().max()) <= 127
    assert ((packed.dequantized() - weight).abs() <= steps / 2 + 1e-7).all()
    assert not packed.dequantized()[5].any()


@pytestmark_kernel
def test_kernel_stands_aside_where_it_does_not_apply() -> None:
    """Autograd, many rows, other dtypes, a column-major weight: torch's path, same values."""
    layer = layer_of(40, 24, bias=True, seed=0)
    x = torch.randn(1, 24)
    with torch.no_grad():
        assert compiled_kernels.operands(x, layer) is not None
        assert compiled_kernels.operands(torch.randn(17, 24), layer) is None
        assert compiled_kernels.operands(x.double(), layer) is None
        transposed = layer_of(40, 24, bias=True, seed=0)
        transposed.weight.data = transposed.weight.data.t().contiguous().t()
        assert compiled_kernels.operands(x, transposed) is None
        torch.testing.assert_close(linear(x, transposed), linear(x, layer))
    assert compiled_kernels.operands(x, layer) is None  # grad enabled
    got = linear(x.requires_grad_(), layer)
    got.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


@pytestmark_kernel
def test_bad_calls_raise_not_crash() -> None:
    from gpt2cli.model import _kernels

    with pytest.raises(TypeError):
        _kernels.matvec(0, 1, 2)
    with pytest.raises(ValueError):
        _kernels.matvec(7, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1)  # no such kind
    with pytest.raises(ValueError):
        _kernels.matvec(0, 1, 0, 1, 0, 1, -1, 1, 1, 0, 1)  # negative rows
    with pytest.raises(ValueError):
        _kernels.matvec(0, 0, 0, 1, 0, 1, 1, 1, 1, 0, 1)  # no weight


@pytestmark_kernel
@pytest.mark.parametrize("rows, n", [(1, 64), (3, 77), (16, 768)])
def test_layer_norm_equals_torch(rows: int, n: int) -> None:
    torch.manual_seed(n)
    x = torch.randn(rows, n) * 3 + 1
    weight, bias = torch.randn(n), torch.randn(n)
    with torch.no_grad():
        got = compiled_kernels.layer_norm(x, weight, bias, 1e-5)
    torch.testing.assert_close(got, F.layer_norm(x, (n,), weight, bias, 1e-5))
    x[0, 0] = float("inf")  # a hostile value: NaN in the row, as torch gives
    with torch.no_grad():
        got = compiled_kernels.layer_norm(x, weight, bias, 1e-5)
    assert got[0].isnan().all() and F.layer_norm(x, (n,), weight, bias, 1e-5)[0].isnan().all()


def attend(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, t: int) -> torch.Tensor:
    """The kernel's attention of one new position per row (what a block's step calls)."""
    from gpt2cli.model import _kernels

    batch, heads, max_len, head_size = k_cache.shape
    y = qkv.new_empty(batch, heads * head_size)
    addresses = (tensor.data_ptr() for tensor in (qkv, k_cache, v_cache, y))
    _kernels.attend(*addresses, batch, heads, head_size, max_len, t, 2)
    return y


@pytestmark_kernel
@pytest.mark.parametrize(
    "batch, heads, head_size, t", [(1, 2, 64, 0), (2, 3, 20, 9), (1, 1, 8, 15)]
)
def test_attention_of_a_new_position_equals_torch(
    batch: int, heads: int, head_size: int, t: int
) -> None:
    """Stores the new key and value at position t, attends over 0..t; positions after t are
    neither read nor written."""
    torch.manual_seed(t)
    max_len, C = 16, heads * head_size
    k_cache = torch.randn(batch, heads, max_len, head_size)
    v_cache = torch.randn(batch, heads, max_len, head_size)
    qkv = torch.randn(batch, 3 * C)
    k_before, v_before = k_cache.clone(), v_cache.clone()
    y = attend(qkv, k_cache, v_cache, t)
    q, k, v = (part.view(batch, heads, 1, head_size) for part in qkv.split(C, dim=1))
    k_before[:, :, t : t + 1], v_before[:, :, t : t + 1] = k, v
    torch.testing.assert_close(k_cache, k_before, rtol=0, atol=0)
    torch.testing.assert_close(v_cache, v_before, rtol=0, atol=0)
    expected = F.scaled_dot_product_attention(
        q, k_before[:, :, : t + 1], v_before[:, :, : t + 1]
    ).view(batch, C)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)


def block_and_caches(fmt: str, batch: int, t: int) -> tuple:
    """A block of a tiny GPT-2 (fp32 or packed), rows x, caches of 12 positions, its config."""
    torch.manual_seed(t + batch)
    config = GPTConfig(n_layer=1, n_head=4, n_embd=48, block_size=12)
    block = Block(config).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)  # biases and norms not trivial
        if fmt != "fp32":
            for layer in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                layer.packed = StreamedWeight(layer.weight, fmt)
                layer.weight = nn.Parameter(layer.weight.new_empty(0), requires_grad=False)
    x = torch.randn(batch, 48) * 2
    k_cache, v_cache = torch.randn(2, batch, 4, 12, 12)
    return block, x, k_cache, v_cache, config


def torch_block(x: torch.Tensor, block: nn.Module, k_cache, v_cache, t: int, config) -> tuple:
    """The same block step by torch's ops (the fallback path) on the values the packed weights
    stand for: x and the caches after it."""
    plain = copy.deepcopy(block)
    for layer in (plain.attn.c_attn, plain.attn.c_proj, plain.mlp.c_fc, plain.mlp.c_proj):
        if layer.packed is not None:
            layer.weight = nn.Parameter(layer.packed.dequantized())
            layer.packed = None
    cache = decoding.KVCache(config, x.shape[0], 12)
    cache.k, cache.v, cache.length = [k_cache.clone()], [v_cache.clone()], t
    x = x.clone()
    kernels = compiled_kernels._KERNELS
    compiled_kernels._KERNELS = None
    try:
        with torch.no_grad():
            decoding._block_step(x, plain, cache, 0, config)
    finally:
        compiled_kernels._KERNELS = kernels
    return x, cache.k[0], cache.v[0]


@pytestmark_kernel
@pytest.mark.parametrize("fmt", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("batch, t", [(1, 0), (1, 7), (3, 11)])
def test_a_block_in_one_call_equals_torch_ops(fmt: str, batch: int, t: int) -> None:
    """decode_block_ (LayerNorms, matrix-vector products, attention, GELU in C) against the
    same block run by torch's ops, caches included."""
    block, x, k_cache, v_cache, config = block_and_caches(fmt, batch, t)
    expected, k_expected, v_expected = torch_block(x, block, k_cache, v_cache, t, config)
    with torch.no_grad():
        assert compiled_kernels.decode_block_(x, block, k_cache, v_cache, t, 4, 1e-5)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k_cache, k_expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v_cache, v_expected, rtol=1e-5, atol=1e-6)


@pytestmark_kernel
@pytest.mark.parametrize("value", [1e-30, -1e-6, 3.0, -9.0, 60.0, -60.0, 1e30, -1e30])
def test_gelu_in_the_kernel_holds_at_the_extremes(value: float) -> None:
    """The kernel's GELU (tanh from a polynomial exp) where exp under- and overflows: the MLP's
    first layer made to output ``value`` everywhere, against torch's ops."""
    block, x, k_cache, v_cache, config = block_and_caches("fp32", 1, 0)
    with torch.no_grad():
        block.mlp.c_fc.weight.zero_()
        block.mlp.c_fc.bias.fill_(value)
    expected, _, _ = torch_block(x, block, k_cache, v_cache, 0, config)
    with torch.no_grad():
        assert compiled_kernels.decode_block_(x, block, k_cache, v_cache, 0, 4, 1e-5)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)


@pytestmark_kernel
def test_a_block_stands_aside_where_the_kernels_do_not_apply() -> None:
    block, x, k_cache, v_cache, _ = block_and_caches("fp32", 1, 3)
    before = x.clone()
    step = compiled_kernels.decode_block_
    with torch.no_grad():
        assert not step(x, block, k_cache, v_cache, 12, 4, 1e-5)  # the cache is full
        assert not step(x, block, k_cache, v_cache, 3, 3, 1e-5)  # not its number of heads
        assert not step(x[:, :40].contiguous(), block, k_cache, v_cache, 3, 4, 1e-5)
        assert not step(x.double(), block, k_cache, v_cache, 3, 4, 1e-5)
        assert not step(x, block, k_cache[..., :6].contiguous(), v_cache, 3, 4, 1e-5)
        assert not step(x, block, k_cache.transpose(2, 3), v_cache, 3, 4, 1e-5)
        bf16 = copy.deepcopy(block).to(torch.bfloat16)
        assert not step(x, bf16, k_cache, v_cache, 3, 4, 1e-5)
    assert not step(x, block, k_cache, v_cache, 3, 4, 1e-5)  # autograd
    assert torch.equal(x, before)


@pytestmark_kernel
def test_weight_kinds_agree_with_the_c_code() -> None:
    from gpt2cli.model import _kernels

    kinds = (compiled_kernels.F32, compiled_kernels.F16, compiled_kernels.I8)
    assert kinds == (_kernels.F32, _kernels.F16, _kernels.I8)


@pytestmark_kernel
def test_mismatched_widths_never_reach_the_kernel() -> None:
    """A row of the wrong width gets torch's own error, not a read past the end of a tensor."""
    layer = layer_of(40, 24, bias=True, seed=1)
    with torch.no_grad():
        assert compiled_kernels.operands(torch.randn(1, 20), layer) is None
        with pytest.raises(RuntimeError):
            linear(torch.randn(1, 20), layer)
        packed = StreamedWeight(layer.weight, "int8")
        with pytest.raises(RuntimeError):
            packed(torch.randn(2, 20), layer.bias)
        with pytest.raises(ValueError, match="do not match"):
            compiled_kernels.matvec(
                packed.operands, torch.randn(1, 24), None, torch.empty(1, 7), False
            )


@pytestmark_kernel
@pytest.mark.parametrize("t", [7, 8])
def test_attention_keeps_nan_whatever_the_position(t: int) -> None:
    """A NaN query gives NaN, as torch does, in the 8-wide exp and in its scalar tail alike."""
    k_cache, v_cache = torch.randn(2, 1, 1, 16, 8)
    qkv = torch.randn(1, 24)
    qkv[0, 0] = float("nan")
    assert attend(qkv, k_cache, v_cache, t).isnan().all()


@pytestmark_kernel
def test_layer_norm_of_the_wrong_width_is_torchs_error() -> None:
    with torch.no_grad(), pytest.raises(RuntimeError):
        compiled_kernels.layer_norm(torch.randn(1, 64), torch.ones(8), torch.zeros(8), 1e-5)


@pytestmark_kernel
def test_a_residual_added_to_its_own_input_is_right() -> None:
    """x += layer(x): the kernel would write x while reading it, so torch's path runs."""
    layer = layer_of(48, 48, bias=True, seed=3)
    x = torch.randn(1, 48)
    with torch.no_grad():
        expected = x + F.linear(x, layer.weight, layer.bias)
        torch.testing.assert_close(add_linear_(x, x, layer), expected)
