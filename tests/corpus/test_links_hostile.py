"""Hostile JSON Lines for `gpt2 corpus links` (submission dumps, link files) and for the link
lists of `corpus extract --links`: numbers out of range (inf, nan, 1e400, 2⁶³, 10²³, 5,000
digits), lone surrogates, URLs that do not parse or hide their host, deep nesting, values of
the wrong type. Each is a counted bad record or one error line, never a traceback; and the
one rule for a URL seen twice (SURT key, highest karma, summed submissions, first date)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
GOOD = {"url": "https://good.example.com/a", "score": 10, "created_utc": 1546300800}
NUMBERS = ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "1e20", "-1e13", "1.5", "true",
           str(2**63), str(-(2**63) - 1), str(10**23), "9" * 5000, '"x"', "[]", "{}",
           "null"]  # fmt: skip
URLS = [
    '"http://example.com/\\ud800"',  # a lone surrogate: valid JSON, not text
    '"http://example.com:abc/x"',
    '"http://exa mple.com/"',
    '"http://[::1/x"',
    '"http://x.org:99999/"',
    '"http://"',
    "5",
    "[]",
    "null",
    '"' + "\\" + 'udfff"',
]


STATS = Path("links-stats.json")


def links(gpt2, data: bytes, *args: str):
    run = gpt2("corpus", "links", "--stats", STATS, *args, "-", stdin=data)
    assert "Traceback" not in run.stderr
    return run


def lines(run) -> list[dict]:
    return [json.loads(line) for line in run.stdout.splitlines()]


def stats(run) -> dict:
    return json.loads(STATS.read_text())


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)


@SETTINGS
@given(field=st.sampled_from(["score", "created_utc"]), value=st.sampled_from(NUMBERS))
def test_numbers_out_of_range_are_bad_records(gpt2, field: str, value: str) -> None:
    hostile = json.dumps({**GOOD, "url": "https://other.example.com/"})[:-1]
    hostile += f', "{field}": {value}}}'
    data = (json.dumps(GOOD) + "\n" + hostile + "\n").encode()
    run = links(gpt2, data)
    assert run.code == 0, run.stderr
    kept = [r["url"] for r in lines(run)]
    assert kept[0] == "https://good.example.com/a"
    counters = stats(run)
    if len(kept) == 1:  # the hostile line was refused (or a low score), and counted
        assert counters["bad_records"] == 1 or counters["dropped"] == {"low_karma": 1}
    else:  # what was kept is in range
        record = lines(run)[1]
        assert -(2**63) <= record["karma"] < 2**63
        assert record["date"] is None or record["date"].startswith(("19", "20"))


@SETTINGS
@given(url=st.sampled_from(URLS))
def test_urls_that_are_not_urls_are_bad_records(gpt2, url: str) -> None:
    data = (json.dumps(GOOD) + "\n" + '{"url": ' + url + ', "score": 9}\n').encode()
    run = links(gpt2, data)
    assert run.code == 0, run.stderr
    assert [r["url"] for r in lines(run)] == ["https://good.example.com/a"]
    assert stats(run)["bad_records"] == 1 or stats(run)["dropped"].get("not_http_url") == 1


@SETTINGS
@given(text=st.text(min_size=1, max_size=40))
def test_any_text_as_url_never_fails_the_run(gpt2, text: str) -> None:
    data = (json.dumps({"url": text, "score": 9}) + "\n" + json.dumps(GOOD) + "\n").encode()
    run = links(gpt2, data)
    assert run.code == 0, run.stderr
    assert "https://good.example.com/a" in [r["url"] for r in lines(run)]


def test_hidden_hosts_and_deep_nesting(gpt2, tmp_path: Path) -> None:
    rows = [
        '{"url": "http://a@b@en.wikipedia.org/wiki/X", "score": 50}',  # host: en.wikipedia.org
        '{"url": "http://user:pw@www.reddit.com@evil.example.net/", "score": 50}',
        "[" * 100_000 + "]" * 100_000,
        '{"url": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps(GOOD),
    ]
    run = links(gpt2, "\n".join(rows).encode() + b"\n", "--exclude-domain", "wikipedia.org")
    assert run.code == 0, run.stderr
    assert [r["url"] for r in lines(run)] == [
        "https://good.example.com/a",
        "http://evil.example.net",
    ]
    counters = stats(run)
    assert counters["dropped"]["excluded_domain"] == 1
    assert counters["dropped"]["malformed_json"] == 2
    assert "line 3: malformed JSON (nested too deeply)" in run.stderr


def test_a_number_of_5000_digits_is_a_bad_record(gpt2) -> None:
    data = b'{"url": "http://x.org/", "score": ' + b"9" * 5000 + b"}\n" + json.dumps(GOOD).encode()
    run = links(gpt2, data)
    assert run.code == 0 and [r["url"] for r in lines(run)] == ["https://good.example.com/a"]
    assert "line 1: malformed JSON (a number of over 4,300 digits)" in run.stderr


def test_domain_file_not_utf8_is_one_line(gpt2, tmp_path: Path) -> None:
    domains = tmp_path / "domains.txt"
    domains.write_bytes(b"example.org\n\xff\xfe\n")
    run = links(gpt2, json.dumps(GOOD).encode(), "--exclude-domain-file", str(domains))
    assert run.code == 1
    assert run.stderr.strip().splitlines()[-1] == (
        f"gpt2 corpus links: error: {domains}: line 2: not UTF-8 text "
        "(a domain file holds one domain a line, in UTF-8)"
    )


VARIANTS = [
    ("http://example.com/story", 5, 1546300900),
    ("https://example.com:443/story/", 12, 1546300800),
    ("http://www.example.com/story", 3, 1546300700),
    ("https://www.example.com/story?utm_source=x", 1, 1546300950),
]


def test_one_page_under_several_spellings_is_one_link(gpt2, tmp_path: Path) -> None:
    data = b"".join(
        json.dumps({"url": u, "score": s, "created_utc": t}).encode() + b"\n"
        for u, s, t in VARIANTS
    )
    run = links(gpt2, data, "--min-karma", "1")
    assert lines(run) == [
        {
            "url": "https://example.com/story",  # https, no www.: the variant fetched
            "domain": "example.com",
            "karma": 12,
            "submissions": 4,
            "date": "2018-12-31T23:58:20Z",  # the first
        }
    ]
    # Each spelling in a link file of its own: --merge gives the same record.
    parts = []
    for index, (url, score, utc) in enumerate(VARIANTS):
        part = tmp_path / f"part{index}.jsonl"
        one = gpt2("corpus", "links", "--min-karma", "1", "-o", part, "-", stdin=json.dumps(
            {"url": url, "score": score, "created_utc": utc}
        ).encode())  # fmt: skip
        assert one.code == 0
        parts.append(part)
    merged = gpt2("corpus", "links", "--merge", *parts)
    assert [json.loads(line) for line in merged.stdout.splitlines()] == lines(run)


def test_extract_link_lists_any_form_any_order_one_rule(gpt2, tmp_path: Path) -> None:
    from _web_files import write_crawl

    page = (
        "<html><head><title>Story</title></head><body><article><p>"
        + "The council met on Tuesday to hear the report on the river and the school. " * 8
        + "</p></article></body></html>"
    ).encode()
    crawl = tmp_path / "crawl.warc.gz"
    write_crawl(crawl, [("http://www.example.com/story", page), ("http://other.org/x", page)])
    listed = tmp_path / "list.jsonl"
    listed.write_text(
        "\n".join(
            [
                '{"url": "https://example.com/story", "karma": 4, "submissions": 1,'
                ' "date": "2019-01-02T00:00:00Z"}',
                "# a comment, then a plain URL and hostile lines",
                "http://example.com/story/",
                '{"url": "https://example.com/story", "karma": 9, "submissions": 2}',
                '{"url": 5}',
                '{"url": "http://x.org/", "karma": 1e400, "submissions": 1}',
                '{"url": "http://x.org/\\ud800"}',
                "[" * 100_000,
            ]
        )
    )
    run = gpt2("corpus", "extract", "-j", "1", "--links", listed, crawl)
    assert run.code == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["url"], r["karma"], r["submissions"], r["date"]) for r in records] == [
        ("http://www.example.com/story", 9, 3, "2019-01-02T00:00:00Z")
    ]
    assert run.stderr.count("not a link") == 4
