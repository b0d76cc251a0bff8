"""`gpt2 corpus fetch` against real servers on loopback addresses: what lands in the WARC
files and the log, robots.txt, redirects, retries, limits and encodings."""

from __future__ import annotations

import io
import json
from pathlib import Path

from _loopback_web import (
    Silent,
    brotli_page,
    chunked,
    delayed,
    gzipped,
    page,
    redirect,
    reset,
    slow,
    status,
)

FAST = ["--allow-private", "--delay", "0", "--retry-wait", "0.05", "--connect-timeout", "1",
        "--read-timeout", "1", "--timeout", "3"]  # fmt: skip
HTML = "<html><head><title>{0}</title></head><body><p>{0}</p></body></html>"


def fetch(gpt2, tmp_path: Path, urls: list[str], *extra: str, out: str = "out"):
    links = tmp_path / "links.txt"
    links.write_text("".join(url + "\n" for url in urls))
    return gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / out), *FAST, *extra)


def log_lines(directory: Path, name: str = "fetch.jsonl") -> dict[str, dict]:
    lines = [json.loads(line) for line in (directory / name).read_text().splitlines()]
    by_url = {line["url"]: line for line in lines}
    assert len(by_url) == len(lines), "a URL logged twice"
    return by_url


def records(directory: Path) -> list:
    """(type, target URI, headers, http status, raw payload) of every record, in order."""
    from warcio.archiveiterator import ArchiveIterator

    found = []
    for path in sorted(directory.glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                response = record.rec_type == "response" and record.http_headers
                status = int(record.http_headers.get_statuscode()) if response else None
                found.append(
                    (
                        record.rec_type,
                        record.rec_headers.get_header("WARC-Target-URI"),
                        record.rec_headers,
                        status,
                        record.raw_stream.read(),
                    )
                )
    return found


def test_pages_become_request_and_response_records_with_a_log_line_each(gpt2, tmp_path, new_site):
    one = new_site({"/a": page(HTML.format("alpha")), "/b": page(HTML.format("beta"))})
    two = new_site({"/c": page(HTML.format("gamma")), "/missing": status(404)})
    urls = [one.url("/a"), one.url("/b"), two.url("/c"), two.url("/missing"), one.url("/a")]
    result = fetch(gpt2, tmp_path, urls)
    assert result.code == 0, result.stderr
    assert "gpt2 corpus fetch: 5 in, 3 out" in result.stderr
    log = log_lines(tmp_path / "out")
    assert set(log) == set(urls)  # the duplicate merged
    assert log[one.url("/a")]["status"] == 200 and log[one.url("/a")]["error"] is None
    assert log[two.url("/missing")]["status"] == 404
    assert one.hits["/a"] == 1 and one.hits["/robots.txt"] == 1 and two.hits["/robots.txt"] == 1
    found = records(tmp_path / "out")
    responses = {uri: (headers, body) for kind, uri, headers, _, body in found
                 if kind == "response"}  # fmt: skip
    requests = [uri for kind, uri, *_ in found if kind == "request"]
    assert sorted(requests) == sorted(set(urls))
    headers, body = responses[one.url("/a")]
    assert body == HTML.format("alpha").encode()
    assert headers.get_header("WARC-IP-Address") == "127.0.0.2"
    assert headers.get_header("WARC-Payload-Digest").startswith("sha1:")
    assert headers.get_header("WARC-Date")
    entry = log[one.url("/a")]
    with open(tmp_path / "out" / entry["warc"], "rb") as handle:
        handle.seek(entry["offset"])
        from warcio.archiveiterator import ArchiveIterator

        first = next(iter(ArchiveIterator(io.BytesIO(handle.read(entry["length"])))))
        assert first.rec_headers.get_header("WARC-Target-URI") == one.url("/a")
    # what extract reads back
    extracted = gpt2(
        "corpus", "extract", *map(str, (tmp_path / "out").glob("*.warc.gz")), "-j", "1"
    )
    assert extracted.code == 0, extracted.stderr
    assert extracted.stderr.count("\n") >= 1


def test_robots_rules_wildcards_and_crawl_delay_are_obeyed(gpt2, tmp_path, new_site):
    robots = (
        "User-agent: *\nDisallow: /private\nDisallow: /*.pdf$\nCrawl-delay: 0.3\n\n"
        "User-agent: otherbot\nDisallow: /\n"
    )
    site = new_site({"/robots.txt": page(robots, "text/plain"), "*": page(HTML.format("x"))})
    urls = [site.url(p) for p in ("/open", "/private/x", "/doc.pdf", "/doc.pdf.html", "/two")]
    result = fetch(gpt2, tmp_path, urls)
    assert result.code == 0, result.stderr
    log = log_lines(tmp_path / "out")
    assert log[site.url("/private/x")]["error"] == "robots_disallowed"
    assert log[site.url("/doc.pdf")]["error"] == "robots_disallowed"
    assert log[site.url("/doc.pdf.html")]["status"] == 200
    assert "/private/x" not in site.hits and "/doc.pdf" not in site.hits
    assert site.hits["/robots.txt"] == 1
    starts = sorted(t for path, t in site.times if path != "/robots.txt")
    assert all(b - a >= 0.25 for a, b in zip(starts, starts[1:])), starts  # Crawl-delay 0.3
    # --ignore-robots fetches them all and never asks for robots.txt
    again = fetch(gpt2, tmp_path, urls, "--ignore-robots", out="ignoring")
    assert again.code == 0 and site.hits["/private/x"] == 1 and site.hits["/robots.txt"] == 1


def test_user_agent_is_sent_and_matched_against_robots(gpt2, tmp_path, new_site):
    robots = "User-agent: mybot\nDisallow: /\n"
    site = new_site({"/robots.txt": page(robots, "text/plain"), "/p": page("x")})
    result = fetch(gpt2, tmp_path, [site.url("/p")], "--user-agent", "mybot/1.0")
    assert result.code == 0
    assert log_lines(tmp_path / "out")[site.url("/p")]["error"] == "robots_disallowed"
    assert site.headers[0]["User-Agent"] == "mybot/1.0"
    default = fetch(gpt2, tmp_path, [site.url("/p")], out="default")
    assert default.code == 0 and site.headers[-1]["User-Agent"].startswith("gpt2cli/")


def test_redirect_hops_are_records_of_their_own_and_loops_stop(gpt2, tmp_path, new_site):
    other = new_site({"/final": page(HTML.format("final"))})
    site = new_site(
        {
            "/start": redirect("/middle"),
            "/middle": redirect(other.url("/final"), 302),
            "/loop-a": redirect("/loop-b"),
            "/loop-b": redirect("/loop-a"),
        }
    )
    result = fetch(gpt2, tmp_path, [site.url("/start"), site.url("/loop-a")])
    assert result.code == 0, result.stderr
    log = log_lines(tmp_path / "out")
    assert log[site.url("/start")]["final_url"] == other.url("/final")
    assert log[site.url("/start")]["status"] == 200
    assert log[site.url("/loop-a")]["error"] == "redirect_loop"
    chain = [(uri, code) for kind, uri, _, code, _ in records(tmp_path / "out")
             if kind == "response" and "loop" not in uri]  # fmt: skip
    assert chain == [(site.url("/start"), 301), (site.url("/middle"), 302),
                     (other.url("/final"), 200)]  # fmt: skip
    # extract --links follows the hops back: the final page gets the link's karma
    link = {"url": site.url("/start"), "domain": site.address, "karma": 7, "submissions": 1,
            "date": "2017-01-01T00:00:00Z"}  # fmt: skip
    (tmp_path / "links.jsonl").write_text(json.dumps(link) + "\n")
    warcs = [str(path) for path in (tmp_path / "out").glob("*.warc.gz")]
    pages = gpt2("corpus", "extract", *warcs, "--links", str(tmp_path / "links.jsonl"), "-j", "1")
    assert pages.code == 0, pages.stderr
    (joined,) = [json.loads(line) for line in pages.stdout.splitlines()]
    assert joined["url"] == site.url("/start") and joined["karma"] == 7


def test_retries_honour_retry_after_and_give_up_on_permanent_errors(gpt2, tmp_path, new_site):
    calls = {"n": 0}

    def flaky(h):
        calls["n"] += 1
        if calls["n"] < 3:
            status(503, {"Retry-After": "0"})(h)
        else:
            page(HTML.format("back"))(h)

    site = new_site(
        {
            "/flaky": flaky,
            "/busy": status(429, {"Retry-After": "0"}),
            "/broken": status(500),
            "/reset": reset,
        }
    )
    urls = [site.url(p) for p in ("/flaky", "/busy", "/broken", "/reset")]
    result = fetch(gpt2, tmp_path, urls, "--retries", "2", "--ignore-robots")
    assert result.code == 0, result.stderr
    log = log_lines(tmp_path / "out")
    assert log[site.url("/flaky")]["status"] == 200 and log[site.url("/flaky")]["attempts"] == 3
    assert log[site.url("/busy")]["error"] == "http_429" and site.hits["/busy"] == 3
    assert log[site.url("/broken")]["status"] == 500 and site.hits["/broken"] == 1
    assert log[site.url("/reset")]["error"] in ("reset", "connect_error")
    # aiohttp itself retries once a request whose reused connection was reset
    assert log[site.url("/reset")]["attempts"] == 3 and 3 <= site.hits["/reset"] <= 6


def test_encodings_chunking_and_size_limits(gpt2, tmp_path, new_site):
    text = HTML.format("compressed " * 50)
    big = b"<html><body>" + b"x" * 50_000 + b"</body></html>"
    site = new_site(
        {
            "/gzip": gzipped(text),
            "/br": brotli_page(text),
            "/chunked": chunked([b"<html><body>", b"chunked" * 100, b"</body></html>"]),
            "/big": page(big),
            "/pdf": page(b"%PDF-1.4 " * 1000, "application/pdf"),
        }
    )
    urls = [site.url(p) for p in ("/gzip", "/br", "/chunked", "/big", "/pdf")]
    result = fetch(gpt2, tmp_path, urls, "--max-bytes", "10000", "--html-only", "--ignore-robots")
    assert result.code == 0, result.stderr
    log = log_lines(tmp_path / "out")
    assert (
        log[site.url("/big")]["bytes"] == 10_000 and log[site.url("/big")]["truncated"] == "length"
    )
    assert log[site.url("/pdf")]["bytes"] == 0
    found = {uri: (headers, code, body) for kind, uri, headers, code, body in
             records(tmp_path / "out") if kind == "response"}  # fmt: skip
    assert found[site.url("/big")][0].get_header("WARC-Truncated") == "length"
    assert found[site.url("/pdf")][0].get_header("WARC-Truncated") == "unspecified"
    assert found[site.url("/chunked")][2] == b"<html><body>" + b"chunked" * 100 + b"</body></html>"
    import gzip as gz

    assert gz.decompress(found[site.url("/gzip")][2]).decode() == text  # stored as sent
    pages = gpt2("corpus", "extract", *map(str, (tmp_path / "out").glob("*.warc.gz")), "-j", "1")
    assert pages.code == 0, pages.stderr
    texts = {
        json.loads(line)["url"]: json.loads(line)["text"] for line in pages.stdout.splitlines()
    }
    assert "compressed compressed" in texts[site.url("/gzip")]
    assert "compressed compressed" in texts[site.url("/br")]


def test_a_dead_or_slow_host_never_stalls_the_others(gpt2, tmp_path, new_site):
    silent = Silent("127.0.0.9")
    try:
        slow_site = new_site({"/slow": slow(b"<html>" + b"s" * 400 + b"</html>", 0.6)})
        fast = new_site({f"/{i}": page(HTML.format(i)) for i in range(8)})
        urls = [silent.url(f"/{i}") for i in range(6)] + [slow_site.url("/slow")]
        urls += [fast.url(f"/{i}") for i in range(8)]
        result = fetch(gpt2, tmp_path, urls, "--retries", "1", "--ignore-robots",
                       "--read-timeout", "0.4")  # fmt: skip
        assert result.code == 0, result.stderr
        log = log_lines(tmp_path / "out")
        assert all(log[fast.url(f"/{i}")]["status"] == 200 for i in range(8))
        assert log[slow_site.url("/slow")]["error"] == "timeout"
        errors = [log[silent.url(f"/{i}")]["error"] for i in range(6)]
        assert errors.count("timeout") == 3 and errors.count("host_unreachable") == 3
    finally:
        silent.close()


def test_per_host_and_delay_pace_one_host(gpt2, tmp_path, new_site):
    import threading

    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def counted(h):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        delayed(page("x"), 0.15)(h)
        with lock:
            state["now"] -= 1

    site = new_site({f"/{i}": counted for i in range(6)})
    urls = [site.url(f"/{i}") for i in range(6)]
    result = fetch(gpt2, tmp_path, urls, "--ignore-robots", "--delay", "0.2")
    assert result.code == 0, result.stderr
    starts = sorted(t for _, t in site.times)
    assert all(b - a >= 0.15 for a, b in zip(starts, starts[1:])), starts
    assert state["most"] == 1
    two = fetch(gpt2, tmp_path, urls, "--ignore-robots", "--per-host", "2", out="two")
    assert two.code == 0, two.stderr
    assert state["most"] == 2


def test_bad_input_lines_are_counted_and_skipped(gpt2, tmp_path, new_site):
    site = new_site({"/ok": page("x")})
    links = tmp_path / "links.jsonl"
    links.write_text(
        json.dumps({"url": site.url("/ok"), "date": "2017-01-01T00:00:00Z", "karma": 5}) + "\n"
        + "{not json\n" + "ftp://example.com/file\n" + json.dumps({"karma": 1}) + "\n"
    )  # fmt: skip
    result = gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / "out"), *FAST)
    assert result.code == 0, result.stderr
    assert "malformed JSON" in result.stderr and "not an http(s) URL" in result.stderr
    assert list(log_lines(tmp_path / "out")) == [site.url("/ok")]
    missing = gpt2("corpus", "fetch", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "o2"))
    assert missing.code == 1 and missing.stderr.count("\n") == 1 and "nope.txt" in missing.stderr


def test_a_long_input_is_sorted_in_spilled_runs_and_duplicates_merge(gpt2, tmp_path, new_site):
    site = new_site({"*": page("x")})
    urls = [site.url(f"/{n}") for n in range(20)]
    links = tmp_path / "links.jsonl"
    lines = [json.dumps({"url": url, "date": f"2017-0{1 + n % 3}-01T00:00:00Z"})
             for n, url in enumerate(urls * 3)]  # fmt: skip
    links.write_text("\n".join(reversed(lines)) + "\n")
    stats = tmp_path / "stats.json"
    result = gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / "out"), *FAST,
                  "--ignore-robots", "--max-urls", "7", "--stats", str(stats))  # fmt: skip
    assert result.code == 0, result.stderr
    report = json.loads(stats.read_text())
    assert report["spilled_runs"] >= 8 and report["duplicates"] == 40
    assert report["documents_in"] == 60 and report["documents_out"] == 20
    assert sorted(log_lines(tmp_path / "out")) == sorted(urls)
    assert all(count == 1 for count in site.hits.values())


def test_robots_txt_that_cannot_be_read_means_no_fetch(gpt2, tmp_path, new_site):
    site = new_site({"/robots.txt": status(500), "/page": page("x")})
    result = fetch(gpt2, tmp_path, [site.url("/page")], "--retries", "1")
    assert result.code == 0, result.stderr
    entry = log_lines(tmp_path / "out")[site.url("/page")]
    assert entry["error"] == "robots_unavailable" and entry["attempts"] == 2
    assert "/page" not in site.hits and site.hits["/robots.txt"] == 2


def test_usage_errors_are_one_line(gpt2, tmp_path):
    links = tmp_path / "links.txt"
    links.write_text("http://example.com/\n")
    out = str(tmp_path / "out")
    for extra, words in [
        (["--warc-size", "lots"], "not a size"),
        (["--per-host", "0"], "--per-host"),
        (["--from-archive", "index.example"], "not an http(s) URL"),
        (["--as-of", "2017"], "needs --from-archive"),
        (["--allow-address", "intranet"], "not an IP address"),
        (["--part", "1"], "I/N"),
    ]:
        result = gpt2("corpus", "fetch", str(links), "-o", out, *extra)
        assert result.code == 2 and result.stderr.count("\n") == 1, (extra, result.stderr)
        assert words in result.stderr, (extra, result.stderr)
    assert not (tmp_path / "out").exists()


def test_idle_hosts_are_forgotten_and_met_again(gpt2, tmp_path, new_site, monkeypatch):
    from gpt2cli.corpus.fetch import frontier

    monkeypatch.setattr(frontier, "SWEEP_EVERY", 2)  # sweep all the time
    sites = [new_site({"*": delayed(page("x"), 0.01)}) for _ in range(4)]
    urls = [site.url(f"/{n}") for site in sites for n in range(6)]
    result = fetch(gpt2, tmp_path, urls, "--ignore-robots")
    assert result.code == 0, result.stderr
    assert sorted(log_lines(tmp_path / "out")) == sorted(urls)


def test_links_from_stdin(gpt2, tmp_path, new_site):
    site = new_site({"/s": page("x")})
    result = gpt2("corpus", "fetch", "-", "-o", str(tmp_path / "out"), *FAST,
                  stdin=(site.url("/s") + "\n").encode())  # fmt: skip
    assert result.code == 0, result.stderr
    assert log_lines(tmp_path / "out")[site.url("/s")]["status"] == 200
