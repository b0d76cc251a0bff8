"""Checkpoints as complete Hugging Face repositories, and `gpt2 export` (HF and GGUF), read back
by transformers, gguf's reader and, where it is installed, llama.cpp."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2cli import run_layout
from gpt2cli.model import hf
from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.text.tokenizer import EOT, decode, encode
from gpt2cli.train import checkpoint

torch.set_num_threads(1)

# Scripts, emoji (with a joiner), combining marks, contractions, digits, runs of spaces and
# newlines. (A literal <|endoftext|> is ordinary text for `gpt2`, the special token for HF's
# tokenizer, as for the released GPT-2: left out.)
UNICODE_CORPUS = [
    "Hello, world! It's 2026 -- we've   got   spaces\n\n\tand tabs.",
    "Ünïcödé façade, naïve café; Ærøskøbing; İstanbul; straße",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "Ελληνικά και русский текст, עברית ו־العربية",
    "emoji 😀👍🏽 👩‍👩‍👧 and flags 🇫🇷 — “quotes” «guillemets» …",
    "e\u0301 (combining) vs é; zero\u200bwidth; nbsp\u00a0here",
    "code: def f(x):\n    return x**2  # comment <|endof text|> not special",
    "numbers 3.14159, 1,000,000 and 12345678901234567890",
]
PROMPT = "The meaning of life is"


def varied_model(std: float = 0.3) -> GPT:
    """A tiny random GPT-2 with weights large enough for varied greedy text."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, std)
    return model.eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose final checkpoint is written as `gpt2 train` writes every checkpoint."""
    run = tmp_path_factory.mktemp("export") / "run"
    checkpoint.save(run / run_layout.FINAL, varied_model(), None, "runtime: {step: 0}\n")
    return run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two steps of `gpt2 train` on a tiny pack, a checkpoint at each step."""
    from gpt2cli.data.pack import PackOptions, pack
    from gpt2cli.text import token_stream

    root = tmp_path_factory.mktemp("trained")
    stream = root / "docs.tokens"
    with open(stream, "wb") as handle:
        handle.write(token_stream.HEADER)
        for start in range(60):
            handle.write(
                token_stream.encode_document(np.arange(start, start + 40, dtype=np.uint16))
            )
    pack([str(stream)], root / "shards", PackOptions(val_tokens=200))
    run = root / "run"
    args = ["-d", root / "shards", "-o", run, "-s", "tiny", "--seq-len", "16", "-b", "4"]
    args += ["--max-steps", "2", "--save-every", "1", "--eval-steps", "1", "--device", "cpu"]
    result = subprocess.run(
        ["gpt2", "train", *map(str, args)],
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr.decode()
    return run


REPO_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def test_every_checkpoint_is_a_complete_hf_repo(trained_run: Path) -> None:
    transformers = pytest.importorskip("transformers")
    checkpoints = [trained_run / "final", *sorted((trained_run / "checkpoints").iterdir())]
    assert len(checkpoints) == 2  # step 1, and final (step 2)
    for directory in checkpoints:
        for name in REPO_FILES:
            assert (directory / name).is_file(), (directory, name)
        config = json.loads((directory / "config.json").read_text())
        assert config["n_ctx"] == config["n_positions"] == 128  # tiny's context
        assert config["model_type"] == "gpt2" and config["vocab_size"] == 50257
        generation = json.loads((directory / "generation_config.json").read_text())
        assert generation["eos_token_id"] == generation["bos_token_id"] == EOT
    tokenizer = transformers.AutoTokenizer.from_pretrained(trained_run / "final")
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == EOT
    assert tokenizer.model_max_length == 128
    for text in UNICODE_CORPUS:
        assert tokenizer(text)["input_ids"] == encode(text), text
        assert tokenizer.decode(encode(text)) == text


def test_pipeline_greedy_text_equals_gpt2_sample(run_dir: Path, gpt2) -> None:
    transformers = pytest.importorskip("transformers")
    pipe = transformers.pipeline("text-generation", model=str(run_dir / "final"), device="cpu")
    theirs = pipe(PROMPT, do_sample=False, max_new_tokens=30, return_full_text=False)
    result = gpt2("sample", "-m", run_dir, "--greedy", "--max-tokens", "30", PROMPT)
    assert result.code == 0, result.stderr
    ours = result.stdout.decode()
    assert ours.endswith("\n")
    assert len(set(ours.split())) > 5  # not a degenerate repetition
    assert theirs[0]["generated_text"] == ours[:-1]


def test_export_hf_dtypes_load_in_transformers(run_dir: Path, tmp_path: Path, gpt2) -> None:
    transformers = pytest.importorskip("transformers")
    source = hf.load_pretrained(run_dir / "final")
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        out = tmp_path / f"hf-{name}"
        result = gpt2("export", run_dir, "-o", out, "--dtype", name)
        assert result.code == 0, result.stderr
        assert result.stdout == b""
        assert sorted(p.name for p in out.iterdir()) == sorted(REPO_FILES)
        theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
        assert theirs.transformer.wte.weight.dtype == dtype
        expected = source.transformer.h[1].mlp.c_fc.weight.t().to(dtype)
        assert torch.equal(theirs.transformer.h[1].mlp.c_fc.weight, expected)
    assert not list(tmp_path.glob(".*tmp*"))


def _reader(path: Path):
    gguf = pytest.importorskip("gguf")
    return gguf, gguf.GGUFReader(path)


def _field(reader, key: str):
    return reader.fields[key].contents()


@pytest.mark.parametrize("kind", ["f32", "f16", "q8_0"])
def test_export_gguf_reads_back(run_dir: Path, tmp_path: Path, gpt2, kind: str) -> None:
    out = tmp_path / f"model-{kind}.gguf"
    result = gpt2("export", run_dir, "-o", out, "--dtype", kind, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "gguf" and report["dtype"] == kind
    assert report["bytes"] == out.stat().st_size
    gguf, reader = _reader(out)
    model = hf.load_pretrained(run_dir / "final")
    config = model.config
    assert _field(reader, "general.architecture") == "gpt2"
    assert _field(reader, "gpt2.context_length") == config.block_size
    assert _field(reader, "gpt2.block_count") == config.n_layer
    assert _field(reader, "gpt2.embedding_length") == config.n_embd
    assert _field(reader, "gpt2.feed_forward_length") == 4 * config.n_embd
    assert _field(reader, "gpt2.attention.head_count") == config.n_head
    if kind == "f32":  # the same metadata in every file: read once
        assert _field(reader, "tokenizer.ggml.model") == "gpt2"
        assert _field(reader, "tokenizer.ggml.bos_token_id") == EOT
        assert _field(reader, "tokenizer.ggml.eos_token_id") == EOT
        tokens = _field(reader, "tokenizer.ggml.tokens")
        assert len(tokens) == 50257 and tokens[EOT] == "<|endoftext|>"
        assert tokens[encode(" the")[0]] == "Ġthe"
        vocab = json.loads((run_dir / "final" / "vocab.json").read_text())
        assert all(vocab[token] == index for index, token in enumerate(tokens))
        merges = _field(reader, "tokenizer.ggml.merges")
        file_merges = (run_dir / "final" / "merges.txt").read_text().splitlines()[1:]
        assert merges == file_merges and len(merges) == 50000

    state = model.state_dict()
    expected = {
        "token_embd.weight": state["transformer.wte.weight"][: config.vocab_size],
        "position_embd.weight": state["transformer.wpe.weight"],
        "output_norm.weight": state["transformer.ln_f.weight"],
        "output_norm.bias": state["transformer.ln_f.bias"],
    }
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output"}
    names.update({"ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"})
    for layer in range(config.n_layer):
        for ours, theirs in names.items():
            for part in ("weight", "bias"):
                key = f"transformer.h.{layer}.{ours}.{part}"
                expected[f"blk.{layer}.{theirs}.{part}"] = state[key]
    found = {tensor.name: tensor for tensor in reader.tensors}
    assert sorted(found) == sorted(expected)
    for name, tensor in found.items():
        want = expected[name].numpy()
        assert tuple(int(n) for n in tensor.shape) == want.shape[::-1], name  # GGML: ne0 first
        matrix = want.ndim == 2 and name != "position_embd.weight"
        if kind == "f32" or not matrix:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F32, name
            np.testing.assert_array_equal(tensor.data.reshape(want.shape), want, err_msg=name)
        elif kind == "f16":
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F16, name
            np.testing.assert_array_equal(tensor.data.reshape(want.shape), want.astype(np.float16))
        else:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.Q8_0, name
            got = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(want.shape)
            # Each block of 32 shares a scale d = max|w|/127 stored as f16 (relative error
            # 2^-11, times q <= 127): at most half a step and 0.062 d off.
            blocks = np.abs(want).reshape(-1, 32).max(axis=1) / 127
            bound = np.repeat(blocks * 0.57, 32).reshape(want.shape) + 1e-7
            assert (np.abs(got - want) <= bound).all(), name
            assert np.abs(got - want).max() > 0  # it is quantized


def test_gguf_runs_in_llama_cpp_with_our_tokens(tmp_path: Path, gpt2) -> None:
    """llama.cpp's logits differ from ours by ~1e-3 (its GELU is an f16 table): weights of std
    0.1 keep the top two logits of every step of this prompt far further apart than that."""
    llama_cpp = pytest.importorskip("llama_cpp")  # bench/test-only, not a dependency
    run_dir = tmp_path / "run"
    checkpoint.save(run_dir / run_layout.FINAL, varied_model(0.1), None, "runtime: {step: 0}\n")
    out = tmp_path / "model.gguf"
    assert gpt2("export", run_dir, "-o", out).code == 0
    llm = llama_cpp.Llama(str(out), n_ctx=64, n_threads=1, verbose=False)
    for text in UNICODE_CORPUS:
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == encode(text), text
    result = gpt2("sample", "-m", run_dir, "--greedy", "--max-tokens", "30", "--jsonl", "Hello")
    record = json.loads(result.stdout)
    theirs = []
    for token in llm.generate(encode("Hello"), temp=0.0, top_k=1, repeat_penalty=1.0):
        if token == EOT or len(theirs) == record["completion_tokens"]:
            break
        theirs.append(token)
    assert len(set(record["text"].split())) > 5
    assert decode(theirs) == record["text"]


def test_export_from_the_hf_cache(tmp_path: Path, gpt2, monkeypatch: pytest.MonkeyPatch) -> None:
    """Released weights (transformers' own files, in the hub cache) export like our own."""
    transformers = pytest.importorskip("transformers")
    from test_hf import fake_cache  # this folder is on sys.path

    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=64)
    released = tmp_path / "released"
    transformers.GPT2LMHeadModel(config).save_pretrained(released)
    monkeypatch.setenv("HF_HUB_CACHE", str(fake_cache(tmp_path / "hub", released).parents[2]))
    monkeypatch.chdir(tmp_path)
    result = gpt2("export", "gpt2", "-o", "gpt2.gguf")
    assert result.code == 0, result.stderr
    assert "Hugging Face cache" in result.stderr
    result = gpt2("export", "gpt2", "-o", "gpt2-hf")
    assert result.code == 0, result.stderr
    assert (tmp_path / "gpt2-hf" / "vocab.json").is_file()


def test_bad_input_is_one_line_and_writes_nothing(run_dir: Path, tmp_path: Path, gpt2) -> None:
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    result = gpt2("export", llama, "-o", tmp_path / "out.gguf")
    assert result.code == 1
    assert result.stderr.count("\n") == 1 and "not a GPT-2 model" in result.stderr
    existing = tmp_path / "existing.gguf"
    existing.write_bytes(b"keep")
    result = gpt2("export", run_dir, "-o", existing)
    assert result.code == 1 and "already exists" in result.stderr
    assert existing.read_bytes() == b"keep"
    result = gpt2("export", run_dir, "-o", tmp_path / "x", "--format", "gguf", "--dtype", "bf16")
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.gguf", "llama"]


def test_full_disk_is_one_line_and_leaves_nothing(run_dir: Path, tmp_path: Path, gpt2) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs (not root)")
    try:
        for args in (["-o", disk / "m.gguf"], ["-o", disk / "m-hf"]):
            result = gpt2("export", run_dir, *args)
            assert result.code == 1
            assert result.stderr.count("\n") == 1, result.stderr
            assert "no space left on device" in result.stderr.lower()
            assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)])
