"""The GPT-2 model: sizes, init, padded vocabulary, losses, the KV cache."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.model import decoding, hf
from gpt2cli.model.cpu_kernels import Linear, cross_entropy, store_column_major
from gpt2cli.model.gpt import GPT, SIZES, GPTConfig, config_for_size
from gpt2cli.model.sizes import HUB_NAMES

torch.set_num_threads(1)


def tiny(**overrides: object) -> GPTConfig:
    values = dict(n_layer=2, n_head=2, n_embd=64, block_size=64)
    values.update(overrides)
    return GPTConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(tiny()).eval()


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50257, (batch, length), generator=generator)


@pytest.mark.parametrize(
    "names, shape",
    [
        (("124m", "117m", "small", "gpt2", "GPT2", " 124M "), (12, 12, 768)),
        (("355m", "345m", "medium", "gpt2-medium"), (24, 16, 1024)),
        (("774m", "762m", "large", "gpt2-large"), (36, 20, 1280)),
        (("1.5b", "1558m", "1542m", "xl", "gpt2-xl", "1.5B"), (48, 25, 1600)),
        (("tiny",), (2, 2, 64)),
    ],
)
def test_sizes_by_every_name(names: tuple[str, ...], shape: tuple[int, int, int]) -> None:
    for name in names:
        config = config_for_size(name)
        assert (config.n_layer, config.n_head, config.n_embd) == shape
        assert config.vocab_size == 50257


def test_unknown_size_is_a_usage_error_that_lists_every_name() -> None:
    with pytest.raises(UsageError, match="unknown model size") as error:
        config_for_size("7b")
    for name in ("117m", "gpt2-medium", "gpt2-large", "1542m", "gpt2-xl", "mini"):
        assert name in str(error.value)


def test_every_hub_name_is_a_size_with_the_hub_shape() -> None:
    for short, repo in HUB_NAMES.items():
        assert repo.endswith("/" + short)
    assert hf.repo_id_for("gpt2-large") == "openai-community/gpt2-large"
    assert config_for_size("gpt2-large").n_layer == 36


def test_config_for_size_returns_a_copy() -> None:
    config_for_size("tiny").n_layer = 99
    assert SIZES["tiny"].n_layer == 2


@pytest.mark.parametrize(
    "size, count",
    [("124m", 124_439_808), ("355m", 354_823_168), ("774m", 774_030_080), ("1.5b", 1_557_611_200)],
)
def test_parameter_counts_match_the_released_models(size: str, count: int) -> None:
    model = GPT.without_weights(config_for_size(size))
    assert model.num_parameters() == count
    padded = config_for_size(size).with_padding(128)
    assert GPT.without_weights(padded).num_parameters() == count


def test_flops_per_token_formula() -> None:
    model = GPT.without_weights(config_for_size("124m"))
    n = model.num_parameters(non_embedding=True)
    assert n == 124_439_808 - 1024 * 768
    assert model.flops_per_token(1024) == 6 * n + 12 * 12 * 768 * 1024


def test_config_dict_round_trip_and_errors() -> None:
    config = tiny(padded_vocab_size=50304, dropout=0.1)
    assert GPTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(Gpt2Error, match="unknown key"):
        GPTConfig.from_dict({**config.to_dict(), "n_lyer": 3})
    with pytest.raises(Gpt2Error, match="not divisible"):
        tiny(n_head=3)
    with pytest.raises(Gpt2Error, match="smaller than"):
        tiny(padded_vocab_size=100)
    with pytest.raises(Gpt2Error, match="n_layer"):
        GPTConfig.from_dict({"n_head": 2, "n_embd": 64})


def test_init_follows_gpt2() -> None:
    torch.manual_seed(0)
    config = GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=64)
    model = GPT(config)
    assert model.lm_head.weight is model.transformer.wte.weight
    residual = torch.cat(
        [b.attn.c_proj.weight.flatten() for b in model.transformer.h]
        + [b.mlp.c_proj.weight.flatten() for b in model.transformer.h]
    )
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            assert not parameter.any(), name
        if ".ln_" in name and name.endswith("weight"):
            assert (parameter == 1).all(), name


def test_forward_loss_and_last(model: GPT) -> None:
    x, y = ids(2, 16), ids(2, 16, seed=2)
    logits, loss = model(x, y)
    assert logits.shape == (2, 16, 50257)
    expected = torch.nn.functional.cross_entropy(logits.view(-1, 50257), y.view(-1))
    torch.testing.assert_close(loss, expected)
    assert model(x)[1] is None
    # The output layer on chosen positions only (as scoring runs it).
    torch.testing.assert_close(model.logits(model.hidden_states(x)[:, -1]), logits[:, -1])
    y[:, :8] = -1  # ignored positions
    _, masked = model(x, y)
    expected = torch.nn.functional.cross_entropy(
        logits[:, 8:].reshape(-1, 50257), y[:, 8:].reshape(-1)
    )
    torch.testing.assert_close(masked, expected)


def test_too_long_input_is_an_error(model: GPT) -> None:
    with pytest.raises(Gpt2Error, match="longer than the model's context"):
        model(ids(1, 65))


def test_padded_vocabulary_changes_no_output(model: GPT) -> None:
    padded = GPT(tiny().with_padding(128))
    assert padded.transformer.wte.weight.shape[0] == 50304
    state = model.state_dict()
    extra = torch.randn(50304 - 50257, 64)  # whatever is in the padding rows must not matter
    state["transformer.wte.weight"] = torch.cat([state["transformer.wte.weight"], extra])
    state["lm_head.weight"] = state["transformer.wte.weight"]
    padded.load_state_dict(state)
    padded.eval()
    x, y = ids(2, 16), ids(2, 16, seed=2)
    logits, loss = model(x, y)
    plogits, ploss = padded(x, y)
    assert plogits.shape == logits.shape
    torch.testing.assert_close(plogits, logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(ploss, loss, rtol=0, atol=1e-6)
    last = padded.logits(padded.hidden_states(x)[:, -1])
    torch.testing.assert_close(last, logits[:, -1], rtol=0, atol=1e-5)
    # Training through the padded model: the padding rows get no gradient.
    padded.train()
    _, ploss = padded(x, y)
    ploss.backward()
    assert not padded.transformer.wte.weight.grad[50257:].any()


@pytest.mark.parametrize("batch, column_major", [(1, False), (3, False), (1, True), (3, True)])
def test_kv_cache_gives_the_full_forward_logits(
    model: GPT, batch: int, column_major: bool, kernel: str
) -> None:
    """Prefill, a chunk, then one position at a time (the CPU's functional decoding step),
    with the output layer in either memory layout, through either kernel."""
    if column_major:
        model = copy.deepcopy(model)
        store_column_major(model.transformer.wte.weight)
        weight = model.lm_head.weight
        assert weight is model.transformer.wte.weight and weight.stride() == (1, weight.shape[0])
    x = ids(batch, 40)
    with torch.no_grad():
        full, _ = model(x)
        cache = decoding.new_cache(model, batch)
        pieces = [decoding.forward_cached(model, x[:, :10], cache, last_only=False)]
        # a chunk
        pieces.append(decoding.forward_cached(model, x[:, 10:25], cache, last_only=False))
        for t in range(25, 40):
            pieces.append(decoding.forward_cached(model, x[:, t : t + 1], cache, last_only=False))
    assert cache.length == 40
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


def test_output_layer_layout_round_trip(model: GPT) -> None:
    """Column-major and back: the same tied Parameter, the same values, row-major again."""
    model = copy.deepcopy(model)
    before = model.lm_head.weight.detach().clone()
    store_column_major(model.transformer.wte.weight)
    store_column_major(model.transformer.wte.weight)  # already column-major: nothing to do
    store_column_major(model.transformer.wte.weight, False)
    weight = model.transformer.wte.weight
    assert weight is model.lm_head.weight and weight.is_contiguous()
    assert torch.equal(weight, before)


def test_kv_cache_with_left_padding(model: GPT) -> None:
    a, b = ids(1, 12)[0], ids(1, 20, seed=3)[0]
    batch = torch.stack([torch.cat([torch.full((8,), 50256), a]), b])
    with torch.no_grad():
        cache = decoding.new_cache(model, 2, pad=torch.tensor([8, 0]))
        out = decoding.forward_cached(model, batch, cache, last_only=False)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[0, 8:], model(a[None])[0][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(out[1], model(b[None])[0][0], rtol=0, atol=1e-5)
        step = decoding.forward_cached(model, torch.tensor([[7], [9]]), cache)
        torch.testing.assert_close(
            step[0],
            model(torch.cat([a, torch.tensor([7])])[None])[0][0, -1],
            rtol=0,
            atol=1e-5,
        )
        cache.select(torch.tensor([1]))  # drop a finished row
        step = decoding.forward_cached(model, torch.tensor([[5]]), cache)
        expected = model(torch.cat([b, torch.tensor([9, 5])])[None])[0][:, -1]
        torch.testing.assert_close(step, expected, rtol=0, atol=1e-5)


def test_kv_cache_overflow_is_an_error(model: GPT) -> None:
    cache = decoding.new_cache(model, 1, max_len=4)
    with torch.no_grad(), pytest.raises(Gpt2Error, match="KV cache full"):
        decoding.forward_cached(model, ids(1, 5), cache)


@pytest.mark.parametrize("ignore", [False, True])
def test_cpu_cross_entropy_equals_torch_loss_and_gradient(ignore: bool) -> None:
    torch.manual_seed(0)
    logits = torch.randn(37, 300)
    logits[:, 290:] = float("-inf")  # padded vocabulary columns
    targets = torch.randint(0, 290, (37,))
    if ignore:
        targets[::4] = -1
    ours = logits.clone().requires_grad_(True)
    reference = logits.clone().requires_grad_(True)
    (3 * cross_entropy(ours, targets)).backward()
    (3 * F.cross_entropy(reference, targets, ignore_index=-1)).backward()
    torch.testing.assert_close(ours.grad, reference.grad)
    torch.testing.assert_close(
        cross_entropy(logits, targets), F.cross_entropy(logits, targets, ignore_index=-1)
    )


def test_cpu_cross_entropy_ignores_padding_columns() -> None:
    """``classes``: the columns past it (the padded output layer) take no probability and get a
    zero gradient, whatever they hold."""
    torch.manual_seed(1)
    logits = torch.randn(21, 300) * 3
    targets = torch.randint(0, 290, (21,))
    ours = logits.clone().requires_grad_(True)
    reference = logits[:, :290].clone().requires_grad_(True)
    (2 * cross_entropy(ours, targets, 290)).backward()
    (2 * F.cross_entropy(reference, targets)).backward()
    torch.testing.assert_close(ours.grad[:, :290], reference.grad)
    assert torch.count_nonzero(ours.grad[:, 290:]) == 0


@pytest.mark.parametrize("rows", [1, 5, 64, 65])
def test_linear_paths_equal_nn_linear(rows: int, kernel: str) -> None:
    """Few rows on a CPU go weight-first (without a gradient: through the compiled kernel, or
    one row through oneDNN): same outputs and, with autograd, the same gradients as
    ``F.linear``."""
    torch.manual_seed(rows)
    layer = Linear(48, 80)
    x = torch.randn(rows, 1, 48, requires_grad=True)
    expected = F.linear(x, layer.weight, layer.bias)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x.detach()), expected.detach(), atol=1e-5, rtol=1e-5)
    got = layer(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    got.square().sum().backward()
    grads = (x.grad.clone(), layer.weight.grad.clone())
    x.grad, layer.weight.grad = None, None
    expected.square().sum().backward()
    torch.testing.assert_close(grads[0], x.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[1], layer.weight.grad, atol=1e-5, rtol=1e-5)
