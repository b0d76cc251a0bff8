"""Inputs that used to give a wrong result with exit 0: JSON Lines taken as one text, empty
LAMBADA passages scored, CRLF copies of the published files, a damaged Bloom filter, bare NaN
in JSON, non-UTF-8 XML and one bad input among several in `overlap check`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import struct
import zlib
from pathlib import Path

import pytest
import torch

from gpt2cli.evaluate import tasks
from gpt2cli.overlap import filter_file

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)
BLOCK = 32


def strict_json(text: str | bytes):
    """json.loads that refuses NaN and Infinity, as RFC 8259 does."""

    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert re.match(r"gpt2 [a-z ]+: error: ", lines[-1]), stderr
    return lines[-1]


def save_tiny(directory: Path, broken: bool = False) -> Path:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=64, n_positions=BLOCK, vocab_size=50257
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    if broken:  # weights that give NaN logits everywhere
        with torch.no_grad():
            model.transformer.ln_f.weight.fill_(math.nan)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("silent") / "tiny")


@pytest.fixture(scope="module")
def nan_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("silent") / "nan", broken=True)


def decoded(gpt2, path: Path) -> str:
    stream = path.with_name(path.name + ".tokens")
    made = gpt2("tokenize", str(path), "-o", str(stream))
    assert made.code == 0, made.stderr
    text = gpt2("tokenize", "--decode", str(stream))
    assert text.code == 0, text.stderr
    return text.stdout.decode("utf-8")


# ------------------------------------------------------------------------- format detection

LINES = b'{"text": "first document"}\n{"text": "second document"}\n'


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bom.jsonl", b"\xef\xbb\xbf" + LINES),
        ("blank.jsonl", b"\n" + LINES),
        ("space.jsonl", b" " + LINES),
        ("blank-and-bom.txt", b"\xef\xbb\xbf\r\n  " + LINES),  # found by content, not name
        ("records.ndjson", b"\xef\xbb\xbf" + LINES),
    ],
)
def test_json_lines_found_past_bom_and_blank_space(tmp_path: Path, gpt2, name, data) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    text = decoded(gpt2, path)
    assert "first document" in text and "second document" in text
    assert '"text"' not in text and "{" not in text and "\ufeff" not in text


def test_a_bom_is_not_part_of_a_text_document(tmp_path: Path, gpt2) -> None:
    path = tmp_path / "plain.txt"
    path.write_bytes(b"\xef\xbb\xbfplain words")
    assert decoded(gpt2, path) == "plain words"


def test_declared_xml_encoding_is_honoured(tmp_path: Path, gpt2) -> None:
    path = tmp_path / "WSCollection.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<s>caf\xe9 cr\xe8me</s>\n')
    assert "café crème" in decoded(gpt2, path)


# ------------------------------------------------------------------------- lambada


@pytest.mark.parametrize(
    ("passage", "line"),
    [("", 2), ("   ", 2), ("lonely", 2), ("trailing space ", 2)],
)
def test_lambada_passage_without_context_or_target_is_a_data_error(
    tmp_path: Path, model_dir: Path, gpt2, passage: str, line: int
) -> None:
    data = tmp_path / "lambada_test.jsonl"
    rows = ["the cat sat on the mat", passage, "the dog ran to the park"]
    data.write_text("".join(json.dumps({"text": row}) + "\n" for row in rows))
    result = gpt2("eval", "lambada", "--model", str(model_dir), "--data", str(data), "--json")
    assert result.code == 1, result.stderr
    assert result.stdout == b""
    assert re.search(rf"lambada_test.jsonl: line {line}: ", error_line(result.stderr))


def test_three_empty_lambada_passages_are_not_a_perfect_score(
    tmp_path: Path, model_dir: Path, gpt2
) -> None:
    data = tmp_path / "lambada_test.jsonl"
    data.write_text('{"text": ""}\n' * 3)
    result = gpt2("eval", "lambada", "--model", str(model_dir), "--data", str(data), "--json")
    assert result.code == 1 and "line 1: an empty passage" in error_line(result.stderr)


# ------------------------------------------------------------------------- CRLF and checksums

WIKI_RAW = (
    " \n = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre "
    "actor . He had a guest @-@ starring role in 2000 .\n \n = = Career = = \n \n In 2006 , "
    "Boulter starred alongside Whishaw in the play Citizenship .\n \n = Du Fu = \n \n Du Fu "
    "( 712 – 770 ) was a prominent Chinese poet of the Tang dynasty . \n \n"
)


def eval_json(gpt2, model_dir: Path, task: str, data: Path) -> tuple[dict, str]:
    result = gpt2("eval", task, "--model", str(model_dir), "--data", str(data), "--json")
    assert result.code == 0, result.stderr
    return strict_json(result.stdout)["results"][task], result.stderr


def test_crlf_wikitext_gives_the_published_figures(tmp_path: Path, model_dir: Path, gpt2) -> None:
    lf, crlf = tmp_path / "lf.raw", tmp_path / "crlf.raw"
    lf.write_bytes(WIKI_RAW.encode())
    crlf.write_bytes(WIKI_RAW.replace("\n", "\r\n").encode())
    want, _ = eval_json(gpt2, model_dir, "wikitext2", lf)
    got, _ = eval_json(gpt2, model_dir, "wikitext2", crlf)
    for key in ("word_perplexity,none", "byte_perplexity,none", "token_perplexity,none"):
        assert got[key] == want[key]


def test_known_checksum_warns_and_names_line_endings(
    tmp_path: Path, model_dir: Path, gpt2, monkeypatch
) -> None:
    rows = ["the cat sat on the mat mat", "she found her keys on the table"]
    published = "".join(json.dumps({"text": row}) + "\n" for row in rows).encode()
    lambada = tasks.get_task("lambada")
    digest = hashlib.sha256(published).hexdigest()
    monkeypatch.setattr(
        lambada, "data_files", (dataclasses.replace(lambada.data_files[0], sha256=digest),)
    )
    lf, crlf, other = tmp_path / "lf.jsonl", tmp_path / "crlf.jsonl", tmp_path / "other.jsonl"
    lf.write_bytes(published)
    crlf.write_bytes(published.replace(b"\n", b"\r\n"))
    other.write_bytes(published.replace(b"mat mat", b"mat rug"))
    want, quiet = eval_json(gpt2, model_dir, "lambada", lf)
    assert "warning" not in quiet
    got, warned = eval_json(gpt2, model_dir, "lambada", crlf)
    assert got == want
    assert re.search(r"warning: .*crlf.jsonl differs .* only in its line endings", warned)
    _, warned = eval_json(gpt2, model_dir, "lambada", other)
    assert re.search(rf"warning: .*other.jsonl is not the published .*{digest}", warned)
    assert "line endings" not in warned


# ------------------------------------------------------------------------- the Bloom filter


@pytest.fixture()
def bloom(tmp_path: Path, gpt2) -> tuple[Path, Path]:
    train = tmp_path / "train.txt"
    train.write_text(" ".join(f"word{i} alpha beta gamma" for i in range(400)))
    path = tmp_path / "train.bloom"
    built = gpt2("overlap", "build", "-o", str(path), str(train))
    assert built.code == 0, built.stderr
    return path, train


def overlap_json(gpt2, *args: str) -> tuple[int, dict | None, str]:
    result = gpt2("overlap", *args)
    return result.code, strict_json(result.stdout) if result.stdout else None, result.stderr


def test_flipped_bit_array_byte_is_found(tmp_path: Path, gpt2, bloom) -> None:
    path, train = bloom
    code, report, _ = overlap_json(gpt2, "check", "--json", "-F", str(path), str(train))
    assert code == 0 and report["total"]["percent"] == 100.0
    data = bytearray(path.read_bytes())
    words = filter_file.DATA_OFFSET + int(struct.unpack_from("<Q", data, 24)[0]) // 8
    set_byte = next(i for i in range(filter_file.DATA_OFFSET, words) if data[i])
    data[set_byte] = 0  # a false negative for every n-gram that needs these bits
    damaged = tmp_path / "damaged.bloom"
    damaged.write_bytes(bytes(data))
    result = gpt2("overlap", "check", "-F", str(damaged), str(train))
    assert result.code == 1 and "checksum mismatch" in error_line(result.stderr)
    result = gpt2("overlap", "verify", str(path), str(damaged))
    assert result.code == 1 and "damaged.bloom" in error_line(result.stderr)
    assert "train.bloom: ok" in result.stderr
    code, _, _ = overlap_json(gpt2, "verify", str(path))
    assert code == 0
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # the checksum table itself
    damaged.write_bytes(bytes(data))
    result = gpt2("overlap", "verify", "--json", str(damaged))
    assert result.code == 1 and "damaged checksum table" in error_line(result.stderr)


def test_version_2_filter_is_read_with_a_warning(tmp_path: Path, gpt2, bloom) -> None:
    path, train = bloom
    data = path.read_bytes()
    m = struct.unpack_from("<Q", data, 24)[0]
    head = bytearray(data[:76])
    struct.pack_into("<I", head, 8, 2)
    registers = data[128 : 128 + (1 << 14)]
    head += struct.pack("<I", zlib.crc32(registers, zlib.crc32(bytes(head))))
    old = bytes(head) + bytes(128 - len(head)) + data[128 : filter_file.DATA_OFFSET + m // 8]
    v2 = tmp_path / "v2.bloom"
    v2.write_bytes(old)
    code, report, err = overlap_json(gpt2, "check", "--json", "-F", str(v2), str(train))
    assert code == 0, err
    assert report["total"]["percent"] == 100.0 and report["filter"]["format_version"] == 2
    assert "warning" in err and "cannot be verified" in err
    result = gpt2("overlap", "verify", str(v2))
    assert result.code == 1 and "no checksums" in error_line(result.stderr)


# ------------------------------------------------------------------------- overlap inputs


def test_check_reports_every_readable_input(tmp_path: Path, gpt2) -> None:
    train = tmp_path / "train.txt"
    train.write_text("le café crème de la maison est très bon ce matin " * 3)
    path = tmp_path / "train.bloom"
    assert gpt2("overlap", "build", "-o", str(path), str(train)).code == 0
    latin = tmp_path / "WSCollection.xml"
    latin.write_bytes(
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        + "<s>le café crème de la maison est très bon ce matin</s>\n".encode("latin-1")
    )
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"some fine words here and more words then \xff\xfe bad bytes")
    missing = tmp_path / "missing.txt"
    inputs = [str(latin), str(broken), str(missing), str(train)]
    code, report, err = overlap_json(gpt2, "check", "--json", "-F", str(path), *inputs)
    assert code == 1
    rows = {Path(row["source"]).name: row for row in report["inputs"]}
    assert rows["WSCollection.xml"]["found"] > 0
    assert rows["train.txt"]["percent"] == 100.0
    failed = {Path(f["source"]).name: f["error"] for f in report["failures"]}
    assert set(failed) == {"broken.txt", "missing.txt"}
    assert "invalid UTF-8" in failed["broken.txt"] and "no such file" in failed["missing.txt"]
    last = error_line(err)
    assert "2 of 4 inputs" in last and "broken.txt" in last and "missing.txt" in last
    result = gpt2("overlap", "check", "--jsonl", "-F", str(path), *inputs)
    lines = [strict_json(line) for line in result.stdout.splitlines()]
    assert result.code == 1 and sum("error" in line for line in lines) == 2


# ------------------------------------------------------------------------- non-finite numbers


def test_score_writes_json_with_null_for_non_finite(tmp_path: Path, nan_model_dir, gpt2) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "hello there"}\n{"text": "general kenobi"}\n')
    result = gpt2("score", "--model", str(nan_model_dir), "--summary", "--per-token", str(docs))
    assert result.code == 0, result.stderr
    records = [strict_json(line) for line in result.stdout.splitlines()]
    assert len(records) == 3
    assert records[0]["nll"] is None and records[0]["per_token"][0]["logprob"] is None
    assert records[-1]["summary"] and records[-1]["bits_per_byte"] is None
    assert re.search(r"gpt2 score: warning: 2 of 2 documents .*non-finite", result.stderr)


def test_sample_with_non_finite_logits_is_one_error(nan_model_dir: Path, gpt2) -> None:
    result = gpt2("sample", "--model", str(nan_model_dir), "--max-tokens", "3", "hello")
    assert result.code == 1
    assert "not finite" in error_line(result.stderr)
    greedy = ("--greedy", "--num-samples", "3", "hello")
    result = gpt2("sample", "--model", str(nan_model_dir), *greedy)
    assert result.code == 1 and "not finite" in error_line(result.stderr)


def test_eval_warns_about_non_finite_metrics(tmp_path: Path, nan_model_dir: Path, gpt2) -> None:
    data = tmp_path / "wiki.test.raw"
    data.write_text(WIKI_RAW)
    result = gpt2("eval", "wikitext2", "--model", str(nan_model_dir), "--data", str(data), "--json")
    assert result.code == 0, result.stderr
    results = strict_json(result.stdout)["results"]["wikitext2"]
    assert results["word_perplexity,none"] == "N/A"
    assert re.search(r"gpt2 eval: warning: wikitext2: word_perplexity is nan", result.stderr)
