"""gpt2 corpus links / extract, and compressed + Parquet inputs, on real files via the real CLI."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _web_files import dump_bytes, http_response, submission, warc_record, write_zst

ROOT = Path(__file__).resolve().parents[2]


def gpt2(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gpt2cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=300,
    )


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


# ------------------------------------------------------------------ a Pushshift-style dump


DUMP = [
    submission("HTTP://Example.COM:80/story/?utm_source=rss&id=7#comments", 5, 1546300900),
    submission("http://example.com/story?id=7", 12, 1546300800),  # same URL, higher karma
    submission("https://example.com/story?id=7&fbclid=abc", 1, 1546300700),  # below karma
    submission("https://news.example.org/a/", 3),
    submission("https://en.wikipedia.org/wiki/Thing", 50),  # excluded (subdomain)
    submission("https://notwikipedia.org/page", 4),  # not a subdomain of wikipedia.org
    submission("https://www.reddit.com/r/test/comments/x/", 9, is_self=True),  # self post
    submission("https://i.redd.it/picture.jpg", 20),  # Reddit's own
    submission("https://nsfw.example.net/x", 8, over_18=True),
    submission("https://low.example.com/", 2),
]


def test_links_karma_normalisation_and_domain_exclusion(tmp_path: Path) -> None:
    import zstandard as zstd

    dump = write_zst(tmp_path / "RS_2019-01.zst", dump_bytes(DUMP))
    with pytest.raises(zstd.ZstdError):  # the window really is beyond the default limit
        zstd.ZstdDecompressor().stream_reader(io.BytesIO(dump.read_bytes())).read(10)
    stats = tmp_path / "stats.json"
    run = gpt2(
        "corpus", "links", dump, "--min-karma", "3", "--exclude-domain", "wikipedia.org",
        "--exclude-over-18", "--stats", stats,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert jsonl(run.stdout) == [
        {
            "url": "http://example.com/story?id=7",
            "domain": "example.com",
            "karma": 12,
            "submissions": 2,
            "date": "2019-01-01T00:00:00Z",
        },
        {
            "url": "https://news.example.org/a",
            "domain": "news.example.org",
            "karma": 3,
            "submissions": 1,
            "date": "2019-01-01T00:00:00Z",
        },
        {
            "url": "https://notwikipedia.org/page",
            "domain": "notwikipedia.org",
            "karma": 4,
            "submissions": 1,
            "date": "2019-01-01T00:00:00Z",
        },
    ]
    counters = json.loads(stats.read_text())
    assert counters["documents_in"] == len(DUMP) and counters["documents_out"] == 3
    assert counters["dropped"] == {
        "excluded_domain": 1,
        "low_karma": 2,
        "over_18": 1,
        "reddit_link": 1,
        "self_post": 1,
    }
    assert "gpt2 corpus links: 10 in, 3 out" in run.stderr.decode()


def test_links_domain_file_gzip_stdin_and_bad_records(tmp_path: Path) -> None:
    domains = tmp_path / "domains.txt"
    domains.write_text("# excluded\nexample.org\n")
    bad = [
        b"not json",
        json.dumps({"score": 5}).encode(),
        json.dumps({"url": "http://a.com"}).encode(),
    ]
    data = gzip.compress(dump_bytes(DUMP[:4]) + b"\n".join(bad) + b"\n")
    run = gpt2("corpus", "links", "--exclude-domain-file", domains, "-", stdin=data)
    assert run.returncode == 0, run.stderr
    assert [r["url"] for r in jsonl(run.stdout)] == ["http://example.com/story?id=7"]
    stderr = run.stderr.decode()
    assert "<stdin>: line 5: malformed JSON" in stderr and "line 6: no 'url'" in stderr
    assert "malformed_json 1" in stderr and "no_score 1" in stderr and "no_url 1" in stderr
    strict = gpt2("corpus", "links", "--strict", "-", stdin=data)
    assert strict.returncode == 1 and strict.stdout == b""
    assert strict.stderr.decode().startswith("gpt2 corpus links: error: <stdin>: line 5: malformed")


def test_links_spill_and_merge_equal_one_run(tmp_path: Path) -> None:
    records = [
        submission(f"https://site{i % 37}.example.com/page/{i % 101}", i % 9, 1546300800 + i)
        for i in range(600)
    ]
    whole = write_zst(tmp_path / "whole.zst", dump_bytes(records))
    one = gpt2("corpus", "links", whole)
    assert one.returncode == 0, one.stderr
    spilled = gpt2("corpus", "links", "--max-urls", "5", "--stats", tmp_path / "s.json", whole)
    assert spilled.stdout == one.stdout
    assert json.loads((tmp_path / "s.json").read_text())["spilled_runs"] > 10
    parts = []
    for index in range(3):
        part = write_zst(tmp_path / f"part{index}.zst", dump_bytes(records[index::3]))
        out = tmp_path / f"links{index}.jsonl"
        assert gpt2("corpus", "links", part, "-o", out).returncode == 0
        parts.append(out)
    merged = gpt2("corpus", "links", "--merge", *parts)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout == one.stdout and len(jsonl(one.stdout)) > 100
    unsorted = tmp_path / "unsorted.jsonl"
    unsorted.write_bytes(b"".join(reversed(one.stdout.splitlines(keepends=True))))
    refused = gpt2("corpus", "links", "--merge", unsorted)
    assert refused.returncode == 1 and b"must be sorted as" in refused.stderr


def test_link_table_answers_as_the_link_file(tmp_path: Path) -> None:
    from gpt2cli.corpus.links import load_links

    rows = [
        {
            "url": f"https://site{i % 7}.example/{i:05d}",
            "karma": 3 + i % 50,
            "submissions": 1 + i % 4,
            "date": None if i % 9 == 0 else f"2019-0{1 + i % 9}-01T00:00:00Z",
        }
        for i in range(3_000)
    ]
    rows.sort(key=lambda row: row["url"])
    path = tmp_path / "links.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    table = load_links(str(path))
    assert len(table) == len(rows)
    for row in rows:
        assert table.get(row["url"]) == (row["karma"], row["submissions"], row["date"])
    assert table.get("https://site1.example/99999") is None
    assert table.get("https://elsewhere.example/") is None


def test_truncated_compressed_dump_is_an_error_naming_it(tmp_path: Path) -> None:
    records = [submission(f"https://a{i}.example.com/", 5) for i in range(3000)]
    data = write_zst(tmp_path / "full.zst", dump_bytes(records)).read_bytes()
    cut = tmp_path / "cut.zst"
    cut.write_bytes(data[: len(data) // 2])
    run = gpt2("corpus", "links", cut)
    assert run.returncode == 1
    assert run.stderr.decode().strip().endswith(f"{cut}: truncated or corrupt zstd data")


# ------------------------------------------------------------------------------ a WARC crawl

PROSE = (
    "The river town kept its old bridge long after the railway came. Every spring the water "
    "rose to the third stone, and the children counted the days until it fell again. "
    "Merchants from the valley brought salt, cloth and news, and stayed the night at the inn "
    "beside the mill, where the miller's wife served bread baked before dawn."
)


def page(title: str, paragraphs: list[str], head: str = "") -> str:
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html><head>{head}<title>{title}</title></head><body>"
        f"<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav>"
        f"<article><h1>{title}</h1>\n{body}</article>"
        f"<footer>Copyright 2019 Example Media. All rights reserved.</footer></body></html>"
    )


LATIN = page("Café à la carte", [PROSE, "Le café était crème, déjà servi. " * 6])
META = '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
META_ONLY = page("Naïve façade", [PROSE, "Ein schöner Übergang für Grüße. " * 6], head=META)
PAGES = [  # (request url, HTTP bytes, the decoded HTML a browser would show, or None)
    ("http://example.com/story?id=7", page("A river town", [PROSE, PROSE.upper()]), "utf-8"),
    ("https://news.example.org/a/", LATIN, "iso-8859-1"),
    ("https://news.example.org/meta", META_ONLY, None),
]


def write_warc(path: Path, truncate: int = 0) -> list[tuple[str, str]]:
    """A gzip'd WARC: good pages among a 404, an image, a request record, a redirect and a
    binary text/html payload. Returns the (url, html) of the pages to be extracted, in order."""
    from fastwarc.stream_io import GzipWriter

    buffer = path.with_suffix(".tmp")
    writer = GzipWriter(str(buffer))
    expected = []
    for url, html, charset in PAGES:
        body = html.encode("cp1252" if charset != "utf-8" else "utf-8")
        ctype = f"text/html; charset={charset}" if charset else "text/html"
        warc_record(url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "request").write(writer)
        warc_record(url, http_response(body, ctype)).write(writer)
        expected.append((url, html))

    def add(url: str, *response: str | bytes) -> None:
        warc_record(url, http_response(*response)).write(writer)

    add("http://example.com/gone", b"gone", "text/html", "404 Not Found")
    add("http://example.com/logo.png", b"\x89PNG\r\n", "image/png")
    add("http://example.com/old", b"", "text/html", "301 Moved", "Location: /new-home\r\n")
    moved = page("Moved here", [PROSE, PROSE.lower()])
    add("http://example.com/new-home", moved.encode(), "text/html")
    expected.append(("http://example.com/new-home", moved))
    binary = b"\x00\x01\x02\xff" * 64
    warc_record("http://example.com/bin", http_response(binary, "text/html")).write(writer)
    writer.close()
    data = buffer.read_bytes()
    buffer.unlink()
    path.write_bytes(data[: len(data) - truncate] if truncate else data)
    return expected


def trafilatura_text(html: str, url: str) -> str:
    import trafilatura

    return trafilatura.extract(html, url=url, favor_precision=True, include_comments=False)


def test_extract_equals_trafilatura_and_joins_links(tmp_path: Path) -> None:
    crawl = tmp_path / "crawl.warc.gz"
    expected = write_warc(crawl)
    stats = tmp_path / "stats.json"
    run = gpt2("corpus", "extract", "-j", "1", "--stats", stats, crawl)
    assert run.returncode == 0, run.stderr
    records = jsonl(run.stdout)
    assert [r["url"] for r in records] == [
        "http://example.com/story?id=7",
        "https://news.example.org/a",
        "https://news.example.org/meta",
        "http://example.com/new-home",
    ]
    for record, (url, html) in zip(records, expected):
        assert record["text"] == trafilatura_text(html, url)
        assert record["warc_record_id"].startswith("<urn:uuid:")
        assert record["crawl_date"] == "2019-02-01T12:00:00Z"
    assert "déjà servi" in records[1]["text"] and records[1]["title"] == "Café à la carte"
    assert "schöner Übergang" in records[2]["text"] and records[2]["title"] == "Naïve façade"
    assert records[0]["karma"] is None and records[0]["domain"] == "example.com"
    counters = json.loads(stats.read_text())
    assert counters["documents_in"] == 8 and counters["documents_out"] == 4
    assert counters["dropped"] == {"http_status": 2, "not_html": 1, "not_html_payload": 1}
    assert f"skipped {crawl}: record at byte " in run.stderr.decode()
    assert ": http://example.com/bin: a text/html payload" in run.stderr.decode()

    dump = write_zst(
        tmp_path / "RS.zst", dump_bytes(DUMP + [submission("http://example.com/old", 7)])
    )
    links = tmp_path / "links.jsonl"
    assert gpt2("corpus", "links", dump, "-o", links).returncode == 0
    joined = gpt2("corpus", "extract", "--links", links, "-j", "2", crawl)
    assert joined.returncode == 0, joined.stderr
    by_url = {r["url"]: r for r in jsonl(joined.stdout)}
    assert list(by_url) == [  # in input order; /meta is not a link; /new-home joins via /old
        "http://example.com/story?id=7",
        "https://news.example.org/a",
        "http://example.com/old",
    ]
    assert by_url["http://example.com/story?id=7"]["karma"] == 12
    assert by_url["http://example.com/story?id=7"]["submissions"] == 2
    assert by_url["http://example.com/old"]["text"] == records[3]["text"]
    assert by_url["https://news.example.org/a"]["text"] == records[1]["text"]

    strict = gpt2("corpus", "extract", "--strict", "-j", "1", crawl)
    assert strict.returncode == 1
    assert b": http://example.com/bin: a text/html payload with NUL bytes" in strict.stderr


def test_extract_truncated_warc_gz_is_an_error_naming_it(tmp_path: Path) -> None:
    crawl = tmp_path / "cut.warc.gz"
    write_warc(crawl, truncate=200)
    run = gpt2("corpus", "extract", "-j", "1", crawl)
    assert run.returncode == 1
    assert f"{crawl}: truncated or corrupt gzip data" in run.stderr.decode()


@pytest.mark.parametrize("cut", [0, 1, 100, 300, 2_000])
def test_extract_truncated_plain_warc_is_an_error_naming_it(tmp_path: Path, cut: int) -> None:
    packed = tmp_path / "crawl.warc.gz"
    write_warc(packed)
    data = gzip.decompress(packed.read_bytes())  # one gzip member per record
    crawl = tmp_path / "crawl.warc"
    crawl.write_bytes(data[: len(data) - cut])
    run = gpt2("corpus", "extract", "-j", "1", crawl)
    if cut <= 4:  # only the record's closing blank lines are gone: every byte of it is there
        assert run.returncode == 0, run.stderr
        assert len(jsonl(run.stdout)) == 4
    else:
        assert run.returncode == 1
        last_line = run.stderr.decode().strip().splitlines()[-1]
        assert last_line.startswith(f"gpt2 corpus extract: error: {crawl}: truncated WARC file")


# -------------------------------------------------------- compressed and Parquet everywhere


def test_compressed_and_parquet_inputs_give_the_same_ids(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard as zstd

    texts = [f"Document {i}: {PROSE[: 40 + i * 7]}\n\nend {i}" for i in range(300)]
    plain = tmp_path / "docs.jsonl"
    plain.write_bytes(b"".join(json.dumps({"body": t}).encode() + b"\n" for t in texts))
    data = plain.read_bytes()
    compressed = {
        "docs.jsonl.gz": gzip.compress(data),
        "docs.jsonl.zst": zstd.ZstdCompressor().compress(data),
        "docs.jsonl.xz": lzma.compress(data),
        "docs.jsonl.bz2": bz2.compress(data),
        "no-suffix": gzip.compress(data),  # recognised by its magic bytes, not its name
    }
    reference = gpt2("tokenize", "--ids", "--field", "body", plain)
    assert reference.returncode == 0 and len(reference.stdout.splitlines()) == 300
    for name, content in compressed.items():
        (tmp_path / name).write_bytes(content)
        run = gpt2("tokenize", "--ids", "--field", "body", tmp_path / name)
        assert run.returncode == 0 and run.stdout == reference.stdout, name
        piped = gpt2("tokenize", "--ids", "--field", "body", stdin=content)
        assert piped.stdout == reference.stdout, name
    table = pa.table({"id": list(range(300)), "body": texts})
    pq.write_table(table, tmp_path / "docs.parquet", row_group_size=64)
    run = gpt2("tokenize", "--ids", "--field", "body", tmp_path / "docs.parquet")
    assert run.returncode == 0 and run.stdout == reference.stdout
    missing = gpt2("tokenize", "--ids", tmp_path / "docs.parquet")
    assert missing.returncode == 1 and b"no column 'text' (columns: id, body)" in missing.stderr
    cut = tmp_path / "cut.gz"
    cut.write_bytes(compressed["docs.jsonl.gz"][:-40])
    truncated = gpt2("tokenize", "--ids", "--field", "body", cut)
    assert (
        truncated.returncode == 1
        and f"{cut}: truncated or corrupt gzip".encode() in truncated.stderr
    )


@pytest.mark.parametrize(
    ("url", "normalised", "domain"),
    [
        ("HTTP://Ex.COM:80/a/?utm_source=x&id=3#top", "http://ex.com/a?id=3", "ex.com"),
        ("https://x.org:443/", "https://x.org", "x.org"),
        ("https://x.org:8443/p", "https://x.org:8443/p", "x.org"),
        ("example.com/Path/", "http://example.com/Path", "example.com"),
        ("https://u:p@En.Wiki.org./w/X?fbclid=1&gclid=2", "https://en.wiki.org/w/X", "en.wiki.org"),
        ("http://a.com/%7euser/%2f?q=%7e", "http://a.com/~user/%2F?q=~", "a.com"),
        ("http://[2001:db8::1]:80/x/", "http://[2001:db8::1]/x", "2001:db8::1"),
        ("ftp://files.example.com/x", "ftp://files.example.com/x", ""),
        ("not a url", "not a url", ""),
    ],
)  # fmt: skip
def test_url_normalisation(url: str, normalised: str, domain: str) -> None:
    from gpt2cli.corpus.urls import domain_of, matches_domain, normalize_url

    assert normalize_url(url) == normalised
    assert domain_of(url) == domain
    assert normalize_url(normalised) == normalised  # idempotent
    assert matches_domain("en.wikipedia.org", {"wikipedia.org"})
    assert not matches_domain("notwikipedia.org", {"wikipedia.org"})


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_extract_worker_killed_is_an_error_not_a_hang(tmp_path: Path) -> None:
    import signal
    import time

    from fastwarc.stream_io import GzipWriter

    crawl = tmp_path / "big.warc.gz"
    writer = GzipWriter(str(crawl))
    body = page("Long", [PROSE] * 40).encode()
    for index in range(3000):
        warc_record(f"http://example.com/{index}", http_response(body, "text/html")).write(writer)
    writer.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gpt2cli", "corpus", "extract", "-j", "2", str(crawl)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and process.poll() is None:
        # main → fork server → workers: the grandchildren are the workers
        workers = [p for c in _descendants(process.pid) for p in _descendants(c)]
        if workers:
            break
        time.sleep(0.2)
    assert workers, "no worker process appeared"
    time.sleep(1.0)
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert (
        stderr.decode()
        .strip()
        .splitlines()[-1]
        .startswith("gpt2 corpus extract: error: an extraction process died")
    )
