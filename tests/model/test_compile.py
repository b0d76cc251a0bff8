"""torch.compile without a GPU: the training step (also with activation recompute) and the
decoding step each compile, with the inductor backend on this CPU, to graphs without a break
(``fullgraph=True`` raises on any) and compute what eager mode computes. Under compilation the
model takes torch's kernels, not those of ``gpt2cli.model.cpu_kernels``: the graphs CUDA compiles.
"""

from __future__ import annotations

import copy

import pytest
import torch

from gpt2cli.model import decoding
from gpt2cli.model.gpt import GPT, GPTConfig

torch.set_num_threads(1)
CLOSE = dict(rtol=1e-4, atol=1e-5)  # inductor may fuse and reorder the float sums


def tiny(padded: bool = True) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=100)
    return GPT(config.with_padding(64) if padded else config)


@pytest.mark.parametrize("recompute", [False, True], ids=["plain", "recompute"])
def test_the_training_step_compiles_to_one_graph(recompute: bool) -> None:
    eager = tiny().train()
    model = copy.deepcopy(eager)
    model.recompute = recompute  # `gpt2 train --compile --recompute`
    compiled = torch.compile(model, backend="inductor", fullgraph=True)  # as `gpt2 train --compile`
    x = torch.randint(0, 100, (2, 16))
    y = torch.randint(0, 100, (2, 16))
    y[0, :3] = -1  # targets of -1 are ignored
    torch._dynamo.reset()
    _, loss = compiled(x, y)
    loss.backward()
    _, expected = eager(x, y)
    expected.backward()
    torch.testing.assert_close(loss, expected, **CLOSE)
    named = dict(model.named_parameters())
    for name, parameter in eager.named_parameters():
        torch.testing.assert_close(named[name].grad, parameter.grad, **CLOSE, msg=name)


def test_the_decoding_step_compiles_to_one_graph() -> None:
    model = tiny(padded=False).eval()
    prompt = torch.randint(0, 100, (2, 6))
    step = torch.compile(decoding.forward_cached, backend="inductor", fullgraph=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch.no_grad():
        caches = [decoding.new_cache(model, 2, 16) for _ in range(2)]
        ids = [decoding.forward_cached(model, prompt, c).argmax(-1, keepdim=True) for c in caches]
        torch.testing.assert_close(ids[0], ids[1])
        for _ in range(3):  # the second step compiles again, with the cache length symbolic
            got = step(model, ids[0], caches[0])
            want = decoding.forward_cached(model, ids[0], caches[1])  # the CPU's eager step
            torch.testing.assert_close(got, want, **CLOSE)
            ids[0] = want.argmax(-1, keepdim=True)
    assert caches[0].length == caches[1].length == 9
    for a, b in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v):
        torch.testing.assert_close(a, b, **CLOSE)
    # One graph for the first step, one for every later length: no recompile per token.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2
