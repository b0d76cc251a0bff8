"""`gpt2 corpus fetch --from-archive`: a CDX server and a range-request WARC server on
loopback, as pywb or Common Crawl's index and data endpoint answer."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from _loopback_web import send

HTML = "<html><head><title>{0}</title></head><body><p>{0} story text.</p></body></html>"


def build_archive(captures: list[tuple[str, str, int, str]]) -> tuple[bytes, list[dict]]:
    """A WARC file (one gzip member a record) of (url, timestamp, status, body) and its CDX
    rows (pywb's JSON fields)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    data = io.BytesIO()
    rows = []
    for url, timestamp, code, body in captures:
        start = data.tell()
        writer = WARCWriter(data, gzip=True)
        date = f"{timestamp[:4]}-{timestamp[4:6]}-{timestamp[6:8]}T{timestamp[8:10]}:00:00Z"
        http = StatusAndHeaders(f"{code} X", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        record = writer.create_warc_record(
            url, "response", payload=io.BytesIO(body.encode()), http_headers=http,
            warc_headers_dict={"WARC-Date": date},
        )  # fmt: skip
        writer.write_record(record)
        digest = base64.b32encode(hashlib.sha1(body.encode()).digest()).decode()
        rows.append({"urlkey": url, "timestamp": timestamp, "url": url, "mime": "text/html",
                     "status": str(code), "digest": digest, "length": str(data.tell() - start),
                     "offset": str(start), "filename": "crawl/part-0.warc.gz",
                     "record_id": record.rec_headers.get_header("WARC-Record-ID")})  # fmt: skip
    return data.getvalue(), rows


def archive_sites(new_site, warc: bytes, rows: list[dict], overrides=None, style="pywb"):
    """(CDX server, WARC server); ``overrides`` maps a url to a raw index answer."""
    overrides = overrides or {}
    queries = []

    def cdx(h):
        query = parse_qs(urlsplit(h.path).query)
        queries.append(query)
        url = query["url"][0]
        if url in overrides:
            return send(h, 200, overrides[url], "application/json")
        found = [row for row in rows if row["url"] == url]
        if not found:
            return send(h, 404, b'{"message": "No Captures found"}', "application/json")
        found = list(reversed(found))  # unsorted: the client picks the closest itself
        if style == "wayback":
            fields = ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest",
                      "length", "offset", "filename"]  # fmt: skip
            names = {"original": "url", "mimetype": "mime", "statuscode": "status"}
            table = [fields] + [[row[names.get(f, f)] for f in fields] for row in found]
            return send(h, 200, json.dumps(table).encode(), "application/json")
        body = "".join(json.dumps(row) + "\n" for row in found).encode()
        send(h, 200, body, "text/x-ndjson")

    def data(h):
        spec = h.headers.get("Range", "")
        if not spec.startswith("bytes="):
            return send(h, 200, warc, "application/octet-stream")
        first, last = (int(x) for x in spec[6:].split("-"))
        part = warc[first : last + 1]
        send(h, 206, part, "application/octet-stream",
             headers={"Content-Range": f"bytes {first}-{last}/{len(warc)}"})  # fmt: skip

    index = new_site({"*": cdx})
    store = new_site({"/data/crawl/part-0.warc.gz": data})
    index.queries = queries
    return index, store


def run_archive(gpt2, tmp_path: Path, index, store, links: list[dict], *extra: str):
    path = tmp_path / "links.jsonl"
    path.write_text("".join(json.dumps(link) + "\n" for link in links))
    return gpt2("corpus", "fetch", str(path), "-o", str(tmp_path / "out"), "--from-archive",
                index.url("/cdx"), "--archive-prefix", store.url("/data/"), "--allow-private",
                "--delay", "0", "--retry-wait", "0.05", *extra)  # fmt: skip


def out_records(directory: Path) -> dict[str, list]:
    from warcio.archiveiterator import ArchiveIterator

    found: dict[str, list] = {}
    for path in sorted(directory.glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type == "response":
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    found.setdefault(uri, []).append(record.rec_headers)
    return found


def log_of(directory: Path) -> dict[str, dict]:
    lines = (directory / "fetch.jsonl").read_text().splitlines()
    return {entry["url"]: entry for entry in map(json.loads, lines)}


def test_the_capture_closest_to_the_link_date_is_copied_unchanged(gpt2, tmp_path, new_site):
    page = "http://news.example.com/story"
    warc, rows = build_archive(
        [
            (page, "20150301120000", 200, HTML.format("2015")),
            (page, "20170610120000", 200, HTML.format("2017")),
            (page, "20170601130000", 404, "gone for an hour"),
            (page, "20190301120000", 200, HTML.format("2019")),
            ("http://other.example.org/", "20170101000000", 200, HTML.format("other")),
        ]
    )
    index, store = archive_sites(new_site, warc, rows)
    links = [{"url": page, "date": "2017-06-01T12:00:00Z", "karma": 9},
             {"url": "http://other.example.org/", "date": "2017-05-01T00:00:00Z"},
             {"url": "http://never.example.net/a", "date": "2017-05-01T00:00:00Z"}]  # fmt: skip
    result = run_archive(gpt2, tmp_path, index, store, links)
    assert result.code == 0, result.stderr
    log = log_of(tmp_path / "out")
    assert log[page]["capture"] == "20170610120000" and log[page]["status"] == 200
    assert log["http://never.example.net/a"]["error"] == "not_archived"
    query = next(q for q in index.queries if q["url"] == [page])  # hosts go in any order
    assert query["closest"] == ["20170601120000"]
    assert query["output"] == ["json"] and query["sort"] == ["closest"]
    # the very bytes of the archive's record: same member, same WARC-Record-ID
    entry = log[page]
    chosen = next(row for row in rows if row["timestamp"] == "20170610120000")
    written = (tmp_path / "out" / entry["warc"]).read_bytes()
    member = written[entry["offset"] : entry["offset"] + entry["length"]]
    offset = int(chosen["offset"])
    assert member == warc[offset : offset + int(chosen["length"])]
    headers = out_records(tmp_path / "out")[page][0]
    assert headers.get_header("WARC-Record-ID") == chosen["record_id"]
    # --as-of chooses for every link
    (tmp_path / "asof").mkdir()
    again = run_archive(gpt2, tmp_path / "asof", index, store, links[:1], "--as-of", "2019")
    assert again.code == 0, again.stderr
    assert log_of(tmp_path / "asof" / "out")[page]["capture"] == "20190301120000"
    # and extract reads what was written, joined with the link's karma
    extracted = gpt2("corpus", "extract", *map(str, (tmp_path / "out").glob("*.warc.gz")),
                     "-j", "1")  # fmt: skip
    assert extracted.code == 0, extracted.stderr
    assert b"2017 story text" in extracted.stdout


def test_wayback_style_answers_are_read_too(gpt2, tmp_path, new_site):
    page = "http://blog.example.com/post"
    warc, rows = build_archive([(page, "20161201000000", 200, HTML.format("post"))])
    index, store = archive_sites(new_site, warc, rows, style="wayback")
    result = run_archive(gpt2, tmp_path, index, store, [{"url": page, "date": "2017-01-01"}])
    assert result.code == 0, result.stderr
    assert log_of(tmp_path / "out")[page]["capture"] == "20161201000000"


def test_garbage_from_the_index_and_wrong_ranges_are_one_line_each(gpt2, tmp_path, new_site):
    good, garbage, wrong = ("http://a.example.com/good", "http://b.example.com/garbage",
                            "http://c.example.com/wrong")  # fmt: skip
    warc, rows = build_archive(
        [(good, "20170101000000", 200, HTML.format("good")),
         (wrong, "20170101000000", 200, HTML.format("wrong"))]
    )  # fmt: skip
    rows[1]["digest"] = rows[0]["digest"]  # the index says another payload than the range holds
    index, store = archive_sites(new_site, warc, rows, {garbage: b"<html>Service Unavailable"})
    links = [{"url": url, "date": "2017-01-01T00:00:00Z"} for url in (good, garbage, wrong)]
    result = run_archive(gpt2, tmp_path, index, store, links)
    assert result.code == 0, result.stderr
    log = log_of(tmp_path / "out")
    assert log[good]["status"] == 200
    assert log[garbage]["error"] == "cdx_garbage" and log[wrong]["error"] == "bad_range"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2 and "digest" in " ".join(warnings)
    assert list(out_records(tmp_path / "out")) == [good]


def test_a_server_that_ignores_ranges_is_refused(gpt2, tmp_path, new_site):
    page = "http://x.example.com/"
    warc, rows = build_archive([(page, "20170101000000", 200, HTML.format("x"))])

    def no_ranges(h):
        send(h, 200, warc, "application/octet-stream")

    index, _ = archive_sites(new_site, warc, rows)
    store = new_site({"/data/crawl/part-0.warc.gz": no_ranges})
    result = run_archive(gpt2, tmp_path, index, store, [{"url": page}])
    assert result.code == 0
    assert log_of(tmp_path / "out")[page]["error"] == "bad_range"
