"""Outbound links of Reddit submissions (Pushshift dumps), aggregated by normalised URL.

A submission is kept when it links outside Reddit, is not a self post, has a
``score`` of at least ``min_karma`` and a domain that is not excluded. Each
normalised URL becomes one record::

    {"url": ..., "domain": ..., "karma": <highest score>, "submissions": <count>,
     "date": <first created_utc, ISO 8601 UTC>}

URLs are one when their SURT-style key is (``urls.surt_key``: scheme, default port and a
leading ``www.`` aside, as Common Crawl's index keys them), so ``http://`` and ``https://``
of one page are one record; its ``url`` is the variant ``urls.preferred_url`` keeps (https,
no ``www.``), the one to fetch. The same URL twice — in one dump, one link file or several —
is always merged the same way: the highest karma, the submissions summed, the first date.

Output is sorted by that key (so one host's pages are together). Memory: the URLs of a
run are held in a dict (about 250 bytes each); past ``max_urls`` of them the dict is
sorted and spilled to a temporary file, and the spilled runs are merged at the end, so memory stays
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
from pathlib import Path
from typing import IO, Any

import numpy as np

from gpt2cli import option_fields
from gpt2cli.corpus.common_options import (
    exclude_domain_file_option,
    exclude_domain_option,
    max_urls_option,
    temp_dir_option,
)
from gpt2cli.corpus.jsonl import Record, dumps, read_records
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.urls import (
    BadUrl,
    checked_url,
    domain_of,
    load_domains,
    matches_domain,
    preferred_url,
    surt_key,
)
from gpt2cli.errors import Gpt2Error
from gpt2cli.option_fields import option
from gpt2cli.text.compressed import open_input

REDDIT_DOMAINS = frozenset({"reddit.com", "redd.it", "redditmedia.com", "reddituploads.com"})
DEFAULT_MAX_URLS = 4_000_000

# A key's aggregate: [karma, submissions, first created_utc (or None), the URL kept].
Aggregate = list
INT64 = 1 << 63
MAX_UTC = 253402300799  # 9999-12-31T23:59:59Z: the last second ISO 8601 dates here can say


@dataclass
class LinkOptions:
    """The options of ``gpt2 corpus links``: each field is also its flag and --help text
    (:mod:`gpt2cli.option_fields`), in --help's order; checked when made."""

    min_karma: int = option(3, "Keep submissions with at least this score.")
    exclude_domain: list[str] = exclude_domain_option(
        "Drop this domain and its subdomains (repeatable), e.g. wikipedia.org."
    )
    exclude_domain_file: list[str] = exclude_domain_file_option()
    exclude_over_18: bool = option(False, "Drop submissions marked over_18 (NSFW).")
    merge: bool = option(
        False,
        "Inputs are link files (this command's output, which is sorted): merge "
        "them in one streaming pass, highest karma, summed submissions, first date.",
    )
    max_urls: int = max_urls_option(
        DEFAULT_MAX_URLS,
        "URLs held in memory (about 250 bytes each) before a sorted run is "
        "spilled to a temporary file; the runs are merged at the end.",
    )
    temp_dir: Path | None = temp_dir_option()

    excluded: set[str] = field(init=False, default_factory=set)  # the domains of both

    def __post_init__(self) -> None:
        option_fields.check(self)
        if not self.merge:  # merging link files excludes nothing
            self.excluded = load_domains(self.exclude_domain, self.exclude_domain_file)


class _BadValue(ValueError):
    pass


def _utc(value: Any) -> int | None:
    """A ``created_utc``: None when absent; a number of seconds from 1970 to 9999, else
    _BadValue (inf, nan, 1e20, a negative time, text that is no number)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _BadValue(repr(value))
    try:
        number = float(value) if isinstance(value, str) else value
        if not isinstance(number, int | float) or not 0 <= number <= MAX_UTC:
            raise _BadValue(repr(value)[:40])
        return int(number)
    except (TypeError, ValueError, OverflowError):
        raise _BadValue(repr(value)[:40]) from None


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
    except (ValueError, OverflowError):
        return None


def _combine(into: Aggregate, karma: int, submissions: int, utc: int | None, url: str) -> None:
    into[0] = max(into[0], karma)
    into[1] += submissions
    if utc is not None and (into[2] is None or utc < into[2]):
        into[2] = utc
    into[3] = preferred_url(into[3], url)


def _integer(value: Any) -> int | None:
    """An integer within ±2⁶³ (a JSON float that is one counts), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and -INT64 <= value < INT64:
        return value
    return None


def _submission(
    record: Record, options: LinkOptions, stats: StageStats
) -> tuple[str, str, int, int | None] | None:
    """(key, normalised URL, score, created_utc) of a kept submission; None when dropped."""
    data = record.data
    where = f"{record.source}: line {record.line}"
    url = data.get("url")
    if not isinstance(url, str) or not url.strip():
        stats.bad("no_url", f"{where}: no 'url'")
        return None
    score = _integer(data.get("score"))
    if score is None:
        stats.bad("no_score", f"{where}: no integer 'score' (within ±2⁶³)")
        return None
    if data.get("is_self") is True:
        stats.drop("self_post")
        return None
    try:
        normalized, domain = checked_url(url)
        utc = _utc(data.get("created_utc"))
    except BadUrl as error:
        stats.bad("bad_url", f"{where}: 'url' is not a URL ({error})")
        return None
    except _BadValue as error:
        stats.bad("bad_date", f"{where}: 'created_utc' {error} is not a time from 1970 to 9999")
        return None
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
    return surt_key(normalized), normalized, score, utc


def _link_line(value: Aggregate) -> bytes:
    url = value[3]
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
        for key in sorted(table):
            handle.write(_link_line(table[key]))
    return path


def _link_record(raw: bytes, optional: bool = False) -> tuple[str, Aggregate]:
    """(key, aggregate) of one link-file line; ValueError (with the reason) if it is none.
    ``optional``: karma and submissions may be absent (None in the aggregate)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    url = data.get("url")
    if not isinstance(url, str):
        raise ValueError("no string 'url'")
    try:
        normalized, _ = checked_url(url)
    except BadUrl as error:
        raise ValueError(f"'url' is not a URL ({error})") from None
    karma, submissions = _integer(data.get("karma")), _integer(data.get("submissions"))
    bad_karma = karma is None and not (optional and data.get("karma") is None)
    bad_count = (submissions is None or submissions < 0) and not (
        optional and data.get("submissions") is None
    )
    if bad_karma or bad_count:
        raise ValueError("'karma' and 'submissions' must be integers within ±2⁶³")
    return surt_key(normalized), [karma, submissions, _parse_iso(data.get("date")), normalized]


def _read_links(
    handle: IO[bytes], source: str, stats: StageStats
) -> Iterator[tuple[str, Aggregate]]:
    """The records of a link file, checked to be sorted by key; a line that is no link
    record is a bad record."""
    previous = ""
    for number, raw in enumerate(handle, 1):
        if not raw.strip():
            continue
        try:
            key, value = _link_record(raw)
        except ValueError as error:
            stats.bad("bad_link_record", f"{source}: line {number}: not a link record ({error})")
            continue
        if key < previous:
            raise Gpt2Error(
                f"{source}: line {number}: link files must be sorted as `gpt2 corpus links` "
                "writes them (by SURT key)",
                "merge the output of `gpt2 corpus links` of this version, which is sorted so",
            )
        previous = key
        yield key, value


def _merged(streams: list[Iterator[tuple[str, Aggregate]]]) -> Iterator[Aggregate]:
    current: str | None = None
    total: Aggregate = []
    for key, value in heapq.merge(*streams, key=lambda item: item[0]):
        if key != current:
            if current is not None:
                yield total
            current, total = key, [value[0], 0, value[2], value[3]]
        _combine(total, *value)
    if current is not None:
        yield total


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
        streams = first + [_read_links(h, path, stats) for h, path in zip(handles, paths)]
        if count_in:
            streams = [_counted(stream, stats) for stream in streams]
        for value in _merged(streams):
            out.write(_link_line(value))
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
            key, url, score, utc = kept
            value = table.get(key)
            if value is None:
                table[key] = [score, 1, utc, url]
                if len(table) >= options.max_urls:
                    runs.append(_spill(table, directory, len(runs)))
                    table.clear()
            else:
                _combine(value, score, 1, utc, url)
        stats.extra["spilled_runs"] = len(runs)
        in_memory = ((key, table[key]) for key in sorted(table))
        _write_merged([in_memory], runs, stats, out, count_in=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stats.extra["submissions_kept"] = stats.documents_in - sum(stats.dropped.values())


def write_links(
    inputs: list[str],
    options: LinkOptions,
    stats: StageStats,
    out: IO[bytes],
    progress: Callable[[], None] | None = None,
) -> None:
    """``gpt2 corpus links``: the links of submission dumps, or with ``--merge`` the merge of
    link files."""
    if options.merge:
        merge_link_files(inputs, stats, out)
    else:
        collect_links(inputs, options, stats, out, progress)


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
    """A link list held for ``extract --links``: the 64-bit blake2b hashes of its URLs' SURT
    keys, sorted, beside karma, submissions and first date — 32 bytes a URL where a dict of
    the strings took about 320. A URL listed twice (or two whose hashes collide, odds
    ~n²/2⁶⁵: 3e-4 for 10⁸ URLs) is merged as ``--merge`` merges; a page wrongly taken as
    linked has odds n/2⁶⁴."""

    NONE = np.iinfo(np.int64).min  # no karma, submissions or date (a plain URL list)
    NO_DATE = NONE

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]  # values: (n, 3) int64
        if len(keys) == 0:
            self._keys, self._values = keys, values
            return
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        karma = np.maximum.reduceat(values[:, 0], starts)
        counts = values[:, 1]
        submissions = np.add.reduceat(np.where(counts == self.NONE, 0, counts), starts)
        counted = np.maximum.reduceat(counts, starts) != self.NONE
        submissions = np.where(counted, submissions, self.NONE)
        latest = np.iinfo(np.int64).max
        dates = np.minimum.reduceat(
            np.where(values[:, 2] == self.NONE, latest, values[:, 2]), starts
        )
        dates = np.where(dates == latest, self.NONE, dates)
        self._keys = keys[starts]
        self._values = np.stack([karma, submissions, dates], axis=1)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, url: str) -> tuple[int | None, int | None, str | None] | None:
        """(karma, submissions, ISO date) of a normalised URL, or None if it is not linked."""
        key = np.uint64(url_key(url))
        index = int(np.searchsorted(self._keys, key))
        if index == len(self._keys) or self._keys[index] != key:
            return None
        karma, submissions, utc = (int(v) for v in self._values[index])
        return (
            None if karma == self.NONE else karma,
            None if submissions == self.NONE else submissions,
            iso_date(None if utc == self.NONE else utc),
        )


def url_key(url: str) -> int:
    """The 64-bit hash of a normalised URL's SURT key."""
    key = surt_key(url).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _link_entry(raw: bytes) -> tuple[str, tuple[int, int, int]]:
    """(normalised URL, (karma, submissions, utc)) of one line of a link list: a link
    record, or a plain URL (``#`` comments and blank lines were passed over)."""
    if raw.startswith(b"{"):
        _, values = _link_record(raw, optional=True)
        karma, submissions, utc = (LinkTable.NONE if v is None else v for v in values[:3])
        return values[3], (karma, submissions, utc)
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    try:
        url, domain = checked_url(text)
    except BadUrl as error:
        raise ValueError(f"not a URL ({error})") from None
    if not domain:
        raise ValueError("not an http(s) URL")
    return url, (LinkTable.NONE, LinkTable.NONE, LinkTable.NONE)


def load_links(path: str, stats: StageStats | None = None) -> LinkTable:
    """A link list as a :class:`LinkTable`: ``corpus links`` output, or any JSON Lines with a
    ``url`` (karma, submissions, date optional), or plain URLs one a line; in any order.
    A line that is neither is a bad record (an error without ``stats``)."""
    keys = array("Q")
    values = array("q")
    handle = open_input(path)
    try:
        for number, line in enumerate(handle, 1):
            raw = line.strip()
            if not raw or raw.startswith(b"#"):
                continue
            try:
                url, entry = _link_entry(raw)
            except ValueError as error:
                message = f"{path}: line {number}: not a link ({error})"
                if stats is None:
                    raise Gpt2Error(message) from None
                stats.bad("bad_link_record", message)
                continue
            keys.append(url_key(url))
            values.extend(entry)
    finally:
        handle.close()
    return LinkTable(
        np.frombuffer(keys, dtype=np.uint64), np.frombuffer(values, dtype=np.int64).reshape(-1, 3)
    )
