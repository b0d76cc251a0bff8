"""Staged-dedup files (.ddp) that are damaged or hostile: every one is refused with one line
(exit 1) by the stage that reads it, and that stage writes nothing. Also the manual's staged
commands as written, and stdin copies that do not fit on the disk."""

from __future__ import annotations

import glob
import json
import os
import re
import resource
import shlex
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from gpt2cli.corpus import dedup_files
from gpt2cli.errors import Gpt2Error

ROOT = Path(__file__).resolve().parents[2]
PROSE = (
    "The river runs past the old mill and into the valley where the farmers have worked the "
    "land for many generations and the children walk to the bridge to watch the water rise"
)


def jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t, "karma": i}) + "\n" for i, t in enumerate(texts)).encode()


def part_texts(index: int) -> list[str]:
    words = PROSE.split()
    texts = [PROSE, PROSE.upper(), " ".join(words[:-1] + ["stream"])]
    texts += [f"document {index} {n} " + " ".join(words[n : n + 12]) for n in range(6)]
    return texts


@pytest.fixture
def stages(gpt2, tmp_path: Path) -> dict[str, Path]:
    """Two parts through every stage: their signature, edge and cluster files."""
    files: dict[str, Path] = {}
    for index in range(2):
        part = tmp_path / f"part-{index}.jsonl"
        part.write_bytes(jsonl(part_texts(index)))
        files[f"part{index}"] = part
        files[f"sig{index}"] = tmp_path / f"sig-{index}.ddp"
        done = gpt2("corpus", "dedup-signatures", part, "-o", files[f"sig{index}"])
        assert done.code == 0, done.stderr
    files["edges"] = tmp_path / "edges.ddp"
    done = gpt2("corpus", "dedup-buckets", files["sig0"], files["sig1"], "-o", files["edges"])
    assert done.code == 0, done.stderr
    files["clusters"] = tmp_path / "clusters.ddp"
    args = ("corpus", "dedup-clusters", files["edges"], files["sig0"], files["sig1"])
    done = gpt2(*args, "-o", files["clusters"])
    assert done.code == 0, done.stderr
    return files


def reader_of(kind: str, files: dict[str, Path], damaged: Path, out: Path) -> list[str | Path]:
    """The command line of the stage that reads a file of ``kind`` (``damaged`` in its place)."""
    if kind == "signatures":
        return ["corpus", "dedup-buckets", damaged, files["sig1"], "-o", out]
    if kind == "edges":
        return ["corpus", "dedup-clusters", damaged, files["sig0"], files["sig1"], "-o", out]
    return ["corpus", "dedup-filter", "-c", damaged, "--part", "0", files["part0"]]


def assert_refused(gpt2, kind: str, files: dict[str, Path], damaged: Path, *words: str) -> str:
    out = damaged.parent / "out.ddp"
    run = gpt2(*reader_of(kind, files, damaged, out))
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.code == 1, run.stderr
    assert len(lines) == 1 and re.match(r"gpt2 corpus dedup-\w+: error: ", lines[0]), lines
    assert str(damaged) in lines[0]
    for word in words:
        assert word in lines[0]
    assert run.stdout == b"" and not out.exists()
    return lines[0]


KINDS = {"signatures": "sig0", "edges": "edges", "clusters": "clusters"}


def rewrite_header(path: Path, change) -> None:
    """Edit a file's JSON header as a hostile writer would: the checksums made to match."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[8:16])
    document = json.loads(data[24 : 24 + size])
    change(document)
    header = json.dumps(document, separators=(",", ":")).encode()
    header += b" " * (size - len(header))
    assert len(header) == size, "the edit must keep the header's length"
    prefix = data[:16]
    crc = zlib.crc32(header, zlib.crc32(prefix))
    path.write_bytes(prefix + struct.pack("<II", crc, 0) + header + data[24 + size :])


# ---------------------------------------------------------------------------------------------
# hostile headers


@pytest.mark.parametrize("kind", KINDS)
def test_an_object_dtype_is_refused_before_any_map(gpt2, stages, kind) -> None:
    path = stages[KINDS[kind]]
    name = next(iter(dedup_files.KINDS[kind]))

    def to_object(document: dict) -> None:
        document["arrays"][name]["dtype"] = "|O"

    rewrite_header(path, to_object)
    assert_refused(gpt2, kind, stages, path, "dtype '|O'")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("shape", 2**40, "do not fit the file"),
        ("shape", 2**62, "do not fit the file"),
        ("shape", -1, "is not a size"),
        ("offset", 2**40, "do not fit the file"),
        ("offset", -64, "is not a size"),
        ("offset", 65, "do not fit the file"),
    ],
)
def test_huge_or_negative_sizes_are_refused(gpt2, stages, field, value, words) -> None:
    path = stages["sig0"]

    def change(document: dict) -> None:
        spec = document["arrays"]["exact"]
        if field == "shape":
            spec["shape"] = [value]
        else:
            spec["offset"] = value

    rewrite_header(path, change)
    assert_refused(gpt2, "signatures", stages, path, words)


def test_a_huge_header_length_is_refused_without_allocating(gpt2, stages) -> None:
    path = stages["sig0"]
    data = bytearray(path.read_bytes())
    data[8:16] = struct.pack("<Q", 2**40)
    path.write_bytes(bytes(data))
    assert_refused(gpt2, "signatures", stages, path, "1,099,511,627,776-byte header")


def test_sizes_that_disagree_with_the_header_are_refused(gpt2, stages) -> None:
    def more_documents(document: dict) -> None:
        document["meta"]["documents"] += 1

    rewrite_header(stages["sig0"], more_documents)
    assert_refused(gpt2, "signatures", stages, stages["sig0"], "other sizes")


def test_out_of_range_document_numbers_are_refused(gpt2, stages, tmp_path) -> None:
    # well-formed files (valid checksums) whose numbers point past the documents
    meta, arrays = dedup_files.read_arrays(stages["edges"], "edges")
    bad = tmp_path / "bad-edges.ddp"
    dedup_files.write_arrays(bad, meta, {"edges": np.array([[0, 10**9]], dtype=np.int64)})
    assert_refused(gpt2, "edges", stages, bad, "beyond the parts")
    meta, arrays = dedup_files.read_arrays(stages["clusters"], "clusters")
    bad = tmp_path / "bad-clusters.ddp"
    representative = np.array(arrays["representative"])
    representative[3] = -5
    dedup_files.write_arrays(
        bad, meta, {"representative": representative, "reason": arrays["reason"]}
    )
    assert_refused(gpt2, "clusters", stages, bad, "out of range")


# ---------------------------------------------------------------------------------------------
# damage


def regions(path: Path) -> dict[str, int]:
    """A byte offset inside each region of a file: the fields of its prefix, its JSON header,
    the padding after it, and the first, middle and last byte of each array."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[8:16])
    document = json.loads(data[24 : 24 + size])
    found = {"magic": 3, "header length": 9, "header crc": 17, "zero": 21, "json": 30}
    if data[24 + size - 1 : 24 + size] == b" ":
        found["header padding"] = 24 + size - 1
    for name, spec in document["arrays"].items():
        nbytes = int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize
        if nbytes:
            for where, at in (("first", 0), ("middle", nbytes // 2), ("last", nbytes - 1)):
                found[f"{name} {where}"] = spec["offset"] + at
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_a_flipped_byte_in_any_region_is_refused(gpt2, stages, tmp_path, kind) -> None:
    original = stages[KINDS[kind]].read_bytes()
    for region, offset in regions(stages[KINDS[kind]]).items():
        damaged = tmp_path / f"flipped-{kind}.ddp"
        data = bytearray(original)
        data[offset] ^= 0x10
        damaged.write_bytes(bytes(data))
        line = assert_refused(gpt2, kind, stages, damaged)
        assert "damaged" in line or "not a gpt2 staged-dedup file" in line, (region, line)


@pytest.mark.parametrize("kind", KINDS)
def test_every_single_bit_flip_is_detected_by_the_reader(stages, tmp_path, kind) -> None:
    original = stages[KINDS[kind]].read_bytes()
    damaged = tmp_path / "flipped.ddp"
    (size,) = struct.unpack("<Q", original[8:16])
    # every byte of the prefix and the header, every 5th of the arrays (a few seconds)
    for offset in [*range(24 + size), *range(24 + size, len(original), 5)]:
        data = bytearray(original)
        data[offset] ^= 1 << (offset % 8)
        damaged.write_bytes(bytes(data))
        with pytest.raises(Gpt2Error):
            dedup_files.read_arrays(damaged, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_truncation_at_any_point_is_refused(gpt2, stages, tmp_path, kind) -> None:
    original = stages[KINDS[kind]].read_bytes()
    (size,) = struct.unpack("<Q", original[8:16])
    cuts = {0, 5, 8, 15, 16, 23, 24, 24 + size // 2, 24 + size, len(original) // 2}
    cuts |= {len(original) - 1}
    for cut in sorted(c for c in cuts if c < len(original)):
        damaged = tmp_path / f"cut-{kind}.ddp"
        damaged.write_bytes(original[:cut])
        assert_refused(gpt2, kind, stages, damaged)


def test_trailing_bytes_are_refused(gpt2, stages) -> None:
    path = stages["edges"]
    path.write_bytes(path.read_bytes() + b"\0" * 64)
    assert_refused(gpt2, "edges", stages, path, "past the last array")


def test_a_format_1_file_is_refused_with_the_stage_to_rerun(gpt2, stages) -> None:
    path = stages["sig0"]
    path.write_bytes(b"GPT2DDP1" + path.read_bytes()[8:])
    assert_refused(gpt2, "signatures", stages, path, "format 1", "rerun dedup-signatures")


# ---------------------------------------------------------------------------------------------
# the manual's commands as written


def readme_staged_commands() -> list[str]:
    manual = (ROOT / "docs" / "corpus.md").read_text(encoding="utf-8")
    section = manual.split("## Many machines", 1)[1].split("\nMemory:", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.startswith("    gpt2 corpus")]
    return [line.split("  #", 1)[0].strip() for line in lines]


def test_the_documented_staged_dedup_commands_work_as_written(gpt2, tmp_path, monkeypatch) -> None:
    commands = readme_staged_commands()
    assert [c.split()[2] for c in commands] == [
        "dedup-signatures",
        "dedup-buckets",
        "dedup-clusters",
        "dedup-filter",
    ]
    monkeypatch.chdir(tmp_path)
    for folder in ("sig", "edges", "out"):
        Path(folder).mkdir()
    parts = [f"{i:04d}" for i in range(11)]  # part-0010 after part-0009: the padding matters
    texts = [t for index in range(len(parts)) for t in part_texts(index)]
    for index, name in enumerate(parts):
        Path(f"part-{name}.jsonl").write_bytes(jsonl(part_texts(index)))
    buckets = int(re.search(r"--buckets (\d+)", commands[1]).group(1))

    def run(command: str, **names: str) -> None:
        for variable, value in names.items():
            command = command.replace(f"${variable}", value)
        words = shlex.split(command)
        target = None
        if ">" in words:
            target = Path(words[words.index(">") + 1])
            words = words[: words.index(">")]
        args = []
        for word in words[1:]:
            args += sorted(glob.glob(word)) if "*" in word else [word]
        done = gpt2(*args)
        assert done.code == 0, (command, done.stderr)
        if target is not None:
            target.write_bytes(done.stdout)

    for name in parts:
        run(commands[0], I=name)
    for bucket in range(buckets):
        run(commands[1], B=str(bucket))
    run(commands[2])
    for name in parts:
        run(commands[3], I=name)
    staged = b"".join(Path(f"out/part-{name}.jsonl").read_bytes() for name in parts)
    one = gpt2("corpus", "dedup", stdin=jsonl(texts))
    assert one.code == 0 and staged == one.stdout
    assert len(staged.splitlines()) < len(texts)


# ---------------------------------------------------------------------------------------------
# a copy of stdin that does not fit


def _gpt2_process(args: list[str], stdin: bytes, env: dict, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **env}
    command = [sys.executable, "-m", "gpt2cli", *args]
    return subprocess.run(command, input=stdin, capture_output=True, env=env, timeout=60, **kw)


def _small_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 1 MB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _big_input() -> bytes:
    return jsonl([f"{PROSE} {n}" for n in range(12_000)])  # ~2.6 MB


@pytest.mark.parametrize("verb", ["dedup", "overlap"])
def test_a_full_disk_while_copying_stdin_leaves_nothing(full_disk, verb) -> None:
    if verb == "dedup":
        run = _gpt2_process(["corpus", "dedup"], _big_input(), {"TMPDIR": str(full_disk)})
    else:
        run = _gpt2_process(
            ["overlap", "build", "-o", str(full_disk / "f.bloom")], _big_input(), {}
        )
    lines = [line for line in run.stderr.decode().splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert "no space left on device" in lines[0] and f"{full_disk}/.gpt2-" in lines[0]
    assert list(full_disk.iterdir()) == [] and run.stdout == b""


@pytest.mark.parametrize("verb", ["dedup", "overlap"])
def test_a_file_size_limit_while_copying_stdin_leaves_nothing(tmp_path, verb) -> None:
    env = {"TMPDIR": str(tmp_path)}
    if verb == "dedup":
        args = ["corpus", "dedup"]
    else:
        args = ["overlap", "build", "-o", str(tmp_path / "f.bloom")]
    run = _gpt2_process(args, _big_input(), env, preexec_fn=_small_files)
    lines = [line for line in run.stderr.decode().splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert "file too large" in lines[0] and f"{tmp_path}/.gpt2-" in lines[0]
    assert list(tmp_path.iterdir()) == []
