"""Activation recompute (`gpt2 train --recompute`): the same loss and gradients as without."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from _train_runs import make_shards  # tests/ is on sys.path

from gpt2cli.model import decoding
from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.train import hardware, metrics_log, setup

torch.set_num_threads(1)


def tiny(dropout: float = 0.0) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=100)
    return GPT(config.with_padding(64) if dropout == 0.0 else config).train()


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_recompute_gives_the_same_loss_and_gradients(dropout: float) -> None:
    plain = tiny(dropout)
    recomputed = copy.deepcopy(plain)
    recomputed.recompute = True
    x = torch.randint(0, 100, (3, 24))
    y = torch.randint(0, 100, (3, 24))
    losses = []
    for model in (plain, recomputed):
        torch.manual_seed(1)  # the same dropout masks: checkpoint replays the RNG state
        _, loss = model(x, y)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0])
    named = dict(recomputed.named_parameters())
    for name, parameter in plain.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        torch.testing.assert_close(named[name].grad, parameter.grad, msg=name)


def saved_for_backward(model: GPT) -> int:
    """How many tensors one forward keeps for the backward."""
    saved: list[torch.Tensor] = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    x = torch.randint(0, 100, (2, 16))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(x, x)[1].backward()
    return len(saved)


def test_recompute_keeps_fewer_tensors_for_the_backward() -> None:
    model = tiny()
    plain = saved_for_backward(model)
    model.recompute = True
    assert saved_for_backward(model) < plain / 2


def test_a_kv_cache_is_never_recomputed_into() -> None:
    model = tiny().eval()
    ids = torch.randint(0, 100, (2, 5))
    caches = []
    for on in (False, True):
        model.recompute = on
        cache = decoding.new_cache(model, 2, 16)
        with torch.enable_grad():  # the general path, with autograd
            logits = decoding.forward_cached(model, ids, cache)
            logits.sum().backward()  # a recompute here would write the cache again, further on
        caches.append(cache)
    for a, b in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v):
        torch.testing.assert_close(a, b)


def test_gpt2_train_recompute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_shards(tmp_path / "shards")
    seen = []
    choose = hardware.choose_micro_batch

    def spy(config, model, env, precision):  # what the --micro-batch auto probe will run
        seen.append(model.recompute)
        return choose(config, model, env, precision)

    monkeypatch.setattr(hardware, "choose_micro_batch", spy)
    losses = []
    for flag in (False, True):
        run = tmp_path / f"run-{flag}"
        given = dict(data=str(data), out=str(run), size="tiny", seq_len=32, batch_size=8)
        given |= dict(micro_batch="auto", max_steps=3, eval_every=3, device="cpu")
        setup.train(given | ({"recompute": True} if flag else {}))
        records = metrics_log.read_metrics(run / "metrics.jsonl")
        losses.append([r["loss"] for r in records if r["kind"] == "train"])
        assert f"recompute: {'true' if flag else 'false'}" in (run / "config.yaml").read_text()
    assert seen == [False, True]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
