"""Faults a user can cause or suffer, caused for real: a full or closed stdout, a file-size
limit (EFBIG), two packs of one part at once, kill -9 mid-write, unknown options, damaged
manifests. Each ends as one line `gpt2 CMD: error: ...`, exit 1 (runtime) or 2 (usage)."""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from gpt2cli.text.token_stream import HEADER, encode_document

GPT2 = [
    sys.executable,
    "-c",
    "import sys; from gpt2cli.cli import main; sys.argv[0] = 'gpt2'; main()",
]


def _stream(documents: int, seed: int = 0, length: int = 300) -> bytes:
    rng = np.random.default_rng(seed)
    return HEADER + b"".join(
        encode_document(rng.integers(0, 50000, length).astype(np.uint16)) for _ in range(documents)
    )


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": root, "NO_COLOR": "1"}


def _run(*args: str | Path, stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GPT2, *map(str, args)], input=stdin, capture_output=True, env=_env(), timeout=60, **kwargs
    )


def _shell(command: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`gpt2` in a shell command line (for `>&-` and `> /dev/full`)."""
    return subprocess.run(
        ["sh", "-c", command.replace("gpt2", shlex.join(GPT2), 1)],
        capture_output=True,
        env=_env(),
        cwd=tmp_path,
        timeout=60,
    )


def _one_error_line(stderr: bytes | str, command: str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.splitlines() if line.strip()]
    prefix = f"gpt2 {command}" if command else "gpt2"
    assert len(lines) == 1 and lines[0].startswith(f"{prefix}: error: "), text
    assert "Traceback" not in text
    return lines[0]


def _listing(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


# --- Click's own usage errors ------------------------------------------------------------------


def test_click_usage_errors_are_one_line_with_the_suggestion(gpt2):
    run = gpt2("tokenize", "--formt", "jsonl")
    assert run.code == 2
    assert _one_error_line(run.stderr, "tokenize") == (
        "gpt2 tokenize: error: no such option --formt "
        "(did you mean --format? see gpt2 tokenize --help)"
    )
    run = gpt2("tokenze")
    assert run.code == 2
    assert "no such command 'tokenze' (did you mean tokenize?" in _one_error_line(run.stderr, "")
    run = gpt2("pack", "--name")
    assert run.code == 2
    assert "option '--name' requires an argument" in _one_error_line(run.stderr, "pack")


# --- stdout full, closed ------------------------------------------------------------------------


def test_full_stdout_is_one_line_even_for_version(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n")
    run = _shell("gpt2 --version > /dev/full", tmp_path)
    assert run.returncode == 1
    assert _one_error_line(run.stderr, "").endswith("stdout: no space left on device")
    run = _shell("gpt2 tokenize --ids a.txt > /dev/full", tmp_path)
    assert run.returncode == 1
    assert _one_error_line(run.stderr, "tokenize").endswith("stdout: no space left on device")


def test_closed_stdout_is_an_error_only_for_a_command_that_writes_it(gpt2, tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n")
    (tmp_path / "a.tok").write_bytes(_stream(5))
    run = _shell("gpt2 tokenize --ids a.txt >&-", tmp_path)
    assert run.returncode == 1
    assert _one_error_line(run.stderr, "tokenize").endswith("stdout: bad file descriptor")
    run = _shell("gpt2 pack -o out a.tok >&-", tmp_path)  # writes no stdout: unaffected
    assert run.returncode == 0, run.stderr
    assert gpt2("pack", "--verify", tmp_path / "out").code == 0


# --- output paths checked before the work ---------------------------------------------------------


def test_output_under_a_file_or_a_directory_is_refused_before_the_work(gpt2, tmp_path):
    # (root ignores chmod, so "cannot write" is a path under a regular file: ENOTDIR)
    text = tmp_path / "a.txt"
    text.write_text("hello world\n")
    run = gpt2("tokenize", "-o", text / "x.tok", text)
    assert run.code == 1
    assert "is not a directory" in _one_error_line(run.stderr, "tokenize")
    run = gpt2("tokenize", "-o", tmp_path, text)
    assert run.code == 1
    assert "is a directory" in _one_error_line(run.stderr, "tokenize")
    run = gpt2("eval", "lambada", "--model", tmp_path / "no-such-model", "-o", tmp_path)
    assert run.code == 1
    assert f"-o {tmp_path}: is a directory" in _one_error_line(run.stderr, "eval")
    words = " ".join(f"w{i}" for i in range(50))
    run = gpt2("overlap", "build", "-o", tmp_path, stdin=words.encode())
    assert run.code == 1 and "counted" not in run.stderr
    assert "is a directory" in _one_error_line(run.stderr, "overlap build")


# --- a file-size limit (EFBIG) in the middle of a pack -------------------------------------------


def _small_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))


def test_file_too_large_during_pack_removes_what_it_wrote(gpt2, tmp_path):
    stream = _stream(400, seed=1)  # ~240 KB of ids that compress badly
    out = tmp_path / "new"
    run = _run("pack", "-o", out, stdin=stream, preexec_fn=_small_files)
    assert run.returncode == 1
    line = _one_error_line(run.stderr, "pack")
    assert "file too large" in line and "new/data-train-0000" in line
    assert not out.exists()
    # into a directory that holds a part: that part is left as it was, and still verifies
    base = tmp_path / "base"
    assert gpt2("pack", "-o", base, "--name", "base", stdin=_stream(3)).code == 0
    before = _listing(base)
    run = _run(
        "pack", "-o", base, "--append", "--name", "big", stdin=stream, preexec_fn=_small_files
    )
    assert run.returncode == 1 and "file too large" in _one_error_line(run.stderr, "pack")
    assert _listing(base) == before
    assert gpt2("pack", "--verify", base).code == 0


# --- two packs of one part; a killed pack's temp file ---------------------------------------------


def _pack_in_flight(directory: Path, name: str) -> subprocess.Popen:
    """A `pack --append --name NAME` that has written part of a shard and waits for input."""
    process = subprocess.Popen(
        [*GPT2, "pack", "-o", str(directory), "--append", "--name", name, "--block-tokens", "64"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert process.stdin is not None
    process.stdin.write(_stream(20, seed=2))
    process.stdin.flush()
    deadline = time.monotonic() + 30
    while not any(entry.name.endswith(f".tmp-{process.pid}") for entry in directory.iterdir()):
        assert time.monotonic() < deadline and process.poll() is None, "no shard in flight"
        time.sleep(0.05)
    return process


@pytest.fixture
def base_pack(gpt2, tmp_path: Path) -> Path:
    directory = tmp_path / "shards"
    assert gpt2("pack", "-o", directory, "--name", "base", stdin=_stream(3)).code == 0
    return directory


def test_a_part_is_written_by_one_pack_at_a_time(gpt2, base_pack):
    first = _pack_in_flight(base_pack, "web")
    before = _listing(base_pack)
    second = _run("pack", "-o", base_pack, "--append", "--name", "web", stdin=_stream(5))
    assert second.returncode == 1
    line = _one_error_line(second.stderr, "pack")
    assert f"part 'web' of {base_pack} is in use by pid {first.pid} on " in line
    assert _listing(base_pack) == before  # the second one touched nothing
    first.stdin.write(_stream(5, seed=3))
    first.stdin.close()
    assert first.wait(60) == 0, first.stderr.read()
    assert gpt2("pack", "--verify", base_pack).code == 0
    assert gpt2("pack", "--merge", base_pack).code == 0


def test_a_killed_packs_temp_file_is_listed_then_removed_by_a_rerun(gpt2, base_pack):
    process = _pack_in_flight(base_pack, "web")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    leftover = f".web-train-00000.shard.tmp-{process.pid}"
    assert leftover in _listing(base_pack)
    verify = gpt2("pack", "--verify", base_pack)
    assert verify.code == 0 and leftover in verify.stderr
    rerun = gpt2("pack", "-o", base_pack, "--append", "--name", "web", stdin=_stream(5))
    assert rerun.code == 0, rerun.stderr
    assert leftover not in _listing(base_pack)
    assert ".tmp-" not in gpt2("pack", "--verify", base_pack).stderr


def test_verify_refuses_what_merge_refuses(gpt2, base_pack):
    assert gpt2("pack", "-o", base_pack, "--append", "--name", "b", stdin=_stream(4)).code == 0
    part = base_pack / "manifest.b.yaml"
    data = yaml.safe_load(part.read_text())
    data["shards"][0]["bytes"] += 1
    part.write_text(yaml.safe_dump(data, sort_keys=False))
    merge = gpt2("pack", "--merge", base_pack)
    assert merge.code == 1 and "manifest.b.yaml says" in merge.stderr
    verify = gpt2("pack", "--verify", base_pack)
    assert verify.code == 1 and "manifest.b.yaml says" in verify.stderr.splitlines()[-1]


# --- messages -------------------------------------------------------------------------------------


def test_messages_say_what_is_wrong(gpt2, tmp_path, base_pack):
    run = gpt2("tokenize", "--decode", stdin=os.urandom(4000))
    assert run.code == 1 and "not UTF-8" in _one_error_line(run.stderr, "tokenize")
    stray = tmp_path / "stray.tok"
    stray.write_bytes(HEADER + encode_document([1, 2, 0xFFFF]))
    run = gpt2("tokenize", "--decode", stray)
    assert run.code == 1
    line = _one_error_line(run.stderr, "tokenize")
    assert "65535" in line and "cut inside" not in line
    run = gpt2("tokenize", "--ids", "--format", "jsonl", stdin=b'{"text": "a\tb"}\n')
    assert "line 1: malformed JSON at column 12 (invalid control character)" in run.stderr
    run = gpt2("pack", "-o", tmp_path / "p", "--block-tokens", "0", stdin=_stream(1))
    assert run.code == 2 and "--block-tokens must be positive" in run.stderr
    run = gpt2("pack", "--verify", base_pack / "manifest.yaml")
    assert run.code == 1 and "is a file, not a pack directory" in run.stderr
    manifest = base_pack / "manifest.yaml"
    data = yaml.safe_load(manifest.read_text())
    del data["shards"][0]["sha256"]
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    run = gpt2("pack", "--verify", base_pack)
    assert run.code == 1 and "malformed shard entry (no 'sha256' key)" in run.stderr
    run = gpt2("overlap", "build", "-o", tmp_path / "f.bloom", "--fp-rate", "1e-60", stdin=b"x")
    assert run.code == 2 and "--fp-rate 1e-60" in _one_error_line(run.stderr, "overlap build")
    run = gpt2("overlap", "build", "-o", tmp_path / "f.bloom", "--format", "jsonl", stdin=b"\xff\n")
    line = _one_error_line(run.stderr, "overlap build")
    assert run.code == 1 and "<stdin>: invalid UTF-8" in line
