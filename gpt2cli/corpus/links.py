"""Outbound links of Reddit submissions (Pushshift dumps), aggregated by normalised URL.

A submission is kept when it links outside Reddit, is not a self post, has a
``score`` of at least ``min_karma`` and a domain that is not excluded. Each
normalised URL becomes one record::

    {"url": ..., "domain": ..., "karma": <highest score>, "submissions": <count>,
     "date": <first created_utc, ISO 8601 UTC>}

Output is sorted by URL. Memory: the URLs of a run are held in a dict (about
250 bytes each); past ``max_urls`` of them the dict is sorted and spilled to a
temporary file, and the spilled runs are merged at the end, so memory stays
bounded whatever the input size. Link files (this module's output) merge the
same way: sorted inputs, one streaming k-way merge (``merge_link_files``), so parts
made on many machines (one per monthly dump) combine into the result of one run.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

import numpy as np

from gpt2cli.corpus.jsonl import Record, dumps, read_records
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.urls import domain_of, matches_domain, normalize_with_domain
from gpt2cli.errors import Gpt2Error
from gpt2cli.text.compressed import open_input

REDDIT_DOMAINS = frozenset({"reddit.com", "redd.it", "redditmedia.com", "reddituploads.com"})
DEFAULT_MAX_URLS = 4_000_000

# A URL's aggregate: [karma, submissions, first created_utc (or None)].
Aggregate = list


@dataclass
class LinkOptions:
    min_karma: int = 3
    excluded: set[str] = field(default_factory=set)
    exclude_over_18: bool = False
    max_urls: int = DEFAULT_MAX_URLS
    temp_dir: str | None = None


def _utc(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def iso_date(utc: int | None) -> str | None:
    if utc is None:
        return None
    return datetime.fromtimestamp(utc, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(date: Any) -> int | None:
    if not isinstance(date, str):
        return None
    try:
        return int(
            datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        )
    except ValueError:
        return None


def _combine(into: Aggregate, karma: int, submissions: int, utc: int | None) -> None:
    into[0] = max(into[0], karma)
    into[1] += submissions
    if utc is not None and (into[2] is None or utc < into[2]):
        into[2] = utc


def _score(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _submission(
    record: Record, options: LinkOptions, stats: StageStats
) -> tuple[str, int, int | None] | None:
    """(normalised URL, score, created_utc) of a kept submission; None when dropped."""
    data = record.data
    where = f"{record.source}: line {record.line}"
    url = data.get("url")
    if not isinstance(url, str) or not url.strip():
        stats.bad("no_url", f"{where}: no 'url'")
        return None
    score = _score(data.get("score"))
    if score is None:
        stats.bad("no_score", f"{where}: no integer 'score'")
        return None
    if data.get("is_self") is True:
        stats.drop("self_post")
        return None
    normalized, domain = normalize_with_domain(url)
    if not domain:
        stats.drop("not_http_url")
        return None
    if matches_domain(domain, REDDIT_DOMAINS):
        stats.drop("reddit_link")
        return None
    if options.exclude_over_18 and data.get("over_18") is True:
        stats.drop("over_18")
        return None
    if score < options.min_karma:
        stats.drop("low_karma")
        return None
    if options.excluded and matches_domain(domain, options.excluded):
        stats.drop("excluded_domain")
        return None
    return normalized, score, _utc(data.get("created_utc"))


def _link_line(url: str, value: Aggregate) -> bytes:
    return dumps(
        {
            "url": url,
            "domain": domain_of(url),
            "karma": value[0],
            "submissions": value[1],
            "date": iso_date(value[2]),
        }
    )


def _spill(table: dict[str, Aggregate], directory: str, number: int) -> str:
    path = os.path.join(directory, f"run-{number:05d}.jsonl")
    with open(path, "wb") as handle:
        for url in sorted(table):
            handle.write(_link_line(url, table[url]))
    return path


def _read_links(handle: IO[bytes], source: str) -> Iterator[tuple[str, Aggregate]]:
    previous = ""
    for number, raw in enumerate(handle, 1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            url, karma, submissions = data["url"], int(data["karma"]), int(data["submissions"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            raise Gpt2Error(
                f"{source}: line {number}: not a link record (url, karma, submissions)"
            ) from None
        if url < previous:
            raise Gpt2Error(
                f"{source}: line {number}: link files must be sorted by url",
                "merge the output of `gpt2 corpus links`, which is sorted",
            )
        previous = url
        yield url, [karma, submissions, _parse_iso(data.get("date"))]


def _merged(streams: list[Iterator[tuple[str, Aggregate]]]) -> Iterator[tuple[str, Aggregate]]:
    current: str | None = None
    total: Aggregate = []
    for url, value in heapq.merge(*streams, key=lambda item: item[0]):
        if url != current:
            if current is not None:
                yield current, total
            current, total = url, [value[0], 0, value[2]]
        _combine(total, *value)
    if current is not None:
        yield current, total


def _write_merged(
    first: list[Iterator[tuple[str, Aggregate]]],
    paths: list[str],
    stats: StageStats,
    out: IO[bytes],
    count_in: bool,
) -> None:
    """The streams ``first`` and the sorted link files ``paths``, merged, written to ``out``."""
    handles = [open_input(path) for path in paths]
    try:
        streams = first + [_read_links(h, path) for h, path in zip(handles, paths)]
        if count_in:
            streams = [_counted(stream, stats) for stream in streams]
        for url, value in _merged(streams):
            out.write(_link_line(url, value))
            stats.count_out()
    finally:
        for handle in handles:
            handle.close()


def collect_links(
    inputs: Iterable[str],
    options: LinkOptions,
    stats: StageStats,
    out: IO[bytes],
    progress: Callable[[], None] | None = None,
) -> None:
    """Read submission dumps, write one sorted link record per normalised URL to ``out``.

    ``progress`` is called every 65,536 records."""
    table: dict[str, Aggregate] = {}
    directory = tempfile.mkdtemp(prefix="gpt2-links-", dir=options.temp_dir)
    runs: list[str] = []
    try:
        for number, record in enumerate(read_records(inputs, None, stats), 1):
            if progress and not number & 0xFFFF:
                progress()
            kept = _submission(record, options, stats)
            if kept is None:
                continue
            url, score, utc = kept
            value = table.get(url)
            if value is None:
                table[url] = [score, 1, utc]
                if len(table) >= options.max_urls:
                    runs.append(_spill(table, directory, len(runs)))
                    table.clear()
            else:
                _combine(value, score, 1, utc)
        stats.extra["spilled_runs"] = len(runs)
        in_memory = ((url, table[url]) for url in sorted(table))
        _write_merged([in_memory], runs, stats, out, count_in=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stats.extra["submissions_kept"] = stats.documents_in - sum(stats.dropped.values())


def merge_link_files(inputs: list[str], stats: StageStats, out: IO[bytes]) -> None:
    """Merge sorted link files (outputs of ``collect_links``) into one, in bounded memory."""
    _write_merged([], inputs, stats, out, count_in=True)


def _counted(
    stream: Iterator[tuple[str, Aggregate]], stats: StageStats
) -> Iterator[tuple[str, Aggregate]]:
    for item in stream:
        stats.count_in()
        yield item


class LinkTable:
    """A link file held for ``extract --links``: the 64-bit blake2b keys of its URLs, sorted,
    beside karma, submissions and first date — 32 bytes a URL where a dict of the strings took
    about 320. Two linked URLs whose keys collide (odds ~n²/2⁶⁵: 3e-4 for 10⁸ URLs) keep the
    first; a page wrongly taken as linked has odds n/2⁶⁴."""

    NO_DATE = np.iinfo(np.int64).min

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._values = values[order]  # (n, 3) int64: karma, submissions, created_utc

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, url: str) -> tuple[int, int, str | None] | None:
        """(karma, submissions, ISO date) of a normalised URL, or None if it is not linked."""
        key = np.uint64(url_key(url))
        index = int(np.searchsorted(self._keys, key))
        if index == len(self._keys) or self._keys[index] != key:
            return None
        karma, submissions, utc = (int(v) for v in self._values[index])
        return karma, submissions, iso_date(None if utc == self.NO_DATE else utc)


def url_key(url: str) -> int:
    return int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "little")


def load_links(path: str) -> LinkTable:
    """A link file (sorted, as ``collect_links`` writes it) as a :class:`LinkTable`."""
    keys = array("Q")
    values = array("q")
    handle = open_input(path)
    try:
        for url, (karma, submissions, utc) in _read_links(handle, path):
            keys.append(url_key(url))
            values.extend((karma, submissions, LinkTable.NO_DATE if utc is None else utc))
    finally:
        handle.close()
    return LinkTable(
        np.frombuffer(keys, dtype=np.uint64), np.frombuffer(values, dtype=np.int64).reshape(-1, 3)
    )
