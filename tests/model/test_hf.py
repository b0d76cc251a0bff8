"""Hugging Face interop (both directions, against transformers), the HF cache, --model specs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from gpt2cli.errors import Gpt2Error
from gpt2cli.model import hf, resolve
from gpt2cli.model.gpt import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)


def hf_model(seed: int = 0, **overrides: object):
    torch.manual_seed(seed)
    values = dict(n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=50257)
    values.update(overrides)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**values)).eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hf") / "model"
    hf_model(initializer_range=0.1).save_pretrained(directory)
    return directory


def ids(batch: int = 2, length: int = 24) -> torch.Tensor:
    return torch.randint(0, 50257, (batch, length), generator=torch.Generator().manual_seed(5))


def hf_logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


def test_transformers_to_ours_same_logits(hf_dir: Path) -> None:
    reference = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    ours = hf.load_pretrained(hf_dir)
    assert ours.config == GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, dropout=0.1)
    assert ours.lm_head.weight is ours.transformer.wte.weight
    x = ids()
    with torch.no_grad():
        logits, _ = ours(x)
    assert (logits - hf_logits(reference, x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("padded", [None, 50304])
def test_ours_to_transformers_same_logits(tmp_path: Path, padded: int | None) -> None:
    torch.manual_seed(3)
    ours = GPT(
        GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, padded_vocab_size=padded)
    ).eval()
    hf.save_pretrained(ours, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == [
        "config.json",
        "generation_config.json",
        "merges.txt",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    x = ids()
    with torch.no_grad():
        logits, _ = ours(x)
    assert (logits - hf_logits(reference, x)).abs().max().item() <= 1e-5
    # And back: the padding is remembered, the weights are the same.
    again = hf.load_pretrained(tmp_path / "out")
    assert again.config == ours.config
    for (name, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_legacy_pytorch_bin_with_buffers(tmp_path: Path) -> None:
    """Released GPT-2 files: no "transformer." prefix, attn.bias/masked_bias buffers, a .bin."""
    reference = hf_model(seed=1)
    state = {k.removeprefix("transformer."): v for k, v in reference.state_dict().items()}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64, dtype=torch.uint8))
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    directory = tmp_path / "legacy"
    directory.mkdir()
    torch.save(state, directory / "pytorch_model.bin")
    reference.config.to_json_file(directory / "config.json")
    ours = hf.load_pretrained(directory)
    x = ids()
    with torch.no_grad():
        assert (ours(x)[0] - hf_logits(reference, x)).abs().max().item() <= 1e-5


def test_dtype_on_load(hf_dir: Path) -> None:
    model = hf.load_pretrained(hf_dir, dtype=torch.bfloat16)
    assert model.transformer.h[0].attn.c_attn.weight.dtype == torch.bfloat16


def test_wrong_shapes_are_one_clear_error(tmp_path: Path, hf_dir: Path) -> None:
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes((hf_dir / "model.safetensors").read_bytes())
    config = json.loads((hf_dir / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "n_embd": 128}))
    with pytest.raises(Gpt2Error, match=r"has shape .* the config needs"):
        hf.load_pretrained(directory)
    (directory / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(Gpt2Error, match="declares 3 layers, the weights hold 2"):
        hf.load_pretrained(directory)
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(Gpt2Error, match="not a GPT-2 model"):
        hf.load_pretrained(directory)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(Gpt2Error, match="cannot read the model config"):
        hf.load_pretrained(directory)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(Gpt2Error, match="cannot read the weights"):
        hf.load_pretrained(directory)


def fake_cache(root: Path, source: Path, repo: str = "openai-community/gpt2") -> Path:
    """An HF hub cache entry: blobs, a snapshot of symlinks, refs/main."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        blob = repo_dir / "blobs" / f"blob-{name}"
        blob.write_bytes((source / name).read_bytes())
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    # An older snapshot without refs must not be taken.
    (repo_dir / "snapshots" / "old").mkdir()
    return snapshot


def test_hf_cache_lookup_by_name(
    tmp_path: Path, hf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    snapshot = fake_cache(cache, hf_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    for name in ("gpt2", "openai-community/gpt2"):
        assert hf.find_in_cache(name) == snapshot
        loaded = resolve.load_model(name)
        assert loaded.path == snapshot
        assert "Hugging Face cache" in loaded.description
    # HF_HOME/hub when HF_HUB_CACHE is not set.
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    fake_cache(tmp_path / "home" / "hub", hf_dir, "openai-community/gpt2-medium")
    assert hf.find_in_cache("gpt2-medium").parent.parent.name == (
        "models--openai-community--gpt2-medium"
    )


def test_missing_model_says_where_it_looked_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Gpt2Error) as caught:
        resolve.load_model("gpt2-xl")
    message = str(caught.value)
    assert str(tmp_path / "empty" / "models--openai-community--gpt2-xl") in message
    assert "download openai-community/gpt2-xl" in message
    with pytest.raises(Gpt2Error, match="no such file or directory"):
        resolve.load_model("./nowhere/model")


def write_checkpoint(directory: Path, model: GPT, complete: bool = True) -> Path:
    hf.save_pretrained(model, directory)
    (directory / "training_state.pt").write_bytes(b"")
    if complete:
        (directory / "COMPLETE").touch()
    return directory


def test_model_specs_run_dir_checkpoint_file(tmp_path: Path, hf_dir: Path) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32))
    run = tmp_path / "run"
    with pytest.raises(Gpt2Error, match="not a model"):
        resolve.load_model(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(Gpt2Error, match="without a complete checkpoint"):
        resolve.load_model(run)
    write_checkpoint(run / "checkpoints" / "step-00000100", model)
    write_checkpoint(run / "checkpoints" / "step-00000200", model)
    write_checkpoint(run / "checkpoints" / "step-00000300", model, complete=False)
    write_checkpoint(run / "checkpoints" / "step-00000400.tmp-123", model)
    assert resolve.load_model(run).path == run / "checkpoints" / "step-00000200"
    assert resolve.latest_complete(run) == run / "checkpoints" / "step-00000200"
    write_checkpoint(run / "final", model, complete=False)
    assert resolve.load_model(run).path.name == "step-00000200"
    (run / "final" / "COMPLETE").touch()
    loaded = resolve.load_model(run)
    assert loaded.path == run / "final"
    assert loaded.config == model.config
    assert not loaded.model.training
    for incomplete in ("step-00000300", "step-00000400.tmp-123"):
        with pytest.raises(Gpt2Error, match="incomplete checkpoint"):
            resolve.load_model(run / "checkpoints" / incomplete)
    assert resolve.load_model(run / "checkpoints" / "step-00000100").path.name == "step-00000100"
    assert resolve.load_model(hf_dir / "model.safetensors").path == hf_dir
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(Gpt2Error, match="not a model"):
        resolve.load_model(tmp_path / "notes.txt")
