"""gpt2 corpus filter and dedup: rules, MinHash against exact Jaccard, staged = one process."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gpt2cli.corpus import dedup, minhash
from gpt2cli.corpus.jsonl import Record
from gpt2cli.text.tokenizer import encode

PROSE = (
    "The river runs past the old mill and into the valley, where the farmers have worked "
    "the land for many generations. In the spring the water rises with the melting snow, "
    "and the children of the village walk to the bridge to watch it. The mill has been "
    "closed for years, but the people who live there still tell stories of the miller and "
    "his family, of the long winters and of the summer that the river ran dry. Nobody "
    "remembers exactly when the last sack of flour was carried out of the door."
)
GERMAN = (
    "Der Fluss fließt an der alten Mühle vorbei und in das Tal, wo die Bauern seit vielen "
    "Generationen das Land bearbeiten. Im Frühling steigt das Wasser mit dem schmelzenden "
    "Schnee, und die Kinder des Dorfes gehen zur Brücke, um es zu beobachten."
)


def gpt2_process(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpt2cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=dict(os.environ, NO_COLOR="1", HF_HUB_OFFLINE="1"),
    )


def jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def texts_of(output: bytes) -> list[str]:
    return [json.loads(line)["text"] for line in output.splitlines()]


# ---------------------------------------------------------------------------------------------
# filter


WRAPPED = "\n".join(textwrap.wrap(PROSE, 50))
FAILING = {
    "symbol-ratio": PROSE + " #river" * 15,
    "bullet-lines": "\n".join(f"• the {w} of the list with the words" for w in PROSE.split()[:20]),
    "ellipsis-lines": "\n".join(
        f"and then the story of the {w} went on and on with the river running..."
        for w in PROSE.split()[:10]
    ),
    "min-word-length": "a an to of be I it is as at " * 10 + "the and that with have",
    "max-word-length": "the and that with have " + "extraordinarily compositional words " * 40,
    "alpha-words": PROSE + " 1234 5678 9012 3456" * 8,
    "stop-words": "River mill valley farmers worked land generations spring water rises " * 5,
    "repeated-lines": "\n".join(["the line that comes back again and again with the"] * 6)
    + "\n"
    + PROSE,
    "repeated-paragraphs": "\n\n".join(
        ["The mill and the river."] * 3 + [WRAPPED, WRAPPED.upper()]
    ),
    "lorem-ipsum": PROSE + " Lorem ipsum dolor sit amet.",
}


def test_prose_passes_every_default_rule(gpt2) -> None:
    result = gpt2("corpus", "filter", stdin=jsonl([{"text": PROSE}]))
    assert result.code == 0 and texts_of(result.stdout) == [PROSE]


@pytest.mark.parametrize("rule", sorted(FAILING))
def test_each_quality_rule_drops_its_document_and_can_be_switched_off(
    gpt2, rule: str, tmp_path: Path
) -> None:
    rejected = tmp_path / "rejected.jsonl"
    stdin = jsonl([{"text": PROSE, "id": 1}, {"text": FAILING[rule], "id": 2}])
    result = gpt2("corpus", "filter", "--rejected", str(rejected), stdin=stdin)
    assert result.code == 0
    assert texts_of(result.stdout) == [PROSE]
    (dropped,) = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert dropped["rejected_by"] == rule and dropped["id"] == 2
    assert f"{rule.replace('-', '_')} 1" in result.stderr
    off = gpt2("corpus", "filter", "--disable", rule, stdin=stdin)
    assert texts_of(off.stdout) == [PROSE, FAILING[rule]]  # it fails that rule only


def test_thresholds_and_rules_off_by_default(gpt2) -> None:
    code = PROSE + " def f(x): return {x: 1}"
    stdin = jsonl([{"text": code}])
    assert texts_of(gpt2("corpus", "filter", stdin=stdin).stdout) == [code]
    assert texts_of(gpt2("corpus", "filter", "--enable", "curly-brace", stdin=stdin).stdout) == []
    source = "\n".join(
        ["def mill(river):", *[f"    the_{w} = river.mill(the, {w}) and that" for w in "abcdef"]]
    )
    stdin = jsonl([{"text": PROSE}, {"text": source}])
    assert len(texts_of(gpt2("corpus", "filter", stdin=stdin).stdout)) == 2
    indented = gpt2("corpus", "filter", "--enable", "indented-lines", stdin=stdin)
    assert texts_of(indented.stdout) == [PROSE] and "indented_lines 1" in indented.stderr
    hashes = jsonl([{"text": PROSE + " #" * 5}])  # 5 hashes in 90 words: ratio 0.06
    assert len(texts_of(gpt2("corpus", "filter", stdin=hashes).stdout)) == 1
    strict = gpt2("corpus", "filter", "--threshold", "symbol-ratio=0.01", stdin=hashes)
    assert texts_of(strict.stdout) == []
    bad = gpt2("corpus", "filter", "--threshold", "nonsense=1", stdin=hashes)
    assert bad.code == 2 and "--threshold" in bad.stderr
    listed = gpt2("corpus", "filter", "--list-rules")
    assert b"symbol-ratio" in listed.stdout and b"curly-brace" in listed.stdout


def test_domains_words_tokens_and_language(gpt2, tmp_path: Path) -> None:
    records = [
        {"text": PROSE, "url": "https://en.wikipedia.org/wiki/Mill"},
        {"text": PROSE + " one", "url": "https://notwikipedia.org/mill"},
        {"text": GERMAN, "url": "https://example.de/"},
        {"text": "The mill is old and the river is long, with the bridge.", "url": "http://x.org"},
    ]
    stdin = jsonl(records)
    domains = tmp_path / "domains.txt"
    domains.write_text("# excluded\nwikipedia.org\n")
    kept = gpt2("corpus", "filter", "--exclude-domain-file", domains, "--lang", "en", stdin=stdin)
    assert texts_of(kept.stdout) == [PROSE + " one", records[3]["text"]]
    assert "domain 1" in kept.stderr and "lang 1" in kept.stderr
    words = gpt2("corpus", "filter", "--no-quality", "--min-words", "50", stdin=stdin)
    assert texts_of(words.stdout) == [PROSE, PROSE + " one"]
    limit = len(encode(PROSE)) + 1  # PROSE is one token short, PROSE + " one" is not
    tokens = gpt2("corpus", "filter", "--no-quality", "--min-tokens", str(limit), stdin=stdin)
    assert texts_of(tokens.stdout) == [PROSE + " one"]
    assert "min_tokens 3" in tokens.stderr


def test_bad_records_are_counted_or_stop_the_run(gpt2, tmp_path: Path) -> None:
    stdin = jsonl([{"text": PROSE}]) + b"not json\n" + b'{"no_text": 1}\n' + b"[1]\n"
    result = gpt2("corpus", "filter", "--stats", str(tmp_path / "s.json"), stdin=stdin)
    assert result.code == 0 and texts_of(result.stdout) == [PROSE]
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["documents_in"] == 4 and stats["documents_out"] == 1
    assert stats["bad_records"] == 3
    assert stats["dropped"] == {"malformed_json": 2, "no_text": 1}
    assert "line 2: malformed JSON" in result.stderr
    strict = gpt2_process("corpus", "filter", "--strict", stdin=stdin)
    assert strict.returncode == 1
    errors = strict.stderr.decode()
    assert errors.strip().splitlines()[-1].startswith("gpt2 corpus filter: error: ")
    assert "Traceback" not in errors


# ---------------------------------------------------------------------------------------------
# MinHash


def test_batch_hashing_equals_the_reference_definition() -> None:
    texts = [
        "Hello, World! This is—a “test” of the word splitter… with punctuation.",
        "short one",
        "",
        "Ünïcödé  text\u00a0with nbsp, 東京 タワー。東京 and emoji 🙂 too",
        "a b c d e f g " * 3,
        "Kelvin \u212a İstanbul",
        "  \n\t ...  ",
    ]
    hashes, owner = minhash.shingle_hashes(texts, 5)
    for index, text in enumerate(texts):
        expected = {minhash.shingle_hash(s) for s in minhash.shingles(text, 5)}
        assert {int(h) for h in hashes[owner == index]} == expected, text
    assert minhash.words(texts[3])[:4] == ["ünïcödé", "text", "with", "nbsp"]


def test_bands_follow_the_threshold_as_datasketch_chooses_them() -> None:
    assert minhash.band_parameters(0.5, 128) == (25, 5)
    assert minhash.band_parameters(0.8, 128) == (9, 13)


def test_signature_agreement_estimates_jaccard() -> None:
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(3000)]
    base = [rng.choice(vocab) for _ in range(600)]
    errors = []
    for keep in (0.9, 0.7, 0.5, 0.3):
        other = [w if rng.random() < keep else rng.choice(vocab) for w in base]
        a, b = " ".join(base), " ".join(other)
        sa, sb = minhash.shingles(a, 5), minhash.shingles(b, 5)
        jaccard = len(sa & sb) / len(sa | sb)
        signature = minhash.signatures(minhash.batch_words([a, b]), 5, 256)
        errors.append(abs((signature[0] == signature[1]).mean() - jaccard))
    assert max(errors) < 0.08  # ~3 standard deviations at 256 bins


def planted_corpus(seed: int = 0) -> list[str]:
    """Families: a base document, exact copies (case and spacing changed) and edited copies
    (a share of words replaced) at a range of similarities; the order is shuffled."""
    rng = random.Random(seed)
    vocab = [f"{rng.choice('bcdfg')}{rng.choice('aeiou')}{i}" for i in range(20000)]
    documents = []
    for _ in range(40):
        base = [rng.choice(vocab) for _ in range(rng.randint(80, 300))]
        documents.append(" ".join(base))
        if rng.random() < 0.5:
            documents.append("  ".join(base).upper())
        for _ in range(rng.randint(0, 3)):
            rate = rng.choice([0.01, 0.03, 0.06, 0.1, 0.2, 0.35])
            documents.append(
                " ".join(rng.choice(vocab) if rng.random() < rate else w for w in base)
            )
    rng.shuffle(documents)
    return documents


def exact_pairs(documents: list[str], ngram: int) -> dict[tuple[int, int], float]:
    sets = [minhash.shingles(text, ngram) for text in documents]
    return {
        (i, j): len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        for i, j in itertools.combinations(range(len(documents)), 2)
        if sets[i] & sets[j]
    }


def test_near_dedup_catches_the_pairs_exact_jaccard_finds() -> None:
    documents = planted_corpus()
    records = [Record(b"", {"text": t}, t, "x", n) for n, t in enumerate(documents)]
    params = dedup.DedupParams.make(0.5, 5, 128, "first", "karma")
    part = dedup.signatures(records, params)
    representative, reason = dedup.resolve_parts([part], [dedup.bucket_edges([part])], "first")
    pairs = exact_pairs(documents, 5)
    above = [(i, j) for (i, j), jaccard in pairs.items() if jaccard >= 0.5]
    caught = [representative[i] == representative[j] for i, j in above]
    strong = [representative[i] == representative[j] for (i, j), s in pairs.items() if s >= 0.75]
    assert len(above) > 40 and np.mean(caught) >= 0.9 and all(strong)
    # pairs far below the threshold with no similar document between them stay apart
    far = [(i, j) for (i, j), jaccard in pairs.items() if jaccard < 0.15]
    linked = [
        (i, j)
        for i, j in far
        if representative[i] == representative[j]
        and not any(pairs.get((min(i, k), max(i, k)), 0) >= 0.3 for k in range(len(documents)))
    ]
    assert far and not linked
    # unrelated documents (no shared shingle) are never merged
    families = {representative[i] for i in range(len(documents))}
    assert len(families) >= 40
    # every removed document is explained: exact copies as exact, edits as near
    for index in np.flatnonzero(reason != dedup.KEPT):
        kept = representative[index]
        same = minhash.words(documents[index]) == minhash.words(documents[kept])
        assert (reason[index] == dedup.EXACT) == same


# ---------------------------------------------------------------------------------------------
# the dedup CLI, one process and staged


def test_dedup_cli_keeps_first_or_highest_karma(gpt2, tmp_path: Path) -> None:
    records = [
        {"text": PROSE, "karma": 3, "url": "a"},
        {"text": PROSE.upper().replace(" ", "  "), "karma": 9, "url": "b"},
        {"text": PROSE.replace("mill", "barn", 1), "karma": 5, "url": "c"},
        {"text": GERMAN, "url": "d"},
    ]
    stdin = jsonl(records)
    report = tmp_path / "clusters.jsonl"
    first = gpt2("corpus", "dedup", "--clusters", str(report), stdin=stdin)
    assert [json.loads(line)["url"] for line in first.stdout.splitlines()] == ["a", "d"]
    removed = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["document"], r["kept"], r["reason"]) for r in removed] == [
        (1, 0, "exact"),
        (2, 0, "near"),
    ]
    karma = gpt2("corpus", "dedup", "--keep", "karma", stdin=stdin)
    assert [json.loads(line)["url"] for line in karma.stdout.splitlines()] == ["b", "d"]
    exact = gpt2("corpus", "dedup", "--exact-only", stdin=stdin)
    assert [json.loads(line)["url"] for line in exact.stdout.splitlines()] == ["a", "c", "d"]
    assert "exact_duplicate 1" in exact.stderr
    assert gpt2("corpus", "dedup", "--near", "1.5", stdin=stdin).code == 2


@pytest.mark.parametrize("keep", ["first", "karma"])
def test_staged_dedup_in_parts_equals_one_process(gpt2, tmp_path: Path, keep: str) -> None:
    rng = random.Random(5)
    documents = planted_corpus(seed=1)
    records = [{"text": t, "karma": rng.randint(0, 20), "n": n} for n, t in enumerate(documents)]
    whole = tmp_path / "all.jsonl"
    whole.write_bytes(jsonl(records))
    one = gpt2_process(
        "corpus", "dedup", whole, "--keep", keep, "--clusters", tmp_path / "one.jsonl"
    )
    assert one.returncode == 0, one.stderr
    cuts = [0, 17, 18, 70, len(records)]  # parts of uneven size
    parts, signatures = [], []
    for index, (start, stop) in enumerate(itertools.pairwise(cuts)):
        part = tmp_path / f"part-{index}.jsonl"
        part.write_bytes(jsonl(records[start:stop]))
        parts.append(part)
        signatures += ["-s", str(tmp_path / f"part-{index}.sig")]
        done = gpt2("corpus", "dedup-signatures", str(part), "-o", signatures[-1])
        assert done.code == 0, done.stderr
    edges = []
    for bucket in range(3):
        edges.append(tmp_path / f"bucket-{bucket}.edges")
        done = gpt2(
            "corpus",
            "dedup-buckets",
            *signatures,
            "--bucket",
            bucket,
            "--buckets",
            3,
            "-o",
            edges[-1],
        )
        assert done.code == 0, done.stderr
    clusters = tmp_path / "clusters.ddp"
    done = gpt2("corpus", "dedup-clusters", *edges, *signatures, "-o", clusters, "--keep", keep)
    assert done.code == 0, done.stderr
    output, reports = b"", []
    for index, part in enumerate(parts):
        report = tmp_path / f"removed-{index}.jsonl"
        done = gpt2(
            "corpus",
            "dedup-filter",
            "-c",
            clusters,
            "--part",
            index,
            "--clusters",
            report,
            stdin=part.read_bytes(),
        )
        assert done.code == 0, done.stderr
        output += done.stdout
        reports += report.read_text().splitlines()
    assert output == one.stdout and len(texts_of(output)) < len(records) - 20
    fields = ("document", "kept", "reason")

    def key(lines: list[str]) -> list[tuple]:
        return [tuple(json.loads(line)[f] for f in fields) for line in lines]

    assert key(reports) == key((tmp_path / "one.jsonl").read_text().splitlines())
    # a part given the wrong input, or a missing bucket, is an error
    wrong = gpt2_process("corpus", "dedup-filter", "-c", clusters, "--part", 0, parts[1])
    assert wrong.returncode == 1 and b"not the input of part 0" in wrong.stderr
    assert wrong.stdout == b""
    missing = gpt2_process("corpus", "dedup-clusters", *edges[:2], *signatures, "-o", clusters)
    assert missing.returncode == 1 and b"buckets missing: 2" in missing.stderr
