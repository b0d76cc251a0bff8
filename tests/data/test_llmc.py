"""llm.c's .bin token files: pack --from-llmc / --to-llmc round trips, score reads them, and
their val loss (disjoint windows over the whole stream) matches a computation by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2cli.text import token_stream
from gpt2cli.text.tokenizer import EOT

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)
BLOCK = 32


def llmc_bytes(ids: list[int], magic: int = 20240520, version: int = 1) -> bytes:
    """An llm.c token file as its dev/data/data_common.py write_datafile lays it out."""
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = magic, version, len(ids)
    return header.tobytes() + np.array(ids, dtype=np.uint16).tobytes()


def documents(count: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 50000, int(rng.integers(0, 60))).tolist() for _ in range(count)]


def llmc_stream(docs: list[list[int]]) -> list[int]:
    """As llm.c's fineweb.py: every document preceded by <|endoftext|>."""
    return [token for doc in docs for token in (EOT, *doc)]


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=64, n_positions=BLOCK, vocab_size=50257, initializer_range=0.1
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, hf_model) -> Path:
    directory = tmp_path_factory.mktemp("llmc") / "tiny"
    hf_model.save_pretrained(directory)
    return directory


def test_from_llmc_to_llmc_round_trips_bytes(tmp_path: Path, gpt2) -> None:
    val = llmc_stream(documents(7, 1))
    train = llmc_stream(documents(40, 2))
    size = 300  # as fineweb.py --shard_size: a document runs on into the next file
    files = {"fineweb_val_000000.bin": llmc_bytes(val)}
    for k, start in enumerate(range(0, len(train), size)):
        files[f"fineweb_train_{k + 1:06d}.bin"] = llmc_bytes(train[start : start + size])
    assert len(files) >= 4
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    packed = tmp_path / "packed"
    names = [str(tmp_path / name) for name in files]
    result = gpt2("pack", "--from-llmc", "-o", packed, "--shard-tokens", "500", *names)
    assert result.code == 0, result.stderr
    assert "warn" not in result.stderr.lower()
    verify = gpt2("pack", "--verify", packed, "--json")
    assert verify.code == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert (
        report["splits"]["val"]["documents"] == 7 and report["splits"]["train"]["documents"] == 40
    )

    out = tmp_path / "out"
    back = gpt2("pack", "--to-llmc", packed, "-o", out, "--name", "fineweb", "--shard-tokens", size)
    assert back.code == 0, back.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data, name
    assert back.stdout.decode().split() == [str(out / name) for name in files]

    only_val = gpt2("pack", "--to-llmc", packed, "-o", tmp_path / "v", "--split", "val")
    assert only_val.code == 0, only_val.stderr
    assert (tmp_path / "v" / "data_val_000000.bin").read_bytes() == files["fineweb_val_000000.bin"]
    assert len(list((tmp_path / "v").iterdir())) == 1


def test_from_llmc_split_option_and_partial_first_file(tmp_path: Path, gpt2) -> None:
    docs = documents(5, 3)
    ids = llmc_stream(docs)[3:]  # starts inside a document
    source = tmp_path / "piece.bin"
    source.write_bytes(llmc_bytes(ids))
    result = gpt2("pack", "--from-llmc", "--split", "val", "-o", tmp_path / "p", source)
    assert result.code == 0, result.stderr
    assert "starts inside a document" in result.stderr
    report = json.loads(gpt2("pack", "--verify", tmp_path / "p", "--json").stdout)
    assert report["splits"]["val"]["documents"] == 5
    assert report["splits"]["val"]["tokens"] == len(ids) + 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (llmc_bytes([EOT, 1, 2], magic=20240521), "not an llm.c token file (magic 20240521"),
        (llmc_bytes([EOT, 1, 2], version=2), "version 2 is not supported"),
        (llmc_bytes([EOT, 1, 2], magic=20240801, version=7), "LLaMA-3"),
        (llmc_bytes([EOT, 1, 2])[:-2], "header gives 3 tokens"),
        (llmc_bytes([EOT, 1, 2]) + b"\0\0", "header gives 3 tokens"),
        (llmc_bytes([EOT, 60000]), "token id 60000 is not below 50257"),
        (llmc_bytes([EOT])[:100], "only 100 bytes"),
        (b"\x00" * 100, "not an llm.c token file (magic 0,"),
        (token_stream.HEADER + b"\x01\x00", "a gpt2 token stream, not an llm.c token file"),
    ],
)
def test_bad_llmc_files(tmp_path: Path, gpt2, model_dir: Path, data: bytes, message: str) -> None:
    bad = tmp_path / "bad_val_000000.bin"
    bad.write_bytes(data)
    packed = gpt2("pack", "--from-llmc", "-o", tmp_path / "p", bad)
    assert packed.code == 1
    lines = packed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt2 pack: error: ") and str(bad) in lines[0]
    assert message in lines[0]
    assert not (tmp_path / "p").exists()
    if data[:4] in (np.int32(20240520).tobytes(), np.int32(20240801).tobytes()):
        scored = gpt2("score", "--model", model_dir, bad)
        assert scored.code == 1 and message in scored.stderr
        assert "Traceback" not in scored.stderr


def test_pack_llmc_usage_errors(tmp_path: Path, gpt2) -> None:
    assert gpt2("pack", "--from-llmc", "-o", tmp_path / "p").code == 2
    assert gpt2("pack", "--to-llmc", tmp_path).code == 2
    assert gpt2("pack", "--split", "val", "-o", tmp_path / "p").code == 2
    assert gpt2("pack", "--from-llmc", "--split", "test", "-o", tmp_path / "p", "x.bin").code == 2


def test_score_reads_llmc_as_the_same_tokens(tmp_path: Path, gpt2, model_dir: Path) -> None:
    docs = documents(6, 4)
    llmc_file = tmp_path / "fineweb_val_000000.bin"
    llmc_file.write_bytes(llmc_bytes(llmc_stream(docs)))
    stream = tmp_path / "docs.tok"
    stream.write_bytes(
        token_stream.HEADER + b"".join(token_stream.encode_document(d) for d in docs)
    )
    a = gpt2("score", "--model", model_dir, llmc_file)
    b = gpt2("score", "--model", model_dir, stream)
    assert a.code == 0 and b.code == 0, a.stderr + b.stderr
    left = [json.loads(line) for line in a.stdout.decode().splitlines()]
    right = [json.loads(line) for line in b.stdout.decode().splitlines()]
    assert len(left) == len(docs)
    for x, y in zip(left, right):
        assert x.pop("source") == str(llmc_file) and y.pop("source") == str(stream)
        assert x == y


def test_score_stream_is_llmc_val_loss(tmp_path: Path, gpt2, model_dir: Path, hf_model) -> None:
    ids = llmc_stream(documents(12, 5))
    n = 4 * BLOCK  # predicted tokens, as llm.c's val_tokens
    assert len(ids) > n + 1
    llmc_file = tmp_path / "fineweb_val_000000.bin"
    llmc_file.write_bytes(llmc_bytes(ids))
    # llm.c's loader: windows x = buf[k*T:(k+1)*T], y = buf[k*T+1:(k+1)*T+1], mean loss.
    buf = torch.tensor(ids[: n + 1])
    x, y = buf[:-1].view(-1, BLOCK), buf[1:].view(-1, BLOCK)
    with torch.no_grad():
        logits = hf_model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    result = gpt2(
        "score", "--model", model_dir, "--stream", "--max-tokens", n, "--summary", llmc_file
    )
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout.decode().splitlines()[0])
    assert record["tokens"] == n
    assert record["nll"] / n == pytest.approx(float(loss), abs=1e-4)
    assert f"loss {record['nll'] / n:.4f} nats/token" in result.stderr
    stream = tmp_path / "same.tok"
    stream.write_bytes(
        token_stream.HEADER + b"".join(token_stream.encode_document(d) for d in documents(12, 5))
    )
    again = gpt2("score", "--model", model_dir, "--stream", "--max-tokens", n, stream)
    assert json.loads(again.stdout.decode().splitlines()[0])["nll"] == record["nll"]
    assert gpt2("score", "--model", model_dir, "--max-tokens", "5", llmc_file).code == 2


def test_to_llmc_interrupted_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C after some files are written: none is left under its name (all or nothing)."""
    from gpt2cli.data import llmc
    from gpt2cli.data.pack import PackOptions, pack
    from gpt2cli.text import token_stream

    stream = tmp_path / "in.tok"
    with open(stream, "wb") as handle:
        handle.write(token_stream.HEADER)
        for i in range(50):
            handle.write(token_stream.encode_document(np.arange(40, dtype=np.uint16) + i))
    pack([str(stream)], tmp_path / "p", PackOptions(val_tokens=200))
    written = []
    real = llmc._write_ids

    def interrupted(handle, ids, path) -> None:
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        real(handle, ids, path)

    monkeypatch.setattr(llmc, "_write_ids", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        llmc.export(tmp_path / "p", out, file_tokens=300)
    assert len(written) == 3
    assert not out.exists()
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        written.clear()
        llmc.export(tmp_path / "p", out, file_tokens=300)
    assert list(out.iterdir()) == []  # a directory that was there stays, empty
