"""`gpt2 corpus extract` on real crawlers' files (tests/corpus/data/real_warcs, see its README)
and on the ways real crawls bend the WARC format."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _web_files import http_response, warc_record

DATA = Path(__file__).parent / "data" / "real_warcs"
ROOT = Path(__file__).resolve().parents[2]
PROSE = (
    "The river town held its council meeting on Tuesday, and the people of the city came to "
    "hear the report on the water engine, the school and the new market by the bridge. "
) * 4


def page(title: str) -> bytes:
    paragraphs = "".join(f"<p>{PROSE} Part {i} of {title}.</p>" for i in range(3))
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><article>"
        f"<h1>{title}</h1>{paragraphs}</article></body></html>"
    ).encode()


def records(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def extract(gpt2, *args, **kwargs):
    return gpt2("corpus", "extract", "-j", "1", *args, **kwargs)


@pytest.mark.parametrize(
    ("name", "urls", "dropped"),
    [
        ("example.warc.gz", ["http://example.com"], {"revisit": 1}),
        ("example.arc.gz", ["http://example.com"], {}),
        ("example-wget-bad-target-uri.warc.gz", ["http://example.com"], {"not_http": 2}),
        ("example-iana.org-chunked.warc", ["http://www.iana.org"], {}),
        ("example-trunc.warc", ["http://example.com"], {}),
        ("cc.warc.gz", ["http://commoncrawl.org"], {}),
        (
            "clueweb09-style-0.18.warc",
            ["http://www.example.com/river", "http://news.example.org/council.html"],
            {},
        ),
        (
            "browser-style-dechunked.warc.gz",
            ["https://example.net/dechunked", "https://example.net/moved"],
            {"http_status": 1},
        ),
        (
            "IAH-20080430204825-00000-blackbook-truncated.arc",
            ["http://www.archive.org", "http://www.archive.org/index.php"],
            {"not_html": 5},
        ),
        (
            "IAH-urls-wget.warc.gz",
            ["https://archive.org", "https://archive.org"],
            {"http_status": 9, "not_html": 5, "not_http": 3},
        ),
    ],
)  # fmt: skip
def test_real_crawler_files(gpt2, tmp_path: Path, name: str, urls: list[str], dropped) -> None:
    stats = tmp_path / "stats.json"
    run = extract(gpt2, "--stats", stats, DATA / name)
    assert run.code == 0, run.stderr
    out = records(run.stdout)
    assert [r["url"] for r in out] == urls
    assert all(len(r["text"]) > 40 for r in out), out
    counters = json.loads(stats.read_text())
    assert {k: v for k, v in counters["dropped"].items() if k != "no_text"} == dropped
    assert counters["bad_records"] == 0


def test_dechunked_and_inflated_bodies_read_as_stored(gpt2) -> None:
    """Chunked+gzip headers over a plain body, and a really chunked gzip body, give the
    same text; the 302 without a reason phrase joins its link through the redirect."""
    run = extract(gpt2, DATA / "browser-style-dechunked.warc.gz")
    titles = [r["title"] for r in records(run.stdout)]
    assert titles == ["Stored dechunked", "Moved and chunked"]


def test_wget_angle_brackets_join_links(gpt2, tmp_path: Path) -> None:
    links = tmp_path / "links.txt"
    links.write_text("https://example.com/\n")  # a plain URL list; https joins http
    run = extract(gpt2, "--links", links, DATA / "example-wget-bad-target-uri.warc.gz")
    assert run.code == 0, run.stderr
    assert [r["url"] for r in records(run.stdout)] == ["http://example.com"]


def test_bad_records_are_counted_with_offsets_and_reading_goes_on(gpt2, tmp_path: Path) -> None:
    rejected, stats = tmp_path / "rejected.jsonl", tmp_path / "stats.json"
    run = extract(
        gpt2, "--rejected", rejected, "--stats", stats, DATA / "link-extraction-test.warc"
    )
    assert run.code == 0
    lines = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert {line["reason"] for line in lines} == {"no_text", "not_http"}
    assert all(line["offset"] >= 0 and line["file"].endswith(".warc") for line in lines)


def _crawl(tmp_path: Path, lengths: dict[int, str], count: int = 10) -> tuple[Path, bytes]:
    """``count`` gzip'd records (one member each); record i's Content-Length replaced by
    ``lengths[i]`` where given. Returns the file and its uncompressed bytes."""
    members, plain = [], b""
    for index in range(count):
        url = f"http://example.com/{index}"
        record = warc_record(url, http_response(page(f"Page {index}"), "text/html"))
        buffer = io.BytesIO()
        record.write(buffer)
        data = buffer.getvalue()
        if index in lengths:
            head, _, rest = data.partition(b"Content-Length: ")
            _, _, rest = rest.partition(b"\r\n")
            data = head + b"Content-Length: " + lengths[index].encode() + b"\r\n" + rest
        members.append(gzip.compress(data))
        plain += data
    path = tmp_path / "crawl.warc.gz"
    path.write_bytes(b"".join(members))
    return path, plain


def _starts(plain: bytes) -> list[int]:
    return [i for i in range(len(plain)) if plain.startswith(b"WARC/1.", i)]


@pytest.mark.parametrize("length", ["1000000000000000", "-5", "abc", "12", "99999999999999999999"])
def test_a_lying_length_costs_one_record(gpt2, tmp_path: Path, length: str) -> None:
    crawl, plain = _crawl(tmp_path, {3: length})
    (tmp_path / "crawl.warc").write_bytes(plain)
    for path in (crawl, tmp_path / "crawl.warc"):
        stats = tmp_path / "stats.json"
        run = extract(gpt2, "--stats", stats, path)
        assert run.code == 0, run.stderr
        urls = [r["url"] for r in records(run.stdout)]
        assert urls == [f"http://example.com/{i}" for i in range(10) if i != 3], path
        counters = json.loads(stats.read_text())
        assert counters["bad_records"] == 1
        assert counters["bad_record_list"][0]["offset"] == _starts(plain)[3]
        assert counters["bad_record_list"][0]["reason"] == "bad_length"
    stopped = extract(gpt2, "--max-bad-records", "0", crawl)
    assert stopped.code == 1
    assert "more than 0 bad records (--max-bad-records)" in stopped.stderr.splitlines()[-1]


def test_large_gzip_content_encoding(gpt2, tmp_path: Path) -> None:
    body = page("Big") + b"<!-- " + os.urandom(1 << 20).hex().encode() + b" -->"
    http = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\n"
        + gzip.compress(body)
    )
    path = tmp_path / "big.warc"
    with open(path, "wb") as stream:
        warc_record("http://example.com/big", http).write(stream)
        next_page = http_response(page("Next"), "text/html")
        warc_record("http://example.com/next", next_page).write(stream)
    run = extract(gpt2, path)
    assert run.code == 0, run.stderr
    assert [r["title"] for r in records(run.stdout)] == ["Big", "Next"]
    small = extract(gpt2, "--max-bytes", "100000", "--stats", tmp_path / "s.json", path)
    assert json.loads((tmp_path / "s.json").read_text())["dropped"] == {"too_large": 1}
    assert small.code == 0


def test_a_cut_file_gives_every_whole_record_then_one_line(gpt2, tmp_path: Path) -> None:
    _, plain = _crawl(tmp_path, {})
    starts = _starts(plain)
    cut = tmp_path / "cut.warc"
    cut.write_bytes(plain[: starts[6] + 700])
    other = tmp_path / "other.warc"
    other.write_bytes(plain[: starts[2]])
    run = extract(gpt2, "-o", tmp_path / "out.jsonl", cut, other)
    assert run.code == 1
    header_end = plain.index(b"\r\n\r\n", starts[6]) + 4
    got, length = starts[6] + 700 - header_end, starts[7] - 4 - header_end
    assert run.stderr.strip().splitlines()[-1] == (
        f"gpt2 corpus extract: error: {cut}: truncated WARC file: the record at byte "
        f"{starts[6]:,} is cut ({got:,} of its {length:,} bytes)"
    )
    out = records((tmp_path / "out.jsonl").read_bytes())
    assert len(out) == 6 + 2  # the whole records of both files, the cut one's included


def test_an_arc_or_warc_it_is_not(gpt2, tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(page("Not a crawl"))
    run = extract(gpt2, path)
    assert run.code == 1
    assert run.stderr.strip().splitlines()[-1] == (
        f"gpt2 corpus extract: error: {path}: not a WARC or ARC file (it starts "
        "'<!DOCTYPE html><html><head><title>Not a ')"
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_kill_9_of_extract_leaves_no_process(tmp_path: Path) -> None:
    from fastwarc.stream_io import GzipWriter
    from test_corpus_ingest import _descendants

    crawl = tmp_path / "big.warc.gz"
    writer = GzipWriter(str(crawl))
    body = page("Long") * 20
    for index in range(3000):
        warc_record(f"http://example.com/{index}", http_response(body, "text/html")).write(writer)
    writer.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gpt2cli", "corpus", "extract", "-j", "2", str(crawl)]
    command += ["-o", str(tmp_path / "out.jsonl")]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    family: list[int] = []
    while time.monotonic() < deadline and process.poll() is None:
        family = _descendants(process.pid)
        if len([p for c in family for p in _descendants(c)]) >= 2:  # both workers are up
            break
        time.sleep(0.2)
    family = _descendants(process.pid)
    assert len(family) >= 3, "no fork server and workers appeared"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in family):
        time.sleep(0.1)
    assert not [p for p in family if _alive(p)]


def _arc(version: int, records: list[tuple[str, bytes, str]]) -> bytes:
    """An ARC file: its filedesc (version 1 or 2), then (url, HTTP message, length field)."""
    fields = "URL IP-address Archive-date Content-type Archive-length"
    if version == 2:
        fields = fields.replace("Content-type", "Content-type Result-code Checksum Location "
                                "Offset Filename")  # fmt: skip
    head = f"{version} 0 Test\n{fields}\n".encode()
    extra = " 200 - - 0 t.arc" if version == 2 else ""
    out = f"filedesc://t.arc 0.0.0.0 20080101000000 text/plain{extra} {len(head)}\n".encode()
    out += head + b"\n"
    for url, message, length in records:
        extra = " 200 SHA1 - 0 t.arc" if version == 2 else ""
        out += f"{url} 1.2.3.4 20080102030405 text/html{extra} {length}\n".encode()
        out += message + b"\n"
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_arc_versions_and_lengths_that_lie(gpt2, tmp_path: Path, version: int) -> None:
    message = http_response(page("Archived"), "text/html")
    entries = [
        ("http://example.com/a", message, str(len(message))),
        ("http://example.com/minus", message, "-1"),
        ("http://example.com/abc", message, "abc"),
        ("http://example.com/with space", message, str(len(message))),  # a space in the URL
    ]
    path = tmp_path / f"v{version}.arc"
    path.write_bytes(_arc(version, entries))
    stats = tmp_path / "stats.json"
    run = extract(gpt2, "--stats", stats, path)
    assert run.code == 0, run.stderr
    out = records(run.stdout)
    assert [r["url"] for r in out] == ["http://example.com/a", "http://example.com/with%20space"]
    assert out[0]["crawl_date"] == "2008-01-02T03:04:05Z"
    assert out[0]["warc_record_id"] is None
    assert json.loads(stats.read_text())["dropped"] == {"bad_length": 2}
