"""`gpt2 overlap`: normalisation, stable hashing, the filter file, build/merge/check, bad input."""

from __future__ import annotations

import json
import random
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from gpt2cli import splitmix
from gpt2cli.errors import UsageError
from gpt2cli.overlap import filter_file, hashing, sizing
from gpt2cli.overlap.build import build_filter
from gpt2cli.overlap.ngrams import NgramBatcher
from gpt2cli.overlap.normalise import normalise, normalised_bytes, words
from gpt2cli.text.read_options import ReadOptions
from gpt2cli.text.readers import Piece, iter_pieces

# ------------------------------------------------------------------------------------------------
# helpers


def assert_one_line_error(code: int, stderr: str, expected_code: int, pattern: str) -> None:
    assert code == expected_code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert re.match(r"gpt2 overlap( [a-z]+)?: error: ", lines[0]), stderr
    assert re.search(pattern, lines[0]), stderr
    assert "Traceback" not in stderr


VOCAB_RNG = random.Random(7)
VOCAB = [
    "".join(VOCAB_RNG.choice("abcdefghij") for _ in range(VOCAB_RNG.randint(2, 6)))
    for _ in range(2000)
]


def random_text(rng: random.Random, words: int) -> str:
    punctuation = [" ", " ", " ", ", ", ". ", "\n", " -- ", "'s "]
    parts = []
    for _ in range(words):
        word = rng.choice(VOCAB)
        parts.append(word.upper() if rng.random() < 0.1 else word)
        parts.append(rng.choice(punctuation))
    return "".join(parts)


def write_jsonl(path: Path, texts: list[str], **extra) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"text": text, "id": i, **extra}) + "\n")
    return path


def exact_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    w = words(text)
    return [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, gpt2) -> dict:
    base = tmp_path_factory.mktemp("overlap")
    rng = random.Random(1)
    train = [random_text(rng, rng.randint(20, 300)) for _ in range(200)]
    tests = []
    for i in range(30):
        if i % 3 == 0:  # contaminated: a slice of a training document plus new text
            source = words(train[i])
            tests.append(" ".join(source[5:40]) + " " + random_text(rng, 40))
        else:
            tests.append(random_text(rng, rng.randint(10, 80)))
    tests.append("only five words here now")  # fewer than 8 words: zero n-grams
    train_path = write_jsonl(base / "train.jsonl", train)
    test_path = write_jsonl(base / "test.jsonl", tests)
    filter_path = base / "train.bloom"
    code, _, err = gpt2("overlap", "build", "-o", str(filter_path), str(train_path))
    assert code == 0, err
    return {
        "base": base,
        "train": train,
        "tests": tests,
        "train_path": train_path,
        "test_path": test_path,
        "filter": filter_path,
    }


@pytest.fixture
def check(corpus, gpt2):
    """``gpt2 overlap check -F <the corpus filter> ARGS...``."""
    return lambda *args, **kwargs: gpt2(
        "overlap", "check", "-F", str(corpus["filter"]), *args, **kwargs
    )


# ------------------------------------------------------------------------------------------------
# normalisation


def test_normalisation_rule() -> None:
    assert words("Hello, World! It's 3pm_now -- OK?") == [
        "hello",
        "world",
        "it",
        "s",
        "3pm",
        "now",
        "ok",
    ]
    text = "  Café   ÜBER\tnaïve, ΣΟΦΙΑ 東京2020 "
    assert normalise(text) == "café über naïve σοφια 東京2020"
    assert normalise("...!!!") == ""
    assert normalise("a\u0301b") == "a b"  # a combining mark is not alphanumeric


def test_word_pattern_is_exactly_str_isalnum() -> None:
    word = re.compile(r"[^\W_]")
    mismatches = [
        c
        for c in range(0x110000)
        if 0xD800 > c or c > 0xDFFF
        if chr(c).isalnum() != bool(word.match(chr(c)))
    ]
    assert mismatches == []


def test_fast_ascii_path_gives_the_same_words() -> None:
    rng = random.Random(3)
    for _ in range(200):
        text = "".join(chr(rng.randint(0, 127)) for _ in range(rng.randint(0, 80)))
        assert normalised_bytes(text).split() == [w.encode() for w in words(text)]
    text = "İstanbul Kelvin\u212a ǅemal STRASSE straße"
    assert normalised_bytes(text).decode().split() == words(text)


def test_fast_mixed_path_gives_the_same_words() -> None:
    """Only tokens with non-ASCII characters take the slow path; the words do not change."""
    rng = random.Random(4)
    alphabet = [
        *"aAbBzZ09 _.,'\n\t-\v\f\r",
        "Σ",
        "σ",
        "ς",
        "İ",
        "é",
        "e\u0301",
        "“",
        "”",
        "\u00a0",
        "\u2028",
        "\u0085",
        "東",
        "\u212a",
        "ǅ",
        "ß",
        "ﬁ",
        "Ⅻ",
        "²",
        "\u200d",
        "ʼ",
        "·",
        "\u0345",
    ]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert normalised_bytes(text).decode().split() == words(text), repr(text)
    assert normalise("ΟΔΟΣ. AΣ Σ") == "οδος aς σ"  # final sigma needs its context


# ------------------------------------------------------------------------------------------------
# hashing


def test_hashes_are_pinned() -> None:
    """The same words give the same 64-bit hashes on every machine and every run (version 1)."""
    hashes = hashing.text_ngram_hashes("The quick brown fox jumps over the lazy dog, twice!", 3)
    assert hashes.dtype == np.uint64 and hashes.size == 8
    assert [int(h) for h in hashes[:3]] == PINNED


PINNED = [9838607531243968864, 18237331173884240253, 11846261781842174112]


def test_word_hashes_long_words_and_positions() -> None:
    text = "abcdefgh abcdefghi abcdefghX abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyy x"
    data = np.frombuffer(normalised_bytes(text + " " + text), dtype=np.uint8)
    hashes, starts = hashing.word_hashes(data)
    assert hashes.size == 12
    assert len(set(hashes[:6].tolist())) == 6  # differ past 8 bytes, by length, by last byte
    assert hashes[:6].tolist() == hashes[6:].tolist()  # same word, same hash, anywhere
    assert starts.tolist()[:2] == [0, 9]


def test_ngram_hashes_of_batches_equal_per_document_hashes() -> None:
    """Pieces, batch boundaries and document boundaries do not change the n-grams."""
    rng = random.Random(5)
    documents = [random_text(rng, rng.randint(0, 60)) for _ in range(40)]
    for i in range(0, 40, 5):  # some batches take the non-ASCII path
        documents[i] += "\nCafé “İstanbul” ΟΔΟΣ, naïve\n" + random_text(rng, 10)
    expected: list[int] = []
    for text in documents:
        expected.extend(hashing.text_ngram_hashes(text, 4).tolist())
    pieces = []
    for line, text in enumerate(documents):
        cut = [i + 1 for i, c in enumerate(text) if c == "\n"]  # cut after newlines
        bounds = [0, *[c for c in cut if rng.random() < 0.5], len(text)]
        bounds = sorted(set(bounds))
        parts = [text[a:b] for a, b in zip(bounds, bounds[1:])] or [""]
        for j, part in enumerate(parts):
            pieces.append(Piece(part, j == len(parts) - 1, "x", line + 1))
    for batch_chars in (1, 50, 1000, 1 << 20):
        batcher = NgramBatcher(4, batch_chars=batch_chars)
        got: list[int] = []
        per_doc: dict[int, int] = {}
        for batch in batcher.batches(pieces):
            got.extend(batch.hashes.tolist())
            for d in batch.doc.tolist():
                per_doc[batch.docs[d].index] = per_doc.get(batch.docs[d].index, 0) + 1
        assert got == expected, batch_chars
        assert batcher.documents == len(documents)
        for index, text in enumerate(documents):
            assert per_doc.get(index, 0) == max(0, len(words(text)) - 3)


# ------------------------------------------------------------------------------------------------
# sizing and the file


def test_optimal_shape() -> None:
    m, k = sizing.optimal_shape(1_000_000, 1e-8)
    assert k == 18 and m % (64 * k) == 0
    classic = 1_000_000 * 38.34  # -n ln p / (ln 2)^2 bits of an unblocked filter
    assert 1.25 * classic < m < 1.35 * classic
    # the least number of blocks that keeps the bound
    assert sizing.fp_rate_from_items(1_000_000, m, k) <= 1e-8
    assert sizing.fp_rate_from_items(1_000_000, m - 64 * k, k) > 1e-8
    assert sizing.optimal_shape(100, 0.01) == (1280, 5)
    with pytest.raises(UsageError):
        sizing.optimal_shape(100, 1.0)
    with pytest.raises(UsageError):
        sizing.optimal_shape(100, 1e-8, hashes=65)
    # fewer bits per n-gram: a larger filter that keeps the bound
    m14, k14 = sizing.optimal_shape(1_000_000, 1e-8, hashes=14)
    assert k14 == 14 and m14 > m
    assert sizing.fp_rate_from_items(1_000_000, m14, k14) <= 1e-8


def test_false_positive_formula_matches_a_simulated_filter() -> None:
    """fp_rate_at_load against random items in blocks of k words, one random bit per word."""
    rng = np.random.default_rng(0)
    k, blocks, items = 4, 2000, 30_000
    words = np.zeros((blocks, k), dtype=np.uint64)
    block = rng.integers(0, blocks, items)
    bit = rng.integers(0, 64, (items, k)).astype(np.uint64)
    np.bitwise_or.at(words, block, np.left_shift(np.uint64(1), bit))
    probes = 1_000_000  # ~2,500 false positives: 4 standard deviations are 8%
    block = rng.integers(0, blocks, probes)
    mask = np.left_shift(np.uint64(1), rng.integers(0, 64, (probes, k)).astype(np.uint64))
    measured = np.mean(((words[block] & mask) == mask).all(axis=1))
    _, from_bits = filter_file.bit_statistics(words.reshape(-1), k)
    assert abs(measured - from_bits) < 0.08 * from_bits
    assert abs(sizing.fp_rate_at_load(items / blocks, k) - from_bits) < 0.08 * from_bits


def test_header_layout(corpus) -> None:
    data = corpus["filter"].read_bytes()
    assert data[:8] == b"G2BLOOM\x1a"
    version, norm, n, k, m, capacity, items, bits_set = struct.unpack_from("<IIIIQQQQ", data, 8)
    assert (version, norm, n) == (3, 1, 8)
    assert 0 < struct.unpack_from("<d", data, 68)[0] < 1e-8  # false-positive rate at this fill
    region, table_crc = struct.unpack_from("<II", data, 76)
    regions = -(-m // 8 // region)
    assert len(data) == filter_file.DATA_OFFSET + m // 8 + 4 * regions
    table = data[filter_file.DATA_OFFSET + m // 8 :]
    assert zlib.crc32(table) == table_crc
    bits = data[filter_file.DATA_OFFSET : filter_file.DATA_OFFSET + m // 8]
    assert struct.unpack_from(f"<{regions}I", table) == tuple(
        zlib.crc32(bits[start : start + region]) for start in range(0, len(bits), region)
    )
    words = np.frombuffer(bits, dtype="<u8")
    assert bits_set == int(np.bitwise_count(words).sum())
    expected_items = sum(len(exact_ngrams(t, 8)) for t in corpus["train"])
    assert items == expected_items
    assert capacity >= expected_items * 0.98  # the HyperLogLog count (+5%) of distinct 8-grams


def test_memory_and_file_mapped_builds_are_identical(tmp_path, corpus) -> None:
    def pieces():
        return iter_pieces([str(corpus["train_path"])], ReadOptions(delimiter=""))

    a = build_filter(pieces, tmp_path / "a.bloom", 8, 1e-6, 50_000, in_memory=True)
    b = build_filter(pieces, tmp_path / "b.bloom", 8, 1e-6, 50_000, in_memory=False)
    assert a.header == b.header
    assert (tmp_path / "a.bloom").read_bytes() == (tmp_path / "b.bloom").read_bytes()


def test_byte_identical_across_runs_and_hash_seeds(tmp_path, corpus) -> None:
    script = (
        "import sys; from pathlib import Path; from gpt2cli.overlap.build import build_filter; "
        "from gpt2cli.text.readers import iter_pieces; "
        "from gpt2cli.text.read_options import ReadOptions; "
        "build_filter(lambda: iter_pieces([sys.argv[1]], ReadOptions(delimiter='')), "
        "Path(sys.argv[2]), 8, 1e-8, None)"
    )
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"run{seed}.bloom"
        subprocess.run(
            [sys.executable, "-c", script, str(corpus["train_path"]), str(out)],
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == corpus["filter"].read_bytes()


# ------------------------------------------------------------------------------------------------
# check


def test_check_equals_exact_set_computation(corpus, check) -> None:
    code, out, err = check(
        "--per-doc",
        "--jsonl",
        str(corpus["test_path"]),
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    train = set()
    for text in corpus["train"]:
        train.update(exact_ngrams(text, 8))
    assert len(records) == len(corpus["tests"])
    contaminated = 0
    for record, text in zip(records, corpus["tests"]):
        grams = exact_ngrams(text, 8)
        exact = sum(g in train for g in grams)
        assert record["ngrams"] == len(grams)
        # a Bloom filter never misses; at 1e-8 there is (almost surely) no false positive either
        assert record["found"] == exact, record
        contaminated += exact > 0
        assert record["estimated_fp_rate"] < 1e-8
    assert contaminated == 10
    short = records[-1]
    assert short["ngrams"] == 0 and short["found"] == 0 and short["percent"] is None
    assert "8-gram overlap" in err and "estimated false-positive rate" in err


def test_check_per_input_table_and_json(corpus, check) -> None:
    code, out, err = check(
        "--json",
        str(corpus["test_path"]),
        str(corpus["train_path"]),
    )
    assert code == 0, err
    report = json.loads(out)
    inputs = {r["source"]: r for r in report["inputs"]}
    train = inputs[str(corpus["train_path"])]
    assert train["found"] == train["ngrams"] and train["percent"] == 100.0
    test = inputs[str(corpus["test_path"])]
    assert 0 < test["percent"] < 100 and test["documents"] == len(corpus["tests"])
    assert report["total"]["ngrams"] == train["ngrams"] + test["ngrams"]
    assert report["filter"]["n"] == 8 and 0 < report["filter"]["fill"] < 0.6
    assert report["filter"]["estimated_fp_rate"] <= 1e-8
    assert "overlap" in err and "%" in err


@pytest.mark.parametrize("hashes", [None, "3"])
def test_measured_false_positive_rate_is_within_the_bound(tmp_path, corpus, hashes, gpt2) -> None:
    distinct = len({g for t in corpus["train"] for g in exact_ngrams(t, 8)})
    small = tmp_path / "small.bloom"
    extra = ["--hashes", hashes] if hashes else []
    code, _, err = gpt2(
        "overlap",
        "build",
        "-o",
        str(small),
        "--fp-rate",
        "0.02",
        *extra,
        "--capacity",
        str(distinct),
        str(corpus["train_path"]),
    )
    assert code == 0, err
    code, out, err = gpt2("overlap", "check", "-F", str(small), "--probe", "20000", "--json")
    assert code == 0, err
    probe = json.loads(out)["probe"]
    assert probe["probes"] == 20000
    # binomial: 20000 * 0.02 = 400 expected at most; allow 4 standard deviations
    assert 0 < probe["false_positives"] <= 400 + 4 * (400**0.5)
    assert abs(probe["measured_fp_rate"] - probe["estimated_fp_rate"]) < 0.01
    assert "measured false-positive rate" in err


def test_exclude_overlapping_writes_clean_documents(tmp_path, corpus, check) -> None:
    kept_path = tmp_path / "clean.jsonl"
    code, out, err = check(
        "--exclude-overlapping",
        "-o",
        str(kept_path),
        str(corpus["test_path"]),
    )
    assert code == 0, err
    kept = [json.loads(line) for line in kept_path.read_text().splitlines()]
    short = len(corpus["tests"]) - 1  # no n-grams: kept
    assert [r["id"] for r in kept] == [i for i in range(short + 1) if i % 3 or i == short]
    assert "kept 21 documents" in err
    # to stdout, text format, with a looser threshold that keeps everything
    text_input = ("\n<|endoftext|>\n".join(corpus["tests"][:4])).encode()
    code, out, err = check(
        "--exclude-overlapping",
        "--max-overlap",
        "100",
        "-",
        stdin=text_input,
    )
    assert code == 0, err
    assert out == text_input


def test_merge_equals_build_from_the_union(tmp_path, corpus, gpt2) -> None:
    train = corpus["train"]
    part_a = write_jsonl(tmp_path / "a.jsonl", train[:120])
    part_b = write_jsonl(tmp_path / "b.jsonl", train[120:])
    union = tmp_path / "union.jsonl"
    union.write_bytes(part_a.read_bytes() + part_b.read_bytes())
    options = ["--capacity", "60000", "--fp-rate", "1e-6"]
    for name, source in (("a", part_a), ("b", part_b), ("u", union)):
        code, _, err = gpt2(
            "overlap", "build", *options, "-o", str(tmp_path / f"{name}.bloom"), str(source)
        )
        assert code == 0, err
    code, out, err = gpt2(
        "overlap",
        "merge",
        "--json",
        "-o",
        str(tmp_path / "m.bloom"),
        str(tmp_path / "a.bloom"),
        str(tmp_path / "b.bloom"),
    )
    assert code == 0, err
    assert json.loads(out)["items_added"] == sum(len(exact_ngrams(t, 8)) for t in train)
    assert (tmp_path / "m.bloom").read_bytes() == (tmp_path / "u.bloom").read_bytes()


# ------------------------------------------------------------------------------------------------
# bad input


def test_truncated_and_other_version_filters(tmp_path, corpus, gpt2) -> None:
    data = corpus["filter"].read_bytes()
    truncated = tmp_path / "truncated.bloom"
    truncated.write_bytes(data[:-100])
    code, _, err = gpt2("overlap", "check", "-F", str(truncated), str(corpus["test_path"]))
    assert_one_line_error(code, err, 1, "truncated filter file")
    short = tmp_path / "short.bloom"
    short.write_bytes(data[:50])
    code, _, err = gpt2("overlap", "check", "-F", str(short), str(corpus["test_path"]))
    assert_one_line_error(code, err, 1, "truncated")
    other = tmp_path / "v1.bloom"
    other.write_bytes(data[:8] + struct.pack("<I", 1) + data[12:])  # the unblocked format
    code, _, err = gpt2("overlap", "check", "-F", str(other), str(corpus["test_path"]))
    assert_one_line_error(code, err, 1, "format version 1")
    corrupt = tmp_path / "corrupt.bloom"
    corrupt.write_bytes(data[:40] + b"\xff" + data[41:])
    code, _, err = gpt2("overlap", "check", "-F", str(corrupt), str(corpus["test_path"]))
    assert_one_line_error(code, err, 1, "checksum")
    code, _, err = gpt2("overlap", "check", "-F", str(corpus["test_path"]), "-")
    assert_one_line_error(code, err, 1, "not a gpt2 overlap filter")
    code, _, err = gpt2("overlap", "check", "-F", str(tmp_path / "missing.bloom"), "-")
    assert_one_line_error(code, err, 1, "no such filter file")


def test_merging_different_shapes_is_refused(tmp_path, corpus, gpt2) -> None:
    other = tmp_path / "n5.bloom"
    code, _, err = gpt2("overlap", "build", "--n", "5", "-o", str(other), str(corpus["train_path"]))
    assert code == 0, err
    out = tmp_path / "merged.bloom"
    code, _, err = gpt2("overlap", "merge", "-o", str(out), str(corpus["filter"]), str(other))
    assert_one_line_error(code, err, 1, "differ in shape")
    assert not out.exists()


def test_empty_input(tmp_path, gpt2, check) -> None:
    out = tmp_path / "empty.bloom"
    code, _, err = gpt2("overlap", "build", "-o", str(out), "-", stdin=b"")
    assert_one_line_error(code, err, 1, "empty input")
    assert not out.exists() and not list(tmp_path.iterdir())  # no spool file left behind
    code, _, err = gpt2("overlap", "build", "-o", str(out), "-", stdin=b'{"text": "too short"}\n')
    assert_one_line_error(code, err, 1, "no 8-grams")
    code, _, err = gpt2("overlap", "build", "--capacity", "1000", "-o", str(out), "-", stdin=b"")
    assert code == 0, err
    assert filter_file.BloomFilter.open(out).header.bits_set == 0
    code, out_bytes, err = check("--jsonl", "-", stdin=b"")
    assert code == 0 and "empty input" in err
    assert json.loads(out_bytes)["ngrams"] == 0 and json.loads(out_bytes)["percent"] is None


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "nan"])
def test_fp_rate_outside_zero_one(tmp_path, corpus, value, gpt2) -> None:
    code, _, err = gpt2(
        "overlap",
        "build",
        "--fp-rate",
        value,
        "-o",
        str(tmp_path / "x.bloom"),
        str(corpus["train_path"]),
    )
    assert_one_line_error(code, err, 2, "--fp-rate must be between 0 and 1")


def test_other_bad_options(tmp_path, gpt2, check) -> None:
    out = str(tmp_path / "x.bloom")
    code, _, err = gpt2("overlap", "build", "--capacity", "lots", "-o", out, "-")
    assert_one_line_error(code, err, 2, "--capacity")
    code, _, err = gpt2("overlap", "build", "--capacity", "0", "-o", out, "-")
    assert_one_line_error(code, err, 2, "--capacity")
    code, _, err = gpt2("overlap", "build", "--n", "0", "-o", out, "-")
    assert_one_line_error(code, err, 2, "--n must be at least 1")
    code, _, err = check("--probe", "0")
    assert_one_line_error(code, err, 2, "--probe")
    code, _, err = check(
        "--max-overlap",
        "101",
        "--exclude-overlapping",
        "-",
    )
    assert_one_line_error(code, err, 2, "--max-overlap")


def test_stdin_build_is_spooled_and_equals_the_file_build(tmp_path, corpus, gpt2) -> None:
    out = tmp_path / "stdin.bloom"
    code, _, err = gpt2("overlap", "build", "-o", str(out), stdin=corpus["train_path"].read_bytes())
    assert code == 0, err
    assert "counting pass" in err
    assert out.read_bytes() == corpus["filter"].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdin.bloom"]  # spool removed


def test_over_capacity_is_warned(tmp_path, corpus, gpt2) -> None:
    out = tmp_path / "tiny.bloom"
    code, _, err = gpt2(
        "overlap", "build", "--capacity", "100", "-o", str(out), str(corpus["train_path"])
    )
    assert code == 0
    assert "gpt2 overlap build: warning: the filter is over capacity" in err
    code, _, err = gpt2("overlap", "check", "-F", str(out), str(corpus["test_path"]))
    assert code == 0 and "over capacity" in err


def test_bit_positions_follow_the_documented_formula(corpus) -> None:
    """Block b = g mod B; in its word j the bit (h_(j div 8) >> 8 (j mod 8)) mod 64,
    h_i = mix(g + (i + 1) GOLDEN)."""
    bloom_filter = filter_file.BloomFilter.open(corpus["filter"])
    m, k = bloom_filter.header.m, bloom_filter.header.k
    hashes = hashing.text_ngram_hashes(corpus["train"][0], 8)[:20]
    positions = bloom_filter.positions(hashes)
    golden = splitmix.GOLDEN
    for g, row in zip(hashes.tolist(), positions.tolist()):
        b = g % (m // (64 * k))
        h = [splitmix.mix(g + (i + 1) * golden) for i in range(8)]
        assert row == [(b * k + j) * 64 + (h[j // 8] >> (8 * (j % 8))) % 64 for j in range(k)]
        words = np.asarray(bloom_filter.words)
        assert all(int(words[p // 64]) >> (p % 64) & 1 for p in row)  # all set: it was added
