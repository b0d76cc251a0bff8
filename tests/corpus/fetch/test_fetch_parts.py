"""The small pieces of the fetch core: CDX answers and dates, sizes, parts."""

from __future__ import annotations

import pytest

from gpt2cli.corpus.fetch.archive import closest, parse_index, timestamp14
from gpt2cli.corpus.fetch.client import FetchFailed, retry_after
from gpt2cli.corpus.fetch.inputs import part_of


def test_dates_become_cdx_timestamps():
    assert timestamp14("2017-06-01T12:30:00Z") == "20170601123000"
    assert timestamp14("2017") == "20170101000000"
    assert timestamp14("201706") == "20170601000000"
    assert timestamp14(None) is None and timestamp14("June") is None


def test_the_closest_status_200_capture_is_chosen_whatever_the_order():
    rows = [
        {"timestamp": "20190101000000", "status": "200", "filename": "c", "offset": 5,
         "length": 9},
        {"timestamp": "20170601000000", "status": "301", "filename": "b", "offset": 0,
         "length": 9},
        {"timestamp": "20170101000000", "status": "200", "filename": "a", "offset": 0,
         "length": 9},
    ]  # fmt: skip
    assert closest(rows, "20170602000000").filename == "a"
    assert closest(rows, "20181201000000").filename == "c"
    assert closest([rows[1]], "20170602000000") is None
    revisit = {**rows[2], "timestamp": "20170602000000", "mime": "warc/revisit", "filename": "r"}
    assert closest([*rows, revisit], "20170602000000").filename == "a"


def test_index_answers_in_both_shapes_and_garbage():
    lines = b'{"timestamp": "2017", "status": "200"}\n{"timestamp": "2018", "status": "200"}\n'
    assert [row["timestamp"] for row in parse_index(lines)] == ["2017", "2018"]
    table = b'[["timestamp","statuscode","original"],["2017","200","http://a/"]]'
    assert parse_index(table) == [{"timestamp": "2017", "status": "200", "url": "http://a/"}]
    assert parse_index(b"") == [] and parse_index(b"[]") == []
    with pytest.raises(FetchFailed) as garbage:
        parse_index(b"<html>503 Service Unavailable</html>")
    assert garbage.value.error_class == "cdx_garbage"
    with pytest.raises(FetchFailed):
        closest([{"timestamp": "2017", "status": "200", "offset": "x"}], None)


def test_retry_after_in_seconds_or_as_a_date():
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after("soon") is None and retry_after(None) is None


def test_parts_are_stable_and_spread():
    assert part_of("example.com", 16) == part_of("example.com", 16)
    counts = [0] * 4
    for n in range(400):
        counts[part_of(f"host{n}.example.com", 4)] += 1
    assert min(counts) > 60
