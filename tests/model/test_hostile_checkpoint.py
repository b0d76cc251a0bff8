"""Hostile checkpoints: a config.json that declares a size its weights do not have (a million
layers: refused in well under a second, before anything of that size is built), values of the
wrong type or range, weights of a dtype gpt2 never writes, truncated weights, a training state
of the wrong shape. Each is one error line naming the file."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from gpt2cli.errors import Gpt2Error
from gpt2cli.model import hf
from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.train import checkpoint


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("hostile-checkpoint") / "model"
    hf.save_pretrained(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32)), directory)
    return directory


def copy_with(model_dir: Path, tmp_path: Path, **config: object) -> Path:
    directory = tmp_path / "copy"
    shutil.copytree(model_dir, directory)
    values = json.loads((model_dir / "config.json").read_text())
    values.update(config)
    (directory / "config.json").write_text(json.dumps(values))
    return directory


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"n_layer": 1_000_000}, "declares 1,000,000 layers, the weights hold 2"),
        ({"n_layer": 10**18}, "declares 1,000,000,000,000,000,000 layers"),
        ({"n_layer": 3}, "declares 3 layers, the weights hold 2"),
        ({"n_embd": 2**40, "n_head": 2}, "has shape (50257, 32), the config needs"),
        ({"n_positions": 2**40}, "weight wpe.weight has shape (32, 32)"),
        ({"vocab_size": 2**40}, "weight wte.weight has shape (50257, 32)"),
        ({"gpt2cli_padded_vocab_size": 2**40}, "not a padding gpt2 writes"),
        ({"n_layer": -1}, "n_layer must be a positive integer"),
        ({"n_layer": 0}, "n_layer must be a positive integer"),
        ({"n_layer": "2"}, "n_layer must be a positive integer"),
        ({"n_layer": 2.0}, "n_layer must be a positive integer"),
        ({"n_layer": True}, "n_layer must be a positive integer"),
        ({"n_layer": None}, "n_layer must be a positive integer"),
        ({"n_head": 0}, "n_head must be a positive integer"),
        ({"n_head": 3}, "not divisible by n_head"),
        ({"layer_norm_epsilon": float("nan")}, "layer_norm_epsilon must be in (0, 1)"),
        ({"layer_norm_epsilon": -1}, "layer_norm_epsilon must be in (0, 1)"),
        ({"layer_norm_epsilon": "x"}, "not a model config"),
        ({"resid_pdrop": float("nan")}, "dropout must be in [0, 1)"),
        ({"resid_pdrop": "x"}, "not a model config"),
        ({"resid_pdrop": [1]}, "not a model config"),
        ({"model_type": "llama"}, "not a GPT-2 model"),
    ],
)
def test_a_hostile_config_is_one_error_before_building_anything(
    model_dir: Path, tmp_path: Path, config: dict, message: str
) -> None:
    directory = copy_with(model_dir, tmp_path, **config)
    start = time.perf_counter()
    with pytest.raises(Gpt2Error) as caught:
        hf.load_pretrained(directory)
    assert time.perf_counter() - start < 5
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_says_it_in_one_line(gpt2, model_dir: Path, tmp_path: Path) -> None:
    directory = copy_with(model_dir, tmp_path, n_layer=1_000_000)
    run = gpt2("sample", "--model", directory, "--max-tokens", "1", "hi")
    assert run.code == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [
        f"gpt2 sample: error: {directory}: config.json declares 1,000,000 layers, the weights "
        "hold 2 (the checkpoint's config.json does not match its weights)"
    ]


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, torch.uint8])
def test_weights_of_a_dtype_gpt2_never_writes_are_refused(
    model_dir: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    from safetensors.torch import load_file, save_file

    directory = copy_with(model_dir, tmp_path)
    tensors = load_file(str(model_dir / "model.safetensors"))
    tensors["transformer.h.0.ln_1.bias"] = tensors["transformer.h.0.ln_1.bias"].to(dtype)
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(Gpt2Error, match=r"weight h\.0\.ln_1\.bias is torch\.\w+, not floating"):
        hf.load_pretrained(directory)


def test_truncated_and_flipped_weights(model_dir: Path, tmp_path: Path) -> None:
    directory = copy_with(model_dir, tmp_path)
    data = (model_dir / "model.safetensors").read_bytes()
    header = int.from_bytes(data[:8], "little")
    for cut in (0, 4, 8, 8 + header // 2, 8 + header, len(data) // 2, len(data) - 1):
        (directory / "model.safetensors").write_bytes(data[:cut])
        with pytest.raises(Gpt2Error) as caught:
            hf.load_pretrained(directory)
        assert "\n" not in str(caught.value)
    forged = (2**63).to_bytes(8, "little") + data[8:]
    (directory / "model.safetensors").write_bytes(forged)
    with pytest.raises(Gpt2Error):
        hf.load_pretrained(directory)


@pytest.mark.parametrize(
    "rng",
    [
        {"python": None, "numpy": None, "torch": b""},
        {"python": [3, [1, 2], None], "numpy": ["MT19937", b"\0" * 7, 0, 0, 0.0], "torch": b""},
        {"python": "x"},
        {},
    ],
)
def test_a_training_state_of_the_wrong_shape_is_one_error(rng: dict, tmp_path: Path) -> None:
    with pytest.raises(Gpt2Error) as caught, checkpoint.restoring(tmp_path):
        checkpoint.set_rng_state(rng, torch.device("cpu"))
    assert str(caught.value).startswith(f"{tmp_path}/training_state.pt: damaged training state")
