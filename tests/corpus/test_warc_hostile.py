"""Hostile WARC and ARC files for `gpt2 corpus extract`: lengths that lie (negative, huge,
inf, nan, 1e400, 2⁶³), files cut at every record boundary and inside records, broken HTTP
messages, decompression bombs, bytes that are not text. Each is a counted bad record or
one error line, never a traceback, and never costs the records around it."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

PROSE = (
    "The river town held its council meeting on Tuesday, and the people of the city came to "
    "hear the report on the water engine, the school and the new market by the bridge. "
) * 3
SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def html(title: str) -> bytes:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><article>"
        f"<h1>{title}</h1><p>{PROSE}</p><p>{PROSE}</p></article></body></html>"
    ).encode()


def http(body: bytes, head: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n") -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def warc(url: str, block: bytes, length: str | None = None, kind: str = "response") -> bytes:
    head = (
        f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {url}\r\n"
        f"WARC-Date: 2019-02-01T12:00:00Z\r\nWARC-Record-ID: <urn:uuid:{url[-8:]:0>8}>\r\n"
        f"Content-Type: application/http; msgtype={kind}\r\n"
        f"Content-Length: {len(block) if length is None else length}\r\n\r\n"
    )
    return head.encode() + block + b"\r\n\r\n"


def crawl(count: int = 6) -> list[bytes]:
    return [warc(f"http://example.com/{i}", http(html(f"Page {i}"))) for i in range(count)]


def run_extract(gpt2, path: Path, *args: str):
    stats = path.with_suffix(".stats.json")
    run = gpt2("corpus", "extract", "-j", "1", "--stats", stats, *args, path)
    assert "Traceback" not in run.stderr
    urls = [json.loads(line)["url"] for line in run.stdout.splitlines()]
    counters = json.loads(stats.read_text()) if stats.exists() else None
    return run, urls, counters


def one_error_line(run) -> str:
    """The run's error: exit 1 and its last stderr line is the one-line error."""
    assert run.code == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("gpt2 corpus extract: error: ")
    return last


HOSTILE_LENGTHS = st.one_of(
    st.sampled_from(
        [
            "-1",
            "-0",
            "inf",
            "nan",
            "1e400",
            "1e3",
            str(2**63),
            str(2**64),
            "10" * 20,
            "",
            " ",
            "0x10",
            "1_0",
            "+5",
            "٣",
            "²",
            "1 2",
            "99999999999999999999",
        ]
    ),  # fmt: skip
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=3000).map(str),  # near the true length: off by a little
)


@SETTINGS
@given(length=HOSTILE_LENGTHS, index=st.integers(0, 5), compressed=st.booleans())
@example(length="2610", index=0, compressed=False)  # ends 16 bytes of text before a record
def test_a_lying_length_is_one_bad_record(gpt2, tmp_path: Path, length, index, compressed):
    records = crawl()
    true_length = records[index].index(b"\r\n\r\n") + 4
    records[index] = records[index].replace(
        b"Content-Length: %d\r\n\r\nHTTP" % (len(records[index]) - true_length - 4),
        f"Content-Length: {length}\r\n\r\nHTTP".encode(),
        1,
    )
    path = tmp_path / ("c.warc.gz" if compressed else "c.warc")
    path.write_bytes(
        b"".join(gzip.compress(r) for r in records) if compressed else b"".join(records)
    )
    run, urls, counters = run_extract(gpt2, path)
    if run.code == 1:  # the last record's length runs past the end: a cut file, by its look
        assert index == 5
        assert f"{path}: truncated WARC file: the record at byte " in one_error_line(run)
    else:
        assert run.code == 0, run.stderr
    others = [f"http://example.com/{i}" for i in range(6) if i != index]
    assert [u for u in urls if u != f"http://example.com/{index}"] == others
    assert counters["bad_records"] <= 1
    if counters["bad_records"]:
        assert counters["bad_record_list"][0]["reason"] == "bad_length"
        assert f"http://example.com/{index}" not in urls


def _boundaries(data: bytes) -> list[int]:
    return [i for i in range(len(data)) if data.startswith(b"WARC/1.0\r\n", i)] + [len(data)]


def test_truncation_at_every_record_boundary_and_inside(gpt2, tmp_path: Path) -> None:
    """Plain: every whole record out, then the cut one named by its offset (exit 1); cut
    exactly at a boundary (or only in the closing blank lines) is a whole file."""
    data = b"".join(crawl(4))
    starts = _boundaries(data)
    for record in range(4):
        start, end = starts[record], starts[record + 1]
        for cut in [start, start + 5, start + 150, end - 10, end - 4, end]:
            path = tmp_path / f"cut-{cut}.warc"
            path.write_bytes(data[:cut])
            run, urls, _ = run_extract(gpt2, path)
            whole = sum(1 for i in range(4) if starts[i + 1] - 4 <= cut)
            assert urls == [f"http://example.com/{i}" for i in range(whole)], cut
            if cut in starts or whole == 4 or cut == starts[whole] - 4:
                assert run.code == 0, (cut, run.stderr)
                continue
            header_end = data.index(b"\r\n\r\n", starts[whole]) + 4
            inside = " inside its headers" if cut < header_end else " ("
            assert one_error_line(run).startswith(
                f"gpt2 corpus extract: error: {path}: truncated WARC file: the record at byte "
                f"{starts[whole]:,} is cut{inside}"
            )


def test_truncated_gzip_members(gpt2, tmp_path: Path) -> None:
    """One gzip member per record, cut at, inside and in the 8-byte trailer of each member:
    every record whose bytes are all there is out, then one line naming the file."""
    members = [gzip.compress(r) for r in crawl(4)]
    ends = [sum(len(m) for m in members[: i + 1]) for i in range(4)]
    packed = b"".join(members)
    for member in range(4):
        start = ends[member] - len(members[member])
        for cut, whole in [
            (start + 3, member),
            (start + 60, member),
            (ends[member] - 5, member + 1),
        ]:
            path = tmp_path / f"cut-{cut}.warc.gz"
            path.write_bytes(packed[:cut])
            run, urls, _ = run_extract(gpt2, path)
            assert urls == [f"http://example.com/{i}" for i in range(whole)], cut
            assert f"{path}: truncated or corrupt gzip data" in one_error_line(run)
        path = tmp_path / "whole.warc.gz"
        path.write_bytes(packed[: ends[member]])
        run, urls, _ = run_extract(gpt2, path)
        assert run.code == 0 and len(urls) == member + 1


@SETTINGS
@given(member=st.integers(0, 3), at=st.integers(10, 200), junk=st.binary(min_size=1, max_size=64))
def test_a_damaged_gzip_member_costs_its_record(gpt2, tmp_path: Path, member, at, junk) -> None:
    members = [gzip.compress(r) for r in crawl(4)]
    damaged = members[member]
    at = min(at, len(damaged) - 9)
    members[member] = damaged[:at] + junk + damaged[at + len(junk) :]
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(b"".join(members))
    run, urls, counters = run_extract(gpt2, path)
    assert run.code == 0, run.stderr
    others = [f"http://example.com/{i}" for i in range(4) if i != member]
    assert [u for u in urls if u != f"http://example.com/{member}"] == others
    if f"http://example.com/{member}" not in urls:
        assert counters["bad_records"] >= 1


def test_damage_that_looks_like_a_gzip_header(gpt2, tmp_path: Path) -> None:
    """Damage inside a member that writes a gzip magic number: the false member it seems to
    start is given up when it fails, and the members after it are read."""
    members = [gzip.compress(r) for r in crawl(4)]
    members[0] = members[0][:65] + b"\x1f\x8b\x08" + members[0][68:]
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(b"".join(members))
    run, urls, counters = run_extract(gpt2, path)
    assert run.code == 0, run.stderr
    assert urls == [f"http://example.com/{i}" for i in (1, 2, 3)]
    assert counters["bad_records"] == 1


def test_decompression_bomb_and_broken_http(gpt2, tmp_path: Path) -> None:
    bomb = gzip.compress(b"<html><body>" + b" " * (64 << 20))
    cases = [
        http(bomb, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"),
        http(b"<html>x</html>", b"HTTP/1.1 abc OK\r\nContent-Type: text/html\r\n"),
        b"not http at all\r\n\r\n<html></html>",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\n<html><body>abcd\r\nzz\r\n",  # chunks that break off
        http(zlib.compress(html("Deflated")), b"HTTP/1.1 200\r\nContent-Type: text/html\r\n"
             b"Content-Encoding: deflate\r\n"),
        http(b"\x00\x01" * 100, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"),
    ]  # fmt: skip
    data = b"".join(warc(f"http://example.com/{i}", block) for i, block in enumerate(cases))
    not_utf8 = warc("http://exZZample.com/QQ", http(html("Bytes")))
    data += not_utf8.replace(b"ZZ", b"\xff").replace(b"QQ", b"\xc3\x28")
    path = tmp_path / "hostile.warc"
    path.write_bytes(data)
    run, urls, counters = run_extract(gpt2, path, "--rejected", str(tmp_path / "r.jsonl"))
    assert run.code == 0, run.stderr
    assert urls == ["http://example.com/4", "http://ex%ffample.com/%C3("]
    assert counters["dropped"] == {
        "too_large": 1,
        "malformed_http": 3,
        "not_html_payload": 1,
    }
    rejected = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rejected) == 5 and all(r["offset"] >= 0 for r in rejected)


def test_a_response_record_without_its_http_message(gpt2, tmp_path: Path) -> None:
    """Some crawlers store the payload alone in a response record, typed by its own
    Content-Type: read as the page; blank lines before a status line are passed over."""
    bare = warc("http://example.com/bare", html("Bare")).replace(
        b"application/http; msgtype=response", b"text/html; charset=utf-8"
    )
    padded = warc("http://example.com/padded", b"\r\n" + http(html("Padded")))
    path = tmp_path / "bare.warc"
    path.write_bytes(bare + padded)
    run, urls, _ = run_extract(gpt2, path)
    assert run.code == 0 and urls == ["http://example.com/bare", "http://example.com/padded"]


REAL = sorted((Path(__file__).parent / "data" / "real_warcs").glob("*arc*"))
INSERTS = [b"\r\n", b"WARC/1.0\r\n", b"Content-Length: -1\r\n", b"\x1f\x8b\x08", b"0\r\n\r\n",
           b"HTTP/1.1 200\r\n", b"filedesc://x 0.0.0.0 20080101000000 text/plain 9\n"]  # fmt: skip


@SETTINGS
@given(
    source=st.sampled_from(REAL),
    inflate=st.booleans(),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 3), st.integers(0, 255)), min_size=1, max_size=5
    ),
)
def test_damaged_real_files_never_a_traceback(gpt2, tmp_path: Path, source, inflate, edits):
    data = bytearray(source.read_bytes())
    if inflate and data[:2] == b"\x1f\x8b":
        data = bytearray(gzip.decompress(bytes(data)))
    for where, kind, value in edits:
        if not data:  # cut to nothing by an earlier edit
            break
        at = int(where * (len(data) - 1))
        if kind == 0:
            data[at] = value
        elif kind == 1:
            del data[at : at + value]
        elif kind == 2:
            data[at:at] = INSERTS[value % len(INSERTS)]
        else:
            del data[at:]
    path = tmp_path / "damaged"
    path.write_bytes(bytes(data))
    run, _, counters = run_extract(gpt2, path)  # asserts no traceback
    if run.code == 1:
        one_error_line(run)
    else:
        assert run.code == 0 and counters is not None


def test_every_content_coding_a_server_sends(gpt2, tmp_path: Path) -> None:
    import brotli
    import zstandard

    page = html("Coded")
    codings = {
        "gzip": gzip.compress(page),
        "deflate": zlib.compress(page),
        "br": brotli.compress(page),
        "zstd": zstandard.ZstdCompressor().compress(page),
        "gzip, br": brotli.compress(gzip.compress(page)),  # applied in order, undone in reverse
    }
    data = b"".join(
        warc(f"http://example.com/{i}", http(body, b"HTTP/1.1 200 OK\r\nContent-Type: "
             b"text/html\r\nContent-Encoding: " + name.encode() + b"\r\n"))
        for i, (name, body) in enumerate(codings.items())
    )  # fmt: skip
    path = tmp_path / "coded.warc"
    path.write_bytes(data)
    run = gpt2("corpus", "extract", "-j", "1", path)
    assert run.code == 0, run.stderr
    assert [json.loads(line)["title"] for line in run.stdout.splitlines()] == ["Coded"] * 5


def test_odd_headers_leave_stderr_alone(gpt2, tmp_path: Path) -> None:
    """A target URI in wget's brackets and with spaces, and an ARC v2 file: read, and the
    WARC library's warnings about them never reach the user's stderr."""
    odd = warc("<http://example.com/a page>", http(html("Spaced")))
    path = tmp_path / "odd.warc"
    path.write_bytes(odd)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "gpt2cli", "corpus", "extract", "-j", "1", str(path)]
    run = subprocess.run(command, capture_output=True, env=env, timeout=120)  # stderr as is
    assert run.returncode == 0
    assert [json.loads(line)["url"] for line in run.stdout.splitlines()] == [
        "http://example.com/a%20page"
    ]
    assert len(run.stderr.decode().strip().splitlines()) == 1, run.stderr  # the summary only
    body = http(html("Version two"))
    filedesc_body = b"2 0 Test\nURL IP-address Archive-date Content-type Result-code ...\n"
    arc = (
        b"filedesc://t.arc 0.0.0.0 20080101000000 text/plain %d\n" % len(filedesc_body)
        + filedesc_body
        + b"\nhttp://example.com/v2 1.2.3.4 20080101000000 text/html 200 - - 0 t.arc %d\n"
        % len(body)
        + body
        + b"\n"
    )
    path = tmp_path / "v2.arc"
    path.write_bytes(arc)
    run, urls, _ = run_extract(gpt2, path)
    assert run.code == 0 and urls == ["http://example.com/v2"], run.stderr
