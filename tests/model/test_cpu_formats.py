"""CPU inference formats (--dtype fp16, bf16, int8 on a CPU): each packed path, through the
compiled kernel and through FBGEMM's, against the plain fp32 path on the same weight values, and
int8's fidelity on a briefly trained model."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from gpt2cli.errors import UsageError
from gpt2cli.infer import generation
from gpt2cli.model import compiled_kernels, decoding, hf, packed_weights, resolve
from gpt2cli.model.compiled_kernels import StreamedWeight
from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.model.packed_weights import Fp16Weight, Int8Weight, pack_weights
from gpt2cli.text.tokenizer import encode

torch.set_num_threads(1)
HAS_FBGEMM = packed_weights.fbgemm_fp16_available() and packed_weights.fbgemm_int8_available()
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def trained() -> tuple[GPT, list[int]]:
    """A tiny GPT-2 trained for a few seconds on the first 85% of README.md; the rest's ids."""
    ids = encode(README.read_text(encoding="utf-8"))
    cut = len(ids) * 85 // 100
    train, held_out = torch.tensor(ids[:cut]), ids[cut:]
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        starts = torch.randint(0, len(train) - 33, (4,), generator=generator)
        batch = torch.stack([train[s : s + 33] for s in starts.tolist()])
        _, loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), held_out


def rounded(model: GPT, dtype: torch.dtype) -> GPT:
    """The plain path's model: fp32, every matrix rounded to ``dtype``'s values."""
    plain = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in plain.named_parameters():
            if parameter.dim() == 2 and "wpe" not in name:
                parameter.copy_(parameter.to(dtype).float())
    return plain


def kernels(kernel: str) -> tuple[type, type]:
    """The packed classes of fp16/bf16 and int8 for the kernel the test runs through."""
    if kernel == "compiled":
        return StreamedWeight, StreamedWeight
    if not HAS_FBGEMM:
        pytest.skip("this torch build has no FBGEMM (not x86)")
    return Fp16Weight, Int8Weight


def packed(model: GPT, fmt: str) -> GPT:
    fast = copy.deepcopy(model)
    pack_weights(fast, fmt)
    return fast


def decode_logits(model: GPT, ids: list[int]) -> torch.Tensor:
    """Logits of every position, one position at a time through the KV cache (the CPU's
    decoding step), rows (T, vocab)."""
    cache = decoding.new_cache(model, 1)
    rows = []
    with torch.no_grad():
        for token in ids:
            rows.append(decoding.forward_cached(model, torch.tensor([[token]]), cache)[0])
    return torch.stack(rows)


@pytest.mark.parametrize("fmt, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_formats_equal_the_plain_path(
    trained, fmt: str, dtype: torch.dtype, kernel: str
) -> None:
    half, _ = kernels(kernel)
    model, held_out = trained
    plain, fast = rounded(model, dtype), packed(model, fmt)
    assert isinstance(fast.transformer.h[0].mlp.c_fc.packed, half)
    assert fast.transformer.h[0].mlp.c_fc.weight.numel() == 0  # only the packed copy is kept
    x = torch.tensor([held_out[:48]])
    with torch.no_grad():
        expected, _ = plain(x)
        got, _ = fast(x)  # many rows: the prompt / scoring path
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        decode_logits(fast, held_out[:24]), expected[0, :24], rtol=1e-4, atol=1e-4
    )


def test_int8_equals_the_plain_path_on_its_weights(trained, kernel: str) -> None:
    _, int8 = kernels(kernel)
    model, held_out = trained
    fast = packed(model, "int8")
    layer = fast.transformer.h[1].attn.c_attn
    assert isinstance(layer.packed, int8)
    plain = copy.deepcopy(model)
    with torch.no_grad():  # the values int8 stands for; the embedding: as the output layer's
        for name, module in fast.named_modules():
            packed_weight = module.__dict__.get("packed")
            if isinstance(packed_weight, int8) and name != "lm_head":
                plain.get_submodule(name).weight.copy_(module.packed.dequantized())
        plain.transformer.wte.weight.copy_(fast.transformer.wte.weight)
    head = fast.lm_head.packed
    if kernel == "compiled":  # the output layer in int8 too
        assert isinstance(head, StreamedWeight) and head.values.dtype == torch.int8
        torch.testing.assert_close(head.dequantized(), fast.transformer.wte.weight)
    else:
        assert isinstance(head, Fp16Weight)
    error = plain.transformer.h[1].attn.c_attn.weight - model.transformer.h[1].attn.c_attn.weight
    steps = model.transformer.h[1].attn.c_attn.weight.abs().amax(dim=1, keepdim=True) / 127
    assert (error.abs() <= steps / 2 + 1e-7).all()  # rounded to the nearest step of its row
    x = torch.tensor([held_out[:48]])
    with torch.no_grad():
        expected, _ = plain(x)
        got, _ = fast(x)  # many rows: int8 weights widened, fp32 activations
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    one_by_one = decode_logits(fast, held_out[:24])
    if kernel == "compiled":  # activations stay fp32: the same values
        torch.testing.assert_close(one_by_one, expected[0, :24], rtol=1e-4, atol=1e-4)
        return
    # FBGEMM rounds one row's activations to 8 bits: close, the same most likely tokens.
    spread = expected[0, :24].std()
    assert (one_by_one - expected[0, :24]).abs().max() < 0.1 * spread
    same = (one_by_one.argmax(-1) == expected[0, :24].argmax(-1)).float().mean()
    assert same >= 0.9


def word_perplexity(model: GPT, ids: list[int], text_words: int) -> float:
    """exp(total NLL / words) over the held-out ids, predicted one position at a time through
    the decoding step in windows of the context (as `gpt2 sample` runs the model)."""
    block = model.config.block_size
    nll = 0.0
    for start in range(0, len(ids) - 1, block - 1):
        window = ids[start : start + block]
        logits = decode_logits(model, window[:-1])
        targets = torch.tensor(window[1:])
        nll += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
    return math.exp(nll / text_words)


@pytest.mark.parametrize("path", ["compiled", "fbgemm-vnni", "fbgemm-avx2"])
def test_int8_fidelity_word_perplexity_and_greedy_tokens(trained, path: str, monkeypatch) -> None:
    """The compiled kernel (fp32 activations); FBGEMM with VNNI (8-bit activations) and
    without it (AVX2: 7-bit ones): each within 1% of fp32's word perplexity."""
    if path == "compiled" and not compiled_kernels.available():
        pytest.skip("the compiled kernel is not built here")
    model, held_out = trained
    if path != "compiled":
        kernels("torch")
        vnni = path == "fbgemm-vnni"
        monkeypatch.setattr(compiled_kernels, "_KERNELS", None)
        monkeypatch.setattr(packed_weights, "_has_vnni", lambda: vnni)
    fast = packed(model, "int8")
    if path != "compiled":
        assert fast.transformer.h[0].mlp.c_fc.packed.reduce_range is not vnni
    ids = held_out[:1200]
    from gpt2cli.text.tokenizer import decode

    words = len(decode(ids).split())
    reference = word_perplexity(model, ids, words)
    quantized = word_perplexity(fast, ids, words)
    print(f"{path}: word perplexity fp32 {reference:.2f}, int8 {quantized:.2f}")
    assert abs(quantized / reference - 1) < 0.01, (reference, quantized)
    equal = 0
    prompts = [held_out[i : i + 12] for i in range(0, 1200, 120)]
    for prompt in prompts:
        settings = generation.SamplingSettings(16, greedy=True, ignore_eot=True)
        want = generation.generate(model, [prompt], settings)[0].ids
        got = generation.generate(fast, [prompt], settings)[0].ids
        equal += want == got
    print(f"greedy: {equal} of {len(prompts)} prompts give the same 16 tokens")
    assert equal >= 0.7 * len(prompts), equal


def test_load_model_packs_on_cpu_and_int8_is_cpu_only(
    tmp_path: Path, trained, gpt2, kernel: str
) -> None:
    half, int8 = kernels(kernel)
    model, _ = trained
    hf.save_pretrained(model, tmp_path / "m")
    for name, kind in (("fp16", half), ("bf16", half), ("int8", int8)):
        loaded = resolve.load_model(tmp_path / "m", dtype=name).model
        assert isinstance(loaded.transformer.h[0].mlp.c_proj.packed, kind)
        assert loaded.transformer.wte.weight.dtype == torch.float32
    result = gpt2(
        "sample", "-m", tmp_path / "m", "--dtype", "int8", "--greedy", "--max-tokens", "8", "x"
    )
    assert result.code == 0, result.stderr
    assert "int8" in result.stderr
    with pytest.raises(UsageError, match="CPU"):
        resolve.resolve_dtype("int8", torch.device("cuda"))
    from gpt2cli import dtypes

    with pytest.raises(UsageError):
        dtypes.canonical("int8")  # training and the rest: no int8
    assert dtypes.canonical("INT8", int8=True) == "int8"
