"""The security rules of docs/faults.md: a link (or a FIFO, or a hard link) planted at any
name the tool creates in -o / RUN / DIR is never written through, and every user-given name
that becomes a file name stays inside its directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import (
    atomic_write,
    check_name,
    create_new,
    file_mode,
    open_append,
    open_own_file,
)
from gpt2cli.locking import exclusive_lock
from gpt2cli.text import token_stream

SECRET = b"the victim's own bytes\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(SECRET)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == SECRET and stat.S_IMODE(victim.stat().st_mode) == file_mode()


def one_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, stderr
    return lines[0]


def tokens(tmp_path: Path, documents: int = 40) -> Path:
    stream = tmp_path / "in.tok"
    rng = np.random.default_rng(0)
    with open(stream, "wb") as handle:
        handle.write(token_stream.HEADER)
        for _ in range(documents):
            ids = (int(rng.integers(0, 500)) + np.arange(int(rng.integers(20, 80))) % 13).astype(
                np.uint16
            )
            handle.write(token_stream.encode_document(ids))
    return stream


# --- the primitives ---------------------------------------------------------------------------


def test_the_open_helpers_never_follow_a_link_nor_block_on_a_fifo(
    tmp_path: Path, victim: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(victim)
    for attempt in (
        lambda: open_own_file(link, os.O_RDWR | os.O_CREAT),
        lambda: open_append(link),
    ):
        with pytest.raises(Gpt2Error, match="is a symbolic link"):
            attempt()
    with pytest.raises(Gpt2Error, match="is a symbolic link"), exclusive_lock(link, "x"):
        pass
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(Gpt2Error, match="not a regular file"), exclusive_lock(fifo, "x"):
        pass
    with pytest.raises(Gpt2Error, match="not a regular file"):
        open_append(fifo)  # write-only on a FIFO without a reader: ENXIO, not a hang
    hard = tmp_path / "hard"
    os.link(victim, hard)
    with pytest.raises(Gpt2Error, match="hard links"), exclusive_lock(hard, "x"):
        pass
    os.unlink(hard)
    # create_new and atomic_write replace the link itself
    with create_new(link) as handle:
        handle.write(b"ours")
    assert not link.is_symlink() and link.read_bytes() == b"ours"
    link.unlink()
    link.symlink_to(victim)
    with atomic_write(link) as handle:
        handle.write(b"ours")
    assert not link.is_symlink() and link.read_bytes() == b"ours"
    assert untouched(victim)


@pytest.mark.parametrize(
    "name", ["../x", "a/b", ".hidden", "..", ".", "", "-", "a\0b", "x" * 101, "é", "a b"]
)
def test_one_rule_for_a_name_that_becomes_a_file_name(name: str) -> None:
    with pytest.raises(UsageError, match="is not a usable name"):
        check_name(name, "--name")


def test_a_name_that_is_usable() -> None:
    for name in ("data", "web-2019.part_3", "A" * 100):
        assert check_name(name, "--name") == name


# --- pack -------------------------------------------------------------------------------------


@pytest.mark.parametrize("planted", [".data.lock", ".manifest.lock"])
def test_pack_refuses_a_link_at_its_locks(gpt2, tmp_path: Path, victim: Path, planted: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / planted).symlink_to(victim)
    run = gpt2("pack", "-o", out, tokens(tmp_path))
    assert run.code == 1
    assert one_error(run.stderr).endswith(
        f"{out}/{planted}: is a symbolic link; gpt2 never writes through a link it did not "
        "make (remove the link)"
    )
    assert untouched(victim)


def test_pack_never_writes_through_a_link_at_a_name_it_creates(
    gpt2, tmp_path: Path, victim: Path
) -> None:
    pid = os.getpid()  # the gpt2 fixture runs the command in this process
    names = [
        "data-train-00000.shard",
        "data-val-00000.shard",
        f".data-train-00000.shard.tmp-{pid}",
        f".data-val-00000.shard.tmp-{pid}",
        "manifest.yaml",
    ]
    source = tokens(tmp_path)
    for name in names:
        out = tmp_path / f"out-{names.index(name)}"
        out.mkdir()
        (out / name).symlink_to(victim)
        run = gpt2("pack", "--append", "-o", out, "--val-tokens", "100", source)
        assert run.code == 0, run.stderr
        assert untouched(victim), name
        assert not any(path.is_symlink() for path in out.iterdir()), name
        assert gpt2("pack", "--verify", out).code == 0


def test_to_llmc_keeps_its_files_inside_o(gpt2, tmp_path: Path, victim: Path) -> None:
    packed = tmp_path / "p"
    assert gpt2("pack", "-o", packed, "--val-tokens", "100", tokens(tmp_path)).code == 0
    out = tmp_path / "c" / "out"
    for name in ("../../escape", "../x", "/tmp/abs", ".hidden"):
        run = gpt2("pack", "--to-llmc", packed, "-o", out, "--name", name)
        assert run.code == 2
        assert "is not a usable name" in one_error(run.stderr)
    assert not (tmp_path / "c").exists()
    assert not list(tmp_path.glob("escape*"))
    out.mkdir(parents=True)
    (out / "data_val_000000.bin").symlink_to(victim)
    (out / f".data_train_000001.bin.tmp-{os.getpid()}").symlink_to(victim)  # our temp name
    dead = 2**22 + 17  # above pid_max's default: no such process
    (out / f".data_val_000000.bin.tmp-{dead}").write_bytes(b"left by a kill -9")
    run = gpt2("pack", "--to-llmc", packed, "-o", out)
    assert run.code == 0, run.stderr
    assert untouched(victim)
    assert sorted(path.name for path in out.iterdir()) == [
        "data_train_000001.bin",
        "data_val_000000.bin",
    ]


# --- train ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpt2cli.data.pack import PackOptions, pack

    root = tmp_path_factory.mktemp("symlinks")
    pack([str(tokens(root, 80))], root / "shards", PackOptions(val_tokens=300))
    return root / "shards"


def train_args(shards: Path, run: Path, steps: int = 2) -> list[str | Path]:
    return [
        "train", "--data", shards, "-o", run, "--size", "tiny", "--seq-len", "32",
        "--batch-size", "4", "--max-steps", str(steps), "--save-every", "2",
        "--eval-every", "100", "--device", "cpu",
    ]  # fmt: skip


def test_train_refuses_a_link_at_its_lock(gpt2, shards: Path, tmp_path: Path, victim) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    result = gpt2(*train_args(shards, run))
    assert result.code == 1
    assert f"{run}/.lock: is a symbolic link" in one_error(result.stderr)
    assert untouched(victim)


def test_train_never_writes_through_a_link_in_its_run_directory(
    gpt2, shards: Path, tmp_path: Path, victim: Path
) -> None:
    pid = os.getpid()
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    (victim_dir / "kept").write_bytes(SECRET)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("metrics.jsonl", "config.yaml", "loss.png", "final", f"final.tmp-{pid}"):
        (run / name).symlink_to(victim)
    (run / "checkpoints" / f"step-00000002.tmp-{pid}").symlink_to(victim_dir)
    result = gpt2(*train_args(shards, run))
    assert result.code == 0, result.stderr
    assert untouched(victim)
    assert (victim_dir / "kept").read_bytes() == SECRET
    links = [path for path in run.rglob("*") if path.is_symlink()]
    assert links == []
    # every file of the checkpoint, the weights included, has the mode of any new file
    for path in (run / "final").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == file_mode(), path

    # a resumed run: links planted over its own files and its temp names
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    (run / f"final.tmp-{pid}").symlink_to(victim_dir)
    (run / f"final.old-{pid}").symlink_to(victim_dir)
    # the log is read back and rewritten on resume: a link there is refused, not read
    result = gpt2(*train_args(shards, run, steps=4), "--resume")
    assert result.code == 1
    assert f"{run}/metrics.jsonl: is a symbolic link" in one_error(result.stderr)
    (run / "metrics.jsonl").unlink()
    result = gpt2(*train_args(shards, run, steps=4), "--resume")
    assert result.code == 0, result.stderr
    assert untouched(victim)
    assert (victim_dir / "kept").read_bytes() == SECRET
    assert [path for path in run.rglob("*") if path.is_symlink()] == []
