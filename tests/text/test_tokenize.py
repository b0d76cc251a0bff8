"""gpt2 tokenize: known ids, input formats, --ids, --decode, bad input, tiktoken equivalence."""

from __future__ import annotations

import json
import sysconfig
import types
from pathlib import Path

import numpy as np
import pytest

from gpt2cli import fileio
from gpt2cli.errors import UsageError
from gpt2cli.text import readers, token_stream
from gpt2cli.text.parallel_encoder import encode_pieces
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.tokenizer import EOT, EOT_TEXT, VOCAB_SIZE, decode, encode, get_encoding


def stream_docs(data: bytes) -> list[list[int]]:
    import io

    return [doc.tolist() for doc in token_stream.TokenStreamReader(io.BytesIO(data), "test")]


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------------------ the encoding


def test_known_ids_and_vocabulary() -> None:
    assert encode("hello world") == [31373, 995]
    encoding = get_encoding()
    assert encoding.n_vocab == VOCAB_SIZE == 50257
    assert encoding.encode(EOT_TEXT, allowed_special="all") == [EOT]
    assert decode([31373, 995]) == "hello world"


def test_literal_endoftext_is_ordinary_text(tmp_path: Path, gpt2) -> None:
    text = f"before {EOT_TEXT} after"
    ids = encode(text)
    assert EOT not in ids and decode(ids) == text
    run = gpt2("tokenize", "--format", "file", write(tmp_path / "a.txt", text))
    assert run.code == 0, run.stderr
    assert stream_docs(run.stdout) == [ids]


def test_stream_layout(tmp_path: Path, gpt2) -> None:
    run = gpt2("tokenize", "--format", "file", write(tmp_path / "a.txt", "hello world"))
    assert run.stdout == token_stream.HEADER + np.array([31373, 995, EOT], "<u2").tobytes()


# ------------------------------------------------------------------------------ input formats


def test_jsonl_detected_and_field(tmp_path: Path, gpt2) -> None:
    lines = [{"text": "first doc", "id": 1}, {"text": "second\ndoc", "body": "x"}]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    run = gpt2("tokenize", path)
    assert run.code == 0, run.stderr
    assert stream_docs(run.stdout) == [encode("first doc"), encode("second\ndoc")]
    path = write(tmp_path / "e.jsonl", '{"body": "x y"}\n{"body": "z"}\n')
    run = gpt2("tokenize", "--field", "body", path)
    assert stream_docs(run.stdout) == [encode("x y"), encode("z")]


def test_text_with_delimiter(tmp_path: Path, gpt2) -> None:
    data = f"one\nline two\n{EOT_TEXT}\nthree\n{EOT_TEXT}\nfour"
    run = gpt2("tokenize", write(tmp_path / "t.txt", data))
    assert run.code == 0, run.stderr
    assert stream_docs(run.stdout) == [encode("one\nline two"), encode("three"), encode("four")]
    run = gpt2("tokenize", "--delimiter", "%%", write(tmp_path / "u.txt", "a\n%%\nb\n"))
    assert stream_docs(run.stdout) == [encode("a"), encode("b\n")]
    # Without a delimiter the whole input is one document.
    run = gpt2("tokenize", write(tmp_path / "v.txt", "just\nsome text\n"))
    assert stream_docs(run.stdout) == [encode("just\nsome text\n")]


def test_nul_and_file_formats(tmp_path: Path, gpt2) -> None:
    run = gpt2("tokenize", "--format", "nul", write(tmp_path / "n", "a b\0c\nd\0"))
    assert stream_docs(run.stdout) == [encode("a b"), encode("c\nd")]
    one, two = write(tmp_path / "1.txt", "file one\n"), write(tmp_path / "2.txt", "file two")
    run = gpt2("tokenize", "--format", "file", one, two)
    assert stream_docs(run.stdout) == [encode("file one\n"), encode("file two")]


def test_stdin_dash(tmp_path: Path, gpt2) -> None:
    run = gpt2("tokenize", "--format", "text", "-", stdin=b"from stdin")
    assert run.code == 0, run.stderr
    assert stream_docs(run.stdout) == [encode("from stdin")]


def test_ids_output(tmp_path: Path, gpt2) -> None:
    path = write(tmp_path / "d.jsonl", '{"text": "hello world"}\n{"text": ""}\n')
    run = gpt2("tokenize", "--ids", path)
    assert run.code == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.decode().splitlines()] == [[31373, 995], []]


# ------------------------------------------------------------------------------ round trips


def test_decode_round_trip(tmp_path: Path, gpt2) -> None:
    texts = [
        "Héllo, wörld! ✓ 日本語",
        "  indented\n\ttabs\r\nand CRLF",
        "emoji 🤖 and <|endoftext|>",
    ]
    data = f"\n{EOT_TEXT}\n".join(texts)
    run = gpt2("tokenize", write(tmp_path / "t.txt", data))
    assert run.code == 0, run.stderr
    stream = write(tmp_path / "t.tok", run.stdout)
    run = gpt2("tokenize", "--decode", stream)
    assert run.code == 0, run.stderr
    assert run.stdout.decode() == data
    run = gpt2("tokenize", "--ids", tmp_path / "t.txt")
    ids_lines = write(tmp_path / "t.ids", run.stdout)
    assert gpt2("tokenize", "--decode", ids_lines).stdout.decode() == data


def test_concatenated_streams_are_one_stream(tmp_path: Path, gpt2) -> None:
    a = gpt2("tokenize", write(tmp_path / "a.txt", f"a1\n{EOT_TEXT}\na2")).stdout
    b = gpt2("tokenize", write(tmp_path / "b.txt", "b1")).stdout
    joined = write(tmp_path / "ab.tok", a + b)
    assert stream_docs(a + b) == [encode("a1"), encode("a2"), encode("b1")]
    run = gpt2("tokenize", "--decode", joined)
    assert run.stdout.decode() == f"a1\n{EOT_TEXT}\na2\n{EOT_TEXT}\nb1"


# ------------------------------------------------------------------------------ bad input


def test_refuses_binary_to_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpt2
) -> None:
    class Terminal:
        buffer = None

        def isatty(self) -> bool:
            return True

    fake_sys = types.SimpleNamespace(stdout=Terminal(), stdin=None)
    with monkeypatch.context() as patch:
        patch.setattr(fileio, "sys", fake_sys)
        with pytest.raises(UsageError, match="refusing to write"):
            fileio.binary_stdout("a binary token stream")
        run = gpt2("tokenize", write(tmp_path / "a.txt", "text"))
    assert run.code == 2
    assert "refusing to write a binary token stream to a terminal" in run.stderr
    assert "--ids" in run.stderr


def test_invalid_utf8(tmp_path: Path, gpt2) -> None:
    path = write(tmp_path / "bad.txt", b"good line\nsecond \xff\xfe line\n")
    run = gpt2("tokenize", path)
    assert run.code == 1
    assert "invalid UTF-8 at byte 17 (line 2)" in run.stderr
    assert "--errors replace" in run.stderr
    assert stream_docs(run.stdout) == []  # no document was written
    run = gpt2("tokenize", "--errors", "replace", path)
    assert run.code == 0, run.stderr
    assert stream_docs(run.stdout) == [encode("good line\nsecond \ufffd\ufffd line\n")]


def test_bad_jsonl(tmp_path: Path, gpt2) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "ok"}\n{"text": "x"\n')
    run = gpt2("tokenize", path)
    assert run.code == 1 and "line 2: malformed JSON" in run.stderr
    path = write(tmp_path / "missing.jsonl", '{"text": "ok"}\n\n{"body": "x"}\n')
    run = gpt2("tokenize", path)
    assert run.code == 1 and "line 3: no field 'text'" in run.stderr and "--field" in run.stderr
    run = gpt2("tokenize", "--format", "jsonl", write(tmp_path / "n.jsonl", "[1, 2]\n"))
    assert run.code == 1 and "line 1" in run.stderr


def test_output_file_not_left_behind_on_error(tmp_path: Path, gpt2) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "ok"}\nnot json\n')
    out = tmp_path / "out.tok"
    assert gpt2("tokenize", path, "-o", out).code == 1
    assert not out.exists() and not list(tmp_path.glob(".out.tok*"))


def test_empty_input_is_zero_documents(tmp_path: Path, gpt2) -> None:
    run = gpt2("tokenize", write(tmp_path / "empty.txt", b""))
    assert run.code == 0
    assert "zero documents" in run.stderr
    assert run.stdout == token_stream.HEADER and stream_docs(run.stdout) == []


def test_usage_errors(tmp_path: Path, gpt2) -> None:
    path = write(tmp_path / "a.txt", "x")
    assert gpt2("tokenize", "--format", "xml", path).code == 2
    assert gpt2("tokenize", "--errors", "maybe", path).code == 2
    assert gpt2("tokenize", "--ids", "--decode", path).code == 2
    assert gpt2("tokenize", "--threads", "-1", path).code == 2


# ------------------------------------------------------------------------------ equivalence


def _stdlib_texts(limit_bytes: int = 600_000) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts, size = [], 0
    for path in sorted(root.glob("*.py")):
        text = path.read_text("utf-8", errors="replace")
        texts.append(text)
        size += len(text)
        if size > limit_bytes:
            break
    return texts


def test_ids_equal_encode_ordinary_with_threads(tmp_path: Path, gpt2) -> None:
    texts = _stdlib_texts() + ["", "x", f"{EOT_TEXT}{EOT_TEXT}", " \n \n\n  trailing   "]
    path = write(tmp_path / "c.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts))
    run = gpt2("tokenize", "--threads", "2", path)
    assert run.code == 0, run.stderr
    expected = get_encoding().encode_ordinary_batch(texts)
    assert stream_docs(run.stdout) == expected


def test_pieces_of_a_huge_document_give_the_ids_of_the_whole(tmp_path: Path) -> None:
    tricky = "".join(
        [
            "def f():\n    return 1\n\n\n  \n",
            "x = '日本語'\r\n",
            "\n\n\n\tindent\n",
            "   \n" * 5,
            "word\n" * 50,
            "\n \n \n",
            "a\n\n\nb",
            "\u3000\n\u00a0x\n",
            "1234567\n",
            "'s 're\n",
        ]
    )
    text = "".join(_stdlib_texts(150_000)) + tricky * 40
    path = write(tmp_path / "huge.txt", text)
    pieces = list(readers.iter_pieces([str(path)], ReadOptions(format="file"), piece_chars=257))
    assert len(pieces) > 50 and pieces[-1].last and not any(p.last for p in pieces[:-1])
    assert "".join(p.text for p in pieces) == text
    batches = list(encode_pieces(iter(pieces), threads=2, batch_chars=1000))
    ids = [i for batch in batches for piece_ids in batch.ids for i in piece_ids]
    assert ids == get_encoding().encode_ordinary(text)


def test_piece_cuts_fuzz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    alphabet = [
        "\n",
        " ",
        "a",
        "Bc",
        "1",
        "'",
        "s",
        "\r",
        "\t",
        "\u3000",
        "é",
        "!",
        "\n\n",
        "\u00a0",
        "ll",
        "  ",
        "x\n",
    ]
    encoding = get_encoding()
    for number in range(60):
        text = "".join(rng.choice(alphabet, size=400))
        path = write(tmp_path / f"f{number}.txt", text)
        pieces = list(readers.iter_pieces([str(path)], ReadOptions(format="file"), piece_chars=8))
        assert "".join(p.text for p in pieces) == text
        ids = [i for p in pieces for i in encoding.encode_ordinary(p.text)]
        assert ids == encoding.encode_ordinary(text), repr(text)
