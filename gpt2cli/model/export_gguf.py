"""A GPT-2 as a GGUF file for llama.cpp (and ollama, LM Studio): llama.cpp's "gpt2" architecture.

Written with the ``gguf`` package, the llama.cpp project's own writer. What llama.cpp's GPT-2
loader reads, as its converter (``convert_hf_to_gguf.py``, ``GPT2Model``) writes it:

- hyperparameters ``gpt2.block_count``, ``.context_length``, ``.embedding_length``,
  ``.feed_forward_length`` (4 x n_embd), ``.attention.head_count``,
  ``.attention.layer_norm_epsilon``; ``general.file_type``;
- the tokenizer: ``tokenizer.ggml.model`` "gpt2" with pre-tokenizer "gpt-2", the tokens in the
  byte-to-unicode alphabet (``<|endoftext|>`` a control token), the merges, bos = eos = unk =
  50256, no BOS added;
- tensors named ``token_embd``, ``position_embd``, ``blk.N.attn_norm``, ``blk.N.attn_qkv``,
  ``blk.N.attn_output``, ``blk.N.ffn_norm``, ``blk.N.ffn_up``, ``blk.N.ffn_down``,
  ``output_norm``, each matrix as ``nn.Linear`` stores it, (out, in); no ``output``: the output
  layer is the token embedding (llama.cpp uses it when ``output`` is absent).

Vectors (biases, LayerNorm) and the position embedding stay f32 whatever the type, as the
converter keeps them; the matrices take the type asked for: f32, f16, or q8_0 (blocks of 32
values sharing one f16 scale).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from gpt2cli.errors import Gpt2Error
from gpt2cli.model.gpt import GPT
from gpt2cli.text import hf_tokenizer
from gpt2cli.text.tokenizer import EOT

ARCH = "gpt2"
GGUF_TYPES = ("f32", "f16", "q8_0")

_BLOCK_NAMES = {
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}


def gguf_tensors(model: GPT) -> Iterator[tuple[str, torch.Tensor]]:
    """(GGUF name, fp32 tensor on CPU) for every weight, padding rows dropped, in file order."""
    modules = model.transformer
    vocab = model.config.vocab_size

    def f32(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach().to("cpu", torch.float32).contiguous()

    yield "token_embd.weight", f32(modules.wte.weight[:vocab])
    yield "position_embd.weight", f32(modules.wpe.weight)
    for index, block in enumerate(modules.h):
        for ours, theirs in _BLOCK_NAMES.items():
            module = block.get_submodule(ours)
            yield f"blk.{index}.{theirs}.weight", f32(module.weight)
            yield f"blk.{index}.{theirs}.bias", f32(module.bias)
    yield "output_norm.weight", f32(modules.ln_f.weight)
    yield "output_norm.bias", f32(modules.ln_f.bias)


def _stored(name: str, tensor: torch.Tensor, kind: str) -> tuple[np.ndarray, object]:
    """The array to write and its GGML type for a tensor under the file's type ``kind``."""
    import gguf

    array = tensor.numpy()
    if kind == "f32" or array.ndim == 1 or name.startswith("position_embd"):
        return array, gguf.GGMLQuantizationType.F32
    if kind == "f16":
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16
    qtype = gguf.GGMLQuantizationType.Q8_0
    try:
        return gguf.quants.quantize(array, qtype), qtype
    except gguf.quants.QuantError:  # rows not a multiple of 32: f16, as the converter does
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16


def write_gguf(model: GPT, path: str | os.PathLike[str], kind: str, name: str) -> int:
    """Write ``model`` to the GGUF file ``path`` (not atomic: the caller renames); return the
    number of tensors written."""
    import gguf

    if kind not in GGUF_TYPES:
        raise Gpt2Error(f"unknown GGUF type {kind!r}", f"use {', '.join(GGUF_TYPES)}")
    config = model.config
    if config.vocab_size != EOT + 1:
        raise Gpt2Error(
            f"the model's vocabulary has {config.vocab_size} tokens, not GPT-2's {EOT + 1}",
            "only models with GPT-2's tokenizer can be exported to GGUF",
        )
    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer = gguf.GGUFWriter(Path(path), ARCH)
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        writer.add_block_count(config.n_layer)
        writer.add_context_length(config.block_size)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(4 * config.n_embd)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        writer.add_file_type(file_types[kind])
        if kind == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

        tokens, merges = hf_tokenizer.vocab_and_merges()
        token_types = [gguf.TokenType.NORMAL] * len(tokens)
        token_types[EOT] = gguf.TokenType.CONTROL
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(EOT)
        writer.add_eos_token_id(EOT)
        writer.add_unk_token_id(EOT)
        writer.add_add_bos_token(False)

        count = 0
        for tensor_name, tensor in gguf_tensors(model):
            array, qtype = _stored(tensor_name, tensor, kind)
            writer.add_tensor(tensor_name, array, raw_dtype=qtype)  # q8_0: shape from bytes
            count += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    finally:
        writer.close()
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    return count
