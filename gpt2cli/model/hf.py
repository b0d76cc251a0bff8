"""Hugging Face interop: GPT-2 weights in the HF layout, in and out, and the local HF cache.

The layout: docs/formats.md#hugging-face-layout. Hugging Face's ``Conv1D`` stores its weight as
(in, out), our ``nn.Linear`` as (out, in): the four projection matrices are transposed here.

Nothing here touches the network: :func:`find_in_cache` looks a name such as ``gpt2`` up in the
local cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and only
there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import (
    create_new,
    existing_directory,
    file_mode,
    open_own_file,
    remove_entry,
)
from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.model.sizes import HUB_NAMES
from gpt2cli.text import hf_tokenizer
from gpt2cli.text.tokenizer import EOT

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
PYTORCH_INDEX_NAME = "pytorch_model.bin.index.json"
WEIGHT_NAMES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, PYTORCH_INDEX_NAME)

# Weights stored transposed by Hugging Face's Conv1D.
_CONV1D_SUFFIXES = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
# Buffers some released checkpoints carry (the causal mask); not weights.
_IGNORED_SUFFIXES = ("attn.bias", "attn.masked_bias")
_EXTRA_KEY = "gpt2cli_padded_vocab_size"
_LAYER = re.compile(r"^h\.(\d+)\.")


# --- config ---------------------------------------------------------------------------------


def hf_config_dict(config: GPTConfig) -> dict[str, Any]:
    """A ``transformers.GPT2Config`` dict for our config (the vocabulary without padding)."""
    values: dict[str, Any] = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "activation_function": "gelu_new",
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_inner": None,
        "vocab_size": config.vocab_size,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "attn_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "resid_pdrop": config.dropout,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "bos_token_id": EOT,
        "eos_token_id": EOT,
        "tie_word_embeddings": True,
        "use_cache": True,
        "dtype": "float32",
    }
    if config.padded_vocab_size is not None:
        values[_EXTRA_KEY] = config.padded_vocab_size
    return values


def config_from_hf(values: Mapping[str, Any], where: str = "config.json") -> GPTConfig:
    """Our config from a ``transformers.GPT2Config`` dict; Gpt2Error if it is not GPT-2."""
    model_type = values.get("model_type")
    if model_type != "gpt2":
        raise Gpt2Error(
            f"{where}: not a GPT-2 model (model_type {model_type!r})",
            'only GPT-2 checkpoints (model_type "gpt2") can be loaded',
        )
    activation = values.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise Gpt2Error(f"{where}: activation_function {activation!r} is not GPT-2's gelu_new")
    n_embd = values.get("n_embd")
    n_inner = values.get("n_inner")
    if n_inner is not None and n_embd is not None and n_inner != 4 * n_embd:
        raise Gpt2Error(f"{where}: n_inner {n_inner} is not 4 x n_embd ({n_embd})")
    if values.get("scale_attn_by_inverse_layer_idx"):
        raise Gpt2Error(f"{where}: scale_attn_by_inverse_layer_idx is not supported")
    try:
        return GPTConfig(
            n_layer=values["n_layer"],
            n_head=values["n_head"],
            n_embd=values["n_embd"],
            block_size=values.get("n_positions", values.get("n_ctx", 1024)),
            vocab_size=values.get("vocab_size", 50257),
            padded_vocab_size=values.get(_EXTRA_KEY),
            layer_norm_epsilon=values.get("layer_norm_epsilon", 1e-5),
            dropout=float(values.get("resid_pdrop", 0.0) or 0.0),
        )
    except KeyError as error:
        raise Gpt2Error(f"{where}: missing key {error.args[0]!r}") from None
    except (TypeError, ValueError, OverflowError) as error:
        raise Gpt2Error(f"{where}: not a model config ({error})") from None
    except Gpt2Error as error:
        raise Gpt2Error(f"{where}: {error.message}", error.hint) from None


def read_config(directory: str | os.PathLike[str]) -> GPTConfig:
    """The model config of an HF-layout directory."""
    path = Path(directory) / CONFIG_NAME
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Gpt2Error(f"{directory}: not a model directory (no {CONFIG_NAME})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Gpt2Error(f"{path}: cannot read the model config: {error}") from None
    if not isinstance(values, dict):
        raise Gpt2Error(f"{path}: not a model config (not a JSON object)")
    return config_from_hf(values, str(path))


# --- weights --------------------------------------------------------------------------------


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under HF's names and shapes (contiguous, on CPU, padding rows dropped)."""
    vocab = model.config.vocab_size
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        tensor = tensor.detach()
        if name == "transformer.wte.weight":
            tensor = tensor[:vocab]
        if name.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        out[name] = tensor.to("cpu").contiguous()
    return out


def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """HF names and shapes of every weight of a config (without lm_head)."""
    C, L = config.n_embd, config.n_layer
    shapes: dict[str, tuple[int, ...]] = {
        "wte.weight": (config.vocab_size, C),
        "wpe.weight": (config.block_size, C),
        "ln_f.weight": (C,),
        "ln_f.bias": (C,),
    }
    for i in range(L):
        p = f"h.{i}."
        shapes.update(
            {
                p + "ln_1.weight": (C,),
                p + "ln_1.bias": (C,),
                p + "attn.c_attn.weight": (C, 3 * C),
                p + "attn.c_attn.bias": (3 * C,),
                p + "attn.c_proj.weight": (C, C),
                p + "attn.c_proj.bias": (C,),
                p + "ln_2.weight": (C,),
                p + "ln_2.bias": (C,),
                p + "mlp.c_fc.weight": (C, 4 * C),
                p + "mlp.c_fc.bias": (4 * C,),
                p + "mlp.c_proj.weight": (4 * C, C),
                p + "mlp.c_proj.bias": (C,),
            }
        )
    return shapes


def check_fits(shapes: Mapping[str, tuple[int, ...]], config: GPTConfig, where: str) -> None:
    """Gpt2Error unless the weights' names and shapes (``h.N.`` names, without the
    ``transformer.`` prefix) are the size ``config`` declares: checked in time linear in the
    weights there are, before anything of the config's size is built (a config.json may
    declare a million layers)."""
    layers = {int(match.group(1)) for name in shapes if (match := _LAYER.match(name))}
    held = max(layers) + 1 if layers else 0
    if held != config.n_layer:
        raise Gpt2Error(
            f"{where}: config.json declares {config.n_layer:,} layers, the weights hold {held:,}",
            "the checkpoint's config.json does not match its weights",
        )
    for name, shape in (
        ("wte.weight", (config.vocab_size, config.n_embd)),
        ("wpe.weight", (config.block_size, config.n_embd)),
    ):
        if name in shapes and tuple(shapes[name]) != shape:
            raise Gpt2Error(
                f"{where}: weight {name} has shape {tuple(shapes[name])}, the config needs {shape}",
                "the weights do not fit this model size",
            )
    if config.embedding_rows > 2 * config.vocab_size:
        raise Gpt2Error(
            f"{where}: padded_vocab_size {config.embedding_rows:,} is more than twice the "
            f"vocabulary ({config.vocab_size:,}): not a padding gpt2 writes"
        )


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Names (``transformer.`` prefix dropped) and shapes from a safetensors header, without
    reading a tensor; None if the file is not readable as safetensors (the loader says why)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            return {
                name.removeprefix("transformer."): tuple(handle.get_slice(name).get_shape())
                for name in handle.keys()  # noqa: SIM118 - safe_open is not a Mapping
            }
    except Exception:  # noqa: BLE001 - safetensors' own error types
        return None


def from_hf_state_dict(
    tensors: Mapping[str, torch.Tensor],
    config: GPTConfig,
    where: str = "checkpoint",
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> GPT:
    """A model from HF-named tensors (with or without the ``transformer.`` prefix)."""
    weights: dict[str, torch.Tensor] = {}
    lm_head = None
    for name, tensor in tensors.items():
        short = name[len("transformer.") :] if name.startswith("transformer.") else name
        if short == "lm_head.weight":
            lm_head = tensor
        elif ".".join(short.split(".")[-2:]) not in _IGNORED_SUFFIXES:
            weights[short] = tensor
    check_fits({name: tuple(t.shape) for name, t in weights.items()}, config, where)
    expected = _expected_shapes(config)
    missing = [name for name in expected if name not in weights]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise Gpt2Error(
            f"{where}: not a GPT-2 checkpoint of this config: missing weight(s) "
            f"{', '.join(missing[:3])}{more}"
        )
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise Gpt2Error(
            f"{where}: unexpected weight(s) {', '.join(unexpected[:3])} for a "
            f"{config.n_layer}-layer GPT-2",
            "the checkpoint does not match its config.json",
        )
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise Gpt2Error(
                f"{where}: weight {name} has shape {tuple(weights[name].shape)}, "
                f"the config needs {shape}",
                "the weights do not fit this model size",
            )
    if lm_head is not None and tuple(lm_head.shape) != expected["wte.weight"]:
        raise Gpt2Error(f"{where}: lm_head.weight has shape {tuple(lm_head.shape)}")
    if lm_head is not None and not torch.equal(lm_head, weights["wte.weight"]):
        raise Gpt2Error(
            f"{where}: lm_head.weight differs from wte.weight",
            "GPT-2 ties them; untied heads are not supported",
        )

    for name, tensor in weights.items():
        if not tensor.dtype.is_floating_point:  # gpt2 writes float weights only
            raise Gpt2Error(f"{where}: weight {name} is {tensor.dtype}, not floating point")
    target_dtype = dtype or weights["wte.weight"].dtype
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if name.endswith(_CONV1D_SUFFIXES):
            tensor = tensor.t()
        if name == "wte.weight" and config.embedding_rows != config.vocab_size:
            padding = tensor.new_zeros(config.embedding_rows - config.vocab_size, tensor.shape[1])
            tensor = torch.cat([tensor, padding])
        ours["transformer." + name] = tensor.to(device=device, dtype=target_dtype).contiguous()
    ours["lm_head.weight"] = ours["transformer.wte.weight"]
    model = GPT.without_weights(config)
    model.load_state_dict(ours, strict=True, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign
    return model


def _load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise Gpt2Error(f"{path}: no such file") from None
    except Exception as error:  # corrupt or foreign files raise many kinds of errors
        raise Gpt2Error(f"{path}: cannot read the weights: {error}".splitlines()[0]) from None
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise Gpt2Error(f"{path}: not a state dict of tensors")
    return loaded


def load_hf_tensors(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of an HF-layout directory (safetensors preferred, else pytorch_model.bin)."""
    root = Path(directory)
    for name in WEIGHT_NAMES:
        path = root / name
        if not path.exists():
            continue
        if not name.endswith(".index.json"):
            return _load_tensor_file(path)
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            files = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise Gpt2Error(f"{path}: not a weight index: {error}") from None
        tensors: dict[str, torch.Tensor] = {}
        for file in files:
            tensors.update(_load_tensor_file(root / file))
        return tensors
    raise Gpt2Error(
        f"{root}: no weights ({' or '.join(WEIGHT_NAMES[::2])})",
        "an HF-layout model directory holds config.json and model.safetensors",
    )


def generation_config_dict(config: GPTConfig) -> dict[str, Any]:
    """``generation_config.json``: GPT-2's special ids (pad = eos: GPT-2 has no padding token)."""
    return {"bos_token_id": EOT, "eos_token_id": EOT, "pad_token_id": EOT}


def _write_json(path: Path, values: dict[str, Any]) -> None:
    with create_new(path, "w") as handle:
        json.dump(values, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def save_pretrained(model: GPT, directory: str | os.PathLike[str]) -> None:
    """Write a complete Hugging Face model repository: ``config.json`` (GPT-2's own keys, with
    ``n_ctx``), ``generation_config.json``, ``model.safetensors`` and the tokenizer files
    (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``), so
    that ``transformers`` (``AutoTokenizer``, ``pipeline``), vLLM and llama.cpp's converter load
    it. The weights are written in the model's dtype.

    Not atomic by itself: callers write into a temporary directory and rename it.
    """
    from safetensors.torch import save_file

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state_dict(model)
    config = hf_config_dict(model.config)
    config["dtype"] = str(tensors["transformer.wte.weight"].dtype).removeprefix("torch.")
    _write_json(root / CONFIG_NAME, config)
    _write_json(root / GENERATION_CONFIG_NAME, generation_config_dict(model.config))
    hf_tokenizer.write_tokenizer_files(root, model_max_length=model.config.block_size)
    weights = root / SAFETENSORS_NAME
    remove_entry(weights)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    fd = open_own_file(weights, os.O_RDONLY)
    try:
        os.fchmod(fd, file_mode())  # safetensors writes 0600; a weights file is as readable as any
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the local Hugging Face cache -----------------------------------------------------------


def hub_cache_dir() -> Path:
    """Where the Hugging Face hub cache is, as huggingface_hub decides it (no network)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()
    return base / "huggingface" / "hub"


def repo_id_for(name: str) -> str:
    """``gpt2`` -> ``openai-community/gpt2``; a name with a slash is a repository id as is."""
    return HUB_NAMES.get(name, name)


def looks_like_hub_name(spec: str) -> bool:
    """True for ``gpt2`` or ``owner/name``: not an absolute, relative or home path."""
    if not spec or spec.startswith(("/", ".", "~")) or "\\" in spec:
        return False
    return spec.count("/") <= 1 and all(part for part in spec.split("/"))


def _snapshot(repo_dir: Path) -> Path | None:
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
        candidate = snapshots / commit
        if (candidate / CONFIG_NAME).exists():
            return candidate
    try:
        candidates = [p for p in snapshots.iterdir() if (p / CONFIG_NAME).exists()]
    except OSError:
        return None
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime)


def find_in_cache(name: str) -> Path:
    """The snapshot directory of a model name in the local HF cache; Gpt2Error if absent."""
    cache = hub_cache_dir()
    repo_id = repo_id_for(name)
    candidates = [repo_id] + ([name] if name != repo_id else [])  # old caches used bare names
    looked: list[Path] = []
    for candidate in candidates:
        repo_dir = cache / ("models--" + candidate.replace("/", "--"))
        looked.append(repo_dir)
        snapshot = _snapshot(repo_dir)
        if snapshot is not None:
            if not any((snapshot / weights).exists() for weights in WEIGHT_NAMES):
                raise Gpt2Error(
                    f"model {name!r} is in the Hugging Face cache ({snapshot}) without its weights",
                    f"on a connected machine: hf download {repo_id} "
                    "--include config.json model.safetensors",
                )
            return snapshot
    raise Gpt2Error(
        f"model {name!r} not found: no such directory, and not in the Hugging Face cache "
        f"(looked in {', '.join(str(p) for p in looked)})",
        f"on a machine with network run `hf download {repo_id}` (or `huggingface-cli download "
        f"{repo_id}`) and copy the cache here, or set HF_HUB_CACHE / HF_HOME; gpt2 never "
        "downloads",
    )


def load_pretrained(
    directory: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    padded_vocab_size: int | None = None,
) -> GPT:
    """A model from an HF-layout directory (a name such as ``gpt2`` is found by
    ``gpt2cli.model.resolve``, which calls :func:`find_in_cache`).

    ``dtype`` None keeps the stored dtype. ``padded_vocab_size`` pads the embedding rows (no
    output changes); None keeps what the directory says (no padding for released checkpoints).
    """
    path = existing_directory(
        directory, "model directory", "expected config.json + model.safetensors"
    )
    config = read_config(path)
    if padded_vocab_size is not None:
        config = dataclasses.replace(config, padded_vocab_size=padded_vocab_size)
    if (path / SAFETENSORS_NAME).is_file():
        shapes = weight_shapes(path / SAFETENSORS_NAME)
        if shapes is not None:
            check_fits(shapes, config, str(path))
    tensors = load_hf_tensors(path)
    model = from_hf_state_dict(tensors, config, str(path), device=device, dtype=dtype)
    model.eval()
    return model
