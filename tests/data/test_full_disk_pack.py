"""`pack` and `pack --to-llmc` on a really full file system (a tmpfs, mounted for the test):
one error line naming the file, and nothing left behind, not even the directory they made."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gpt2cli.text import token_stream


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, all its blocks taken."""
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "tmpfs", str(mount)],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    try:
        with open(mount / "filler", "wb") as filler:
            try:
                filler.write(b"\0" * (1 << 20))
                filler.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def stream(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with open(path, "wb") as handle:
        handle.write(token_stream.HEADER)
        for _ in range(200):
            handle.write(token_stream.encode_document(rng.integers(0, 50000, 50)))
    return path


def test_pack_on_a_full_disk_leaves_nothing(gpt2, full: Path, tmp_path: Path) -> None:
    source = stream(tmp_path / "in.tok")
    run = gpt2("pack", "-o", full / "p", source)
    assert run.code == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no space left on device" in lines[0], run.stderr
    assert sorted(os.listdir(full)) == ["filler"]


def test_to_llmc_on_a_full_disk_is_all_or_nothing(gpt2, full: Path, tmp_path: Path) -> None:
    packed = tmp_path / "p"
    assert gpt2("pack", "-o", packed, "--val-tokens", "500", stream(tmp_path / "in.tok")).code == 0
    (full / "filler").write_bytes(b"\0" * 40_000)  # room for a few files, not for all
    run = gpt2("pack", "--to-llmc", packed, "-o", full / "c", "--shard-tokens", "1000")
    assert run.code == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no space left on device" in lines[0], run.stderr
    assert sorted(os.listdir(full)) == ["filler"]
