"""gpt2 pack, the shard format, verify/merge, and the TokenLoader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from gpt2cli.data import loader as loader_module
from gpt2cli.data.dataset import ShardDataset
from gpt2cli.data.loader import TokenLoader
from gpt2cli.data.pack import PackOptions, pack
from gpt2cli.data.shard_format import ShardReader
from gpt2cli.errors import Gpt2Error
from gpt2cli.text import token_stream
from gpt2cli.text.tokenizer import EOT


def make_docs(count: int, seed: int = 0, max_len: int = 300) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, EOT, size=int(rng.integers(1, max_len)), dtype=np.uint16)
        for _ in range(count)
    ]


def stream_bytes(docs: list[np.ndarray]) -> bytes:
    return token_stream.HEADER + b"".join(token_stream.encode_document(d) for d in docs)


def write_stream(path: Path, docs: list[np.ndarray]) -> Path:
    path.write_bytes(stream_bytes(docs))
    return path


def split_docs(directory: Path, split: str) -> list[list[int]]:
    with ShardDataset(directory) as dataset:
        return [doc.tolist() for doc in dataset.iter_documents(split)]


def small_pack(
    gpt2, tmp_path: Path, docs: list[np.ndarray], *extra: str, name: str = "out"
) -> Path:
    stream = write_stream(tmp_path / f"{name}.tok", docs)
    out = tmp_path / name
    run = gpt2(
        "pack",
        "-o",
        out,
        "--name",
        name,
        "--shard-tokens",
        "3000",
        "--block-tokens",
        "256",
        *extra,
        stream,
    )
    assert run.code == 0, run.stderr
    return out


# ------------------------------------------------------------------------------ round trips


def test_round_trip_documents_and_tokens(tmp_path: Path, gpt2) -> None:
    docs = make_docs(200)
    out = small_pack(gpt2, tmp_path, docs)
    manifest = yaml.safe_load((out / "manifest.yaml").read_text())
    assert manifest["splits"]["train"]["documents"] == 200
    total = sum(len(d) + 1 for d in docs)
    assert manifest["splits"]["train"]["tokens"] == total
    assert len(manifest["shards"]) == -(-total // 3000)
    assert split_docs(out, "train") == [d.tolist() for d in docs]
    # Random access matches the concatenation, across block and shard boundaries.
    flat = np.concatenate([np.append(d, EOT) for d in docs])
    with ShardDataset(out) as dataset:
        assert dataset.num_tokens("train") == total
        for start in (0, 255, 256, 2999, 3000, 5990, total - 7):
            assert dataset.read("train", start, 7).tolist() == flat[start : start + 7].tolist()
    # Every shard header agrees with the manifest and the verify table.
    run = gpt2("pack", "--verify", out, "--json")
    assert run.code == 0, run.stderr
    report = yaml.safe_load(run.stdout)
    assert report["ok"] and report["splits"]["train"]["tokens"] == total


def test_tokenize_pack_loader_round_trip(tmp_path: Path, gpt2) -> None:
    texts = [
        f"Document number {i}.\nIt has some words, <|endoftext|> and digits {i * 7}.\n"
        for i in range(40)
    ]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(f'{{"text": {text!r}}}\n'.replace("'", '"') for text in texts))
    run = gpt2("tokenize", jsonl)
    assert run.code == 0, run.stderr
    (tmp_path / "t.tok").write_bytes(run.stdout)
    run = gpt2("pack", "-o", tmp_path / "out", tmp_path / "t.tok", "--block-tokens", "64")
    assert run.code == 0, run.stderr
    from gpt2cli.text.tokenizer import decode, encode

    assert [decode(d) for d in split_docs(tmp_path / "out", "train")] == texts
    flat = [t for text in texts for t in [*encode(text), EOT]]
    loader = TokenLoader(tmp_path / "out", "train", seq_len=16, batch_size=4, epochs=1)
    seen = {}
    for x, y in loader:
        assert x.shape == (4, 16) and y.shape == (4, 16) and str(x.dtype) == "torch.int64"
        assert (x[:, 1:] == y[:, :-1]).all()
        for row in range(4):
            tokens = x[row].tolist() + [int(y[row, -1])]
            start = next(s for s in range(0, len(flat), 16) if flat[s : s + 17] == tokens)
            seen[start] = True
    assert len(seen) == loader.batches_per_epoch * 4


def test_empty_stream_gives_empty_pack(tmp_path: Path, gpt2) -> None:
    run = gpt2("pack", "-o", tmp_path / "out", stdin=token_stream.HEADER)
    assert run.code == 0, run.stderr
    assert "zero documents" in run.stderr
    manifest = yaml.safe_load((tmp_path / "out" / "manifest.yaml").read_text())
    assert manifest["shards"] == []
    assert gpt2("pack", "--verify", tmp_path / "out").code == 0


def test_concatenated_streams_and_several_inputs(tmp_path: Path, gpt2) -> None:
    docs = make_docs(30, seed=3)
    joined = stream_bytes(docs[:10]) + stream_bytes(docs[10:])
    run = gpt2("pack", "-o", tmp_path / "a", stdin=joined)
    assert run.code == 0, run.stderr
    assert split_docs(tmp_path / "a", "train") == [d.tolist() for d in docs]
    one = write_stream(tmp_path / "1.tok", docs[:10])
    two = write_stream(tmp_path / "2.tok", docs[10:])
    assert gpt2("pack", "-o", tmp_path / "b", one, two).code == 0
    assert split_docs(tmp_path / "b", "train") == [d.tolist() for d in docs]


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "data, message",
    [
        (b"hello, this is plain text\n", "not a gpt2 token stream"),
        (
            bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
            "not a gpt2 token stream",
        ),
        (stream_bytes(make_docs(5))[:-2], "truncated token stream"),
        (stream_bytes(make_docs(5))[:-1], "truncated token stream"),
        (token_stream.HEADER + np.array([5, 50257, EOT], "<u2").tobytes(), "token id 50257"),
        (b"", "empty input"),
    ],
    ids=["text", "random", "unterminated", "odd", "big-id", "empty"],
)
def test_bad_streams_are_refused_without_leftovers(
    tmp_path: Path, data: bytes, message: str, gpt2
) -> None:
    out = tmp_path / "out"
    run = gpt2("pack", "-o", out, "--shard-tokens", "100", "--block-tokens", "16", stdin=data)
    assert run.code == 1
    assert message in run.stderr
    assert not out.exists()


def test_bad_stream_in_append_removes_only_its_own_shards(tmp_path: Path, gpt2) -> None:
    out = small_pack(gpt2, tmp_path, make_docs(50))
    before = sorted(p.name for p in out.iterdir())
    bad = stream_bytes(make_docs(100, seed=9))[:-2]
    run = gpt2("pack", "-o", out, "--append", "--name", "b", "--shard-tokens", "1000", stdin=bad)
    assert run.code == 1
    assert sorted(p.name for p in out.iterdir()) == before


def test_output_must_be_an_empty_directory(tmp_path: Path, gpt2) -> None:
    stream = stream_bytes(make_docs(3))
    afile = tmp_path / "file"
    afile.write_text("x")
    run = gpt2("pack", "-o", afile, stdin=stream)
    assert run.code == 2 and "is a file" in run.stderr
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    run = gpt2("pack", "-o", full, stdin=stream)
    assert run.code == 2 and "not empty" in run.stderr and "--append" in run.stderr
    assert gpt2("pack", stdin=stream).code == 2  # no -o
    out = small_pack(gpt2, tmp_path, make_docs(3))
    run = gpt2("pack", "-o", out, "--append", "--name", "out", stdin=stream)  # same part
    assert run.code == 2 and "already holds a part" in run.stderr


def _damage(path: Path, offset: int, length: int = 4) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + length):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_corrupted_block_is_named_by_verify_and_loader(tmp_path: Path, gpt2) -> None:
    out = small_pack(gpt2, tmp_path, make_docs(200))
    shard = out / "out-train-00001.shard"
    with ShardReader(shard) as reader:
        offset = int(reader.index["offset"][3]) + 5
    _damage(shard, offset)
    run = gpt2("pack", "--verify", out)
    assert run.code == 1
    assert "out-train-00001.shard: block 3 (tokens 768-1023) is corrupt" in run.stderr
    assert "damaged" in run.stderr
    with ShardDataset(out) as dataset:
        with pytest.raises(Gpt2Error, match=r"out-train-00001.shard: block 3 .*corrupt"):
            dataset.read("train", 3000 + 800, 10)
    # The loader meets it while reading windows.
    loader = TokenLoader(out, "train", seq_len=64, batch_size=4, seed=0, epochs=1)
    with pytest.raises(Gpt2Error, match="out-train-00001.shard: block 3"):
        for _ in loader:
            pass


def test_truncated_shard_and_missing_shard(tmp_path: Path, gpt2) -> None:
    out = small_pack(gpt2, tmp_path, make_docs(200))
    shard = out / "out-train-00002.shard"
    shard.write_bytes(shard.read_bytes()[:-100])
    run = gpt2("pack", "--verify", out)
    assert run.code == 1 and "out-train-00002.shard" in run.stderr
    assert "truncated" in run.stderr
    with pytest.raises(Gpt2Error, match="out-train-00002.shard.*truncated"):
        ShardDataset(out)
    shard.unlink()
    run = gpt2("pack", "--verify", out)
    assert run.code == 1 and "out-train-00002.shard, which is missing" in run.stderr
    with pytest.raises(Gpt2Error, match="lists out-train-00002.shard, which is missing"):
        ShardDataset(out)


def test_damaged_header_and_index(tmp_path: Path, gpt2) -> None:
    out = small_pack(gpt2, tmp_path, make_docs(100))
    shard = out / "out-train-00000.shard"
    _damage(shard, 30)
    with pytest.raises(Gpt2Error, match="out-train-00000.shard: corrupt shard header"):
        ShardDataset(out).read("train", 0, 10)
    _damage(shard, 30)  # undo
    _damage(shard, shard.stat().st_size - 10)
    with pytest.raises(Gpt2Error, match="out-train-00000.shard: the block index is corrupt"):
        ShardDataset(out).read("train", 0, 10)


# ------------------------------------------------------------------------------ atomicity


_SLOW_PACK = """
import sys
from gpt2cli.data.pack import PackOptions, pack
pack(["-"], sys.argv[1], PackOptions(name="b", append=True,
            shard_tokens=2000, block_tokens=128))
"""


def test_sigkill_mid_pack_leaves_only_whole_listed_shards(tmp_path: Path, gpt2) -> None:
    out = small_pack(gpt2, tmp_path, make_docs(100), name="a")
    listed_before = yaml.safe_load((out / "manifest.yaml").read_text())["shards"]

    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PACK, str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdin is not None
    child.stdin.write(token_stream.HEADER)
    docs = make_docs(2000, seed=5)
    deadline = time.time() + 60
    for doc in docs:
        child.stdin.write(token_stream.encode_document(doc))
        child.stdin.flush()
        if len(list(out.glob("b-train-*.shard"))) >= 2 and list(out.glob(".b-train-*tmp*")):
            break
        assert time.time() < deadline, "the child wrote no shards"
        time.sleep(0.0005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    # What is listed is exactly what was listed before, and it is all whole.
    assert yaml.safe_load((out / "manifest.yaml").read_text())["shards"] == listed_before
    assert not (out / "manifest.b.yaml").exists()
    run = gpt2("pack", "--verify", out)
    assert run.code == 0, run.stderr
    assert "not in the manifest" in run.stderr  # the killed part's whole-but-unlisted shards
    # Running part b again cleans its leftovers and succeeds.
    run = gpt2(
        "pack",
        "-o",
        out,
        "--append",
        "--name",
        "b",
        "--shard-tokens",
        "2000",
        stdin=stream_bytes(docs[:50]),
    )
    assert run.code == 0, run.stderr
    assert not list(out.glob(".b-*"))
    assert split_docs(out, "train")[100:] == [d.tolist() for d in docs[:50]]
    assert gpt2("pack", "--verify", out).code == 0


# ------------------------------------------------------------------------------ merge


def test_parallel_parts_and_merge(tmp_path: Path, gpt2) -> None:
    out = tmp_path / "corpus"
    docs_a, docs_b = make_docs(60, seed=1), make_docs(40, seed=2)
    args = ("--shard-tokens", "2500", "--val-fraction", "0.2", "--seed", "4")
    assert gpt2("pack", "-o", out, "--name", "part-01", *args, stdin=stream_bytes(docs_a)).code == 0
    run = gpt2(
        "pack", "-o", out, "--append", "--name", "part-00", *args, stdin=stream_bytes(docs_b)
    )
    assert run.code == 0, run.stderr
    manifest = yaml.safe_load((out / "manifest.yaml").read_text())
    assert manifest["parts"] == ["part-00", "part-01"]
    assert {e["part"] for e in manifest["shards"]} == {"part-00", "part-01"}
    (out / "manifest.yaml").unlink()
    with pytest.raises(Gpt2Error, match="gpt2 pack --merge"):
        ShardDataset(out)
    run = gpt2("pack", "--merge", out, "--json")
    assert run.code == 0, run.stderr
    assert yaml.safe_load((out / "manifest.yaml").read_text())["shards"] == manifest["shards"]
    every = split_docs(out, "train") + split_docs(out, "val")
    assert sorted(map(tuple, every)) == sorted(tuple(d.tolist()) for d in docs_a + docs_b)
    with ShardDataset(out) as dataset:
        assert dataset.num_tokens("train") + dataset.num_tokens("val") == sum(
            len(d) + 1 for d in docs_a + docs_b
        )
    # A part manifest that lists a missing shard stops the merge.
    (out / manifest["shards"][0]["name"]).unlink()
    run = gpt2("pack", "--merge", out)
    assert run.code == 1 and "which is missing" in run.stderr


# ------------------------------------------------------------------------------ split, shuffle


def test_split_is_whole_documents_and_deterministic(tmp_path: Path, gpt2) -> None:
    docs = make_docs(300, seed=7)
    all_docs = sorted(tuple(d.tolist()) for d in docs)
    runs = {}
    for label, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = small_pack(
            gpt2, tmp_path, docs, "--val-tokens", "5000", "--seed", str(seed), name=label
        )
        train, val = split_docs(out, "train"), split_docs(out, "val")
        assert sorted(map(tuple, train + val)) == all_docs  # whole documents, none lost
        assert 5000 <= sum(len(d) + 1 for d in val) < 5000 + 300  # files: exact, spread out
        runs[label] = val
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    out = small_pack(gpt2, tmp_path, docs, "--val-fraction", "0.25", name="f")
    val = split_docs(out, "val")
    assert 40 < len(val) < 110
    assert (
        gpt2("pack", "-o", tmp_path / "x", "--val-fraction", "1.5", stdin=stream_bytes(docs)).code
        == 2
    )


def test_val_tokens_on_a_pipe(tmp_path: Path, gpt2) -> None:
    docs = make_docs(300, seed=8)
    run = gpt2("pack", "-o", tmp_path / "out", "--val-tokens", "3000", stdin=stream_bytes(docs))
    assert run.code == 0, run.stderr
    val = split_docs(tmp_path / "out", "val")
    assert 3000 <= sum(len(d) + 1 for d in val) < 3000 + 300


def test_shuffle_buffer(tmp_path: Path, gpt2) -> None:
    docs = make_docs(200, seed=11)
    one = split_docs(small_pack(gpt2, tmp_path, docs, "--shuffle-buffer", "50", name="s1"), "train")
    two = split_docs(small_pack(gpt2, tmp_path, docs, "--shuffle-buffer", "50", name="s2"), "train")
    assert one == two
    assert one != [d.tolist() for d in docs]
    assert sorted(map(tuple, one)) == sorted(tuple(d.tolist()) for d in docs)
    # The split is decided in input order, so shuffling does not change it.
    plain = small_pack(gpt2, tmp_path, docs, "--val-tokens", "4000", "--seed", "3", name="p")
    mixed = small_pack(
        gpt2,
        tmp_path,
        docs,
        "--val-tokens",
        "4000",
        "--seed",
        "3",
        "--shuffle-buffer",
        "30",
        name="m",
    )
    for split in ("train", "val"):
        assert sorted(split_docs(plain, split)) == sorted(split_docs(mixed, split))
    assert split_docs(plain, "train") != split_docs(mixed, "train")


# ------------------------------------------------------------------------------ the loader


@pytest.fixture(scope="module")
def loader_dir(tmp_path_factory: pytest.TempPathFactory, gpt2) -> Path:
    tmp_path = tmp_path_factory.mktemp("loader")
    return small_pack(gpt2, tmp_path, make_docs(400, seed=12, max_len=200))


def _epoch_windows(loader: TokenLoader, epoch: int) -> list[int]:
    return [
        int(w)
        for step in range(loader.batches_per_epoch)
        for w in loader.window_indices(epoch, step)
    ]


def test_loader_windows_are_the_split_tokens(loader_dir: Path) -> None:
    dataset = ShardDataset(loader_dir)
    flat = np.concatenate(list(dataset.iter_tokens("train")))
    loader = TokenLoader(dataset, "train", seq_len=50, batch_size=3, seed=5)
    windows = loader.window_indices(0, 0)
    x, y = next(loader)
    for row, window in enumerate(windows.tolist()):
        assert x[row].tolist() == flat[window * 50 : window * 50 + 50].tolist()
        assert y[row].tolist() == flat[window * 50 + 1 : window * 50 + 51].tolist()


def test_loader_epoch_is_a_permutation_and_deterministic(loader_dir: Path) -> None:
    loader = TokenLoader(loader_dir, "train", seq_len=32, batch_size=5, seed=3)
    n = loader.num_windows
    order0 = _epoch_windows(loader, 0)
    assert len(set(order0)) == len(order0) == loader.batches_per_epoch * 5
    assert len(order0) > n - 5 and max(order0) < n
    assert order0 != sorted(order0)
    assert order0 != _epoch_windows(loader, 1)
    again = TokenLoader(loader_dir, "train", seq_len=32, batch_size=5, seed=3)
    assert _epoch_windows(again, 0) == order0
    other = TokenLoader(loader_dir, "train", seq_len=32, batch_size=5, seed=4)
    assert _epoch_windows(other, 0) != order0
    first = [next(loader)[0].tolist() for _ in range(3)]
    assert [next(again)[0].tolist() for _ in range(3)] == first


def test_loader_ranks_stride_disjointly(loader_dir: Path) -> None:
    single = TokenLoader(loader_dir, "train", seq_len=40, batch_size=4, seed=2)
    ranks = [
        TokenLoader(loader_dir, "train", seq_len=40, batch_size=4, seed=2, rank=r, world_size=3)
        for r in range(3)
    ]
    per_rank = [_epoch_windows(loader, 0) for loader in ranks]
    assert len({len(windows) for windows in per_rank}) == 1
    joined = [w for windows in per_rank for w in windows]
    assert len(set(joined)) == len(joined)
    everything = set(_epoch_windows(single, 0)) | set(
        single._order(0)(np.arange(single.num_windows)).tolist()
    )
    assert set(joined) <= everything
    # Batch k of rank r holds global positions (k*B + j)*W + r of the same epoch order.
    order = single._order(0)(np.arange(single.num_windows)).tolist()
    for r, windows in enumerate(per_rank):
        assert windows[:4] == [order[j * 3 + r] for j in range(4)]


def test_loader_state_dict_resumes_exactly(loader_dir: Path) -> None:
    loader = TokenLoader(loader_dir, "train", seq_len=24, batch_size=6, seed=9)
    steps = loader.batches_per_epoch
    for _ in range(steps - 2):  # stop just before an epoch boundary
        next(loader)
    state = loader.state_dict()
    expected = [next(loader) for _ in range(5)]
    assert loader.epoch == 1
    resumed = TokenLoader(loader_dir, "train", seq_len=24, batch_size=6, seed=9)
    resumed.load_state_dict(yaml.safe_load(yaml.safe_dump(state)))  # survives serialization
    for (x, y), (x2, y2) in zip(expected, (next(resumed) for _ in range(5))):
        assert x.tolist() == x2.tolist() and y.tolist() == y2.tolist()
    other = TokenLoader(loader_dir, "train", seq_len=25, batch_size=6, seed=9)
    with pytest.raises(Gpt2Error, match="seq_len"):
        other.load_state_dict(state)


def test_loader_bounded_cache_and_epochs(loader_dir: Path) -> None:
    loader = TokenLoader(
        loader_dir, "train", seq_len=30, batch_size=2, seed=1, epochs=2, cache_bytes=2000
    )
    batches = list(loader)
    assert len(batches) == 2 * loader.batches_per_epoch
    assert loader.dataset._cached <= 2000 + 2 * 256


def test_loader_refuses_too_long_sequences_and_missing_splits(loader_dir: Path) -> None:
    dataset = ShardDataset(loader_dir)
    tokens = dataset.num_tokens("train")
    assert dataset.splits == ["train"] and dataset.num_tokens("val") == 0
    with pytest.raises(Gpt2Error, match="too few"):
        TokenLoader(dataset, "train", seq_len=tokens, batch_size=1)
    with pytest.raises(Gpt2Error, match="no 'val' split"):
        TokenLoader(dataset, "val", seq_len=8, batch_size=1)


def test_pack_help_reads_well(gpt2) -> None:
    run = gpt2("pack", "--help")
    assert run.code == 0
    text = run.stdout.decode()
    for option in (
        "--output",
        "--shard-tokens",
        "--val-tokens",
        "--val-fraction",
        "--seed",
        "--shuffle-buffer",
        "--name",
        "--append",
        "--merge",
        "--verify",
        "--json",
    ):
        assert option in text


def test_loader_chunked_order_for_large_splits(
    loader_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "GLOBAL_SHUFFLE_TOKENS", 0)
    monkeypatch.setattr(loader_module, "CHUNK_TOKENS", 100)
    monkeypatch.setattr(loader_module, "BUFFER_TOKENS", 1000)
    loader = TokenLoader(loader_dir, "train", seq_len=20, batch_size=3, seed=6)
    order = loader._order(0)
    assert order.chunk == 5 and order.group == 10
    assert loader.windows_per_epoch == loader.num_windows // 5 * 5
    windows = _epoch_windows(loader, 0)
    assert len(set(windows)) == len(windows) == loader.batches_per_epoch * 3
    assert max(windows) < loader.num_windows and windows != sorted(windows)
    assert windows != _epoch_windows(loader, 1)
    # Ranks stay disjoint, and resuming is exact, in this order too.
    ranks = [
        set(
            _epoch_windows(
                TokenLoader(
                    loader_dir, "train", seq_len=20, batch_size=3, seed=6, rank=r, world_size=2
                ),
                0,
            )
        )
        for r in range(2)
    ]
    assert not ranks[0] & ranks[1]
    for _ in range(7):
        next(loader)
    state = loader.state_dict()
    expected = [next(loader)[0].tolist() for _ in range(3)]
    resumed = TokenLoader(loader_dir, "train", seq_len=20, batch_size=3, seed=6)
    resumed.load_state_dict(state)
    assert [next(resumed)[0].tolist() for _ in range(3)] == expected


def test_refuses_to_read_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpt2) -> None:
    import types

    from gpt2cli.data import pack as pack_module

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(pack_module, "sys", types.SimpleNamespace(stdin=Terminal()))
    run = gpt2("pack", "-o", tmp_path / "out")
    assert run.code == 2 and "stdin is a terminal" in run.stderr
    assert not (tmp_path / "out").exists()


def test_concurrent_appends_into_a_new_directory(tmp_path: Path, gpt2) -> None:
    import threading

    out = tmp_path / "new" / "corpus"
    errors: list[BaseException] = []

    def run(part: int) -> None:
        stream = write_stream(tmp_path / f"{part}.tok", make_docs(80, seed=part))
        try:
            pack(
                [str(stream)],
                out,
                PackOptions(
                    name=f"part-{part:02d}", append=True, shard_tokens=1500, block_tokens=100
                ),
            )
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    manifest = yaml.safe_load((out / "manifest.yaml").read_text())
    assert manifest["parts"] == [f"part-{part:02d}" for part in range(4)]
    assert manifest["splits"]["train"]["documents"] == 320
    assert gpt2("pack", "--verify", out).code == 0
