"""The URLs to fetch: read, checked, split into parts, merged, minus those already done.

Inputs are ``corpus links`` output (JSON Lines with ``url`` and ``date``) or plain URL lists,
one a line, in any order. Every URL is keyed by a 64-bit hash of itself and the stream is
sorted by that key with an external sort: at most ``max_urls`` entries are held (about 250
bytes each), sorted runs beyond that are spilled to temporary files and merged. In key order
duplicates are adjacent (they merge, keeping the earliest date), the URLs already logged as
done (fed into the same sort) cancel theirs, and hosts come interleaved, which is what a
polite crawl wants. Memory is therefore bounded whatever the input's length.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import IO
from urllib.parse import urlsplit

from gpt2cli.corpus.fetch.options import DEFAULT_MAX_URLS
from gpt2cli.corpus.jsonl import source_name
from gpt2cli.corpus.links import url_key
from gpt2cli.corpus.stats import StageStats
from gpt2cli.text.compressed import open_input

TODO, DONE = 1, 0  # DONE sorts first within a URL's group

Entry = tuple[int, str, int, str]  # key, url, TODO or DONE, date ('' when none)


@dataclass(frozen=True)
class Link:
    url: str
    date: str | None  # ISO 8601, from the link record


def host_of(url: str) -> str | None:
    """The lowercased host of an http(s) URL, None for anything else."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return host.rstrip(".")


def part_of(host: str, parts: int) -> int:
    """The part (0..parts-1) a host belongs to: the same on every machine and run."""
    return url_key(host) % parts


def read_links(names: Iterable[str], stats: StageStats) -> Iterator[Link]:
    """Links of every input, in input order; a bad line is counted and skipped."""
    for name in names:
        source = source_name(name)
        handle = open_input(name)
        try:
            for number, raw in enumerate(handle, 1):
                stats.add_bytes(len(raw))
                line = raw.strip()
                if not line or line.startswith(b"#"):
                    continue
                stats.count_in()
                link = _parse(line, f"{source}: line {number}", stats)
                if link is not None:
                    yield link
        finally:
            if name != "-":
                handle.close()


def _parse(line: bytes, where: str, stats: StageStats) -> Link | None:
    date = None
    if line.startswith(b"{"):
        try:
            data = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            stats.bad("malformed_json", f"{where}: malformed JSON")
            return None
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str):
            stats.bad("no_url", f"{where}: no 'url' field")
            return None
        date = data.get("date") if isinstance(data.get("date"), str) else None
    else:
        try:
            url = line.decode("utf-8")
        except UnicodeDecodeError:
            stats.bad("not_http_url", f"{where}: not UTF-8")
            return None
    url = url.strip()
    if host_of(url) is None:
        stats.bad("not_http_url", f"{where}: not an http(s) URL: {url[:80]!r}")
        return None
    return Link(url, date)


def _spill(entries: list[Entry], directory: str, number: int) -> str:
    entries.sort()
    path = os.path.join(directory, f"run-{number:05d}.tsv")
    with open(path, "w", encoding="utf-8") as handle:
        for key, url, flag, date in entries:
            handle.write(f"{key:016x}\t{flag}\t{date}\t{url}\n")
    return path


def _read_run(handle: IO[str]) -> Iterator[Entry]:
    for line in handle:
        key, flag, date, url = line.rstrip("\n").split("\t", 3)
        yield int(key, 16), url, int(flag), date


def plan(
    links: Iterable[Link],
    done_urls: Iterable[str],
    stats: StageStats,
    part: int = 0,
    parts: int = 1,
    max_urls: int = DEFAULT_MAX_URLS,
    temp_dir: str | None = None,
) -> Iterator[Link]:
    """The links of part ``part`` of ``parts``, each URL once, none of ``done_urls``, in the
    order of their key (a hash: hosts interleaved). Reading and sorting happen here; the
    returned iterator merges the sorted runs."""
    directory = tempfile.mkdtemp(prefix="gpt2-fetch-", dir=temp_dir)
    entries: list[Entry] = []
    runs: list[str] = []
    other_parts = 0

    def add(entry: Entry) -> None:
        entries.append(entry)
        if len(entries) >= max_urls:
            runs.append(_spill(entries, directory, len(runs)))
            entries.clear()

    try:
        for url in done_urls:
            add((url_key(url), url, DONE, ""))
        for link in links:
            if parts > 1 and part_of(host_of(link.url) or "", parts) != part:
                other_parts += 1
                continue
            add((url_key(link.url), link.url, TODO, link.date or ""))
        entries.sort()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    stats.extra.update(other_parts=other_parts, spilled_runs=len(runs))
    return _merge(entries, runs, directory, stats)


def _merge(
    entries: list[Entry], runs: list[str], directory: str, stats: StageStats
) -> Iterator[Link]:
    handles = [open(path, encoding="utf-8") for path in runs]  # noqa: SIM115
    duplicates = done = 0
    try:
        merged = heapq.merge(iter(entries), *(_read_run(h) for h in handles))
        for (_, url), group in groupby(merged, key=lambda entry: entry[:2]):
            items = list(group)
            if items[0][2] == DONE:
                done += sum(1 for item in items if item[2] == TODO)
                continue
            duplicates += len(items) - 1
            dates = [item[3] for item in items if item[3]]
            yield Link(url, min(dates) if dates else None)
        stats.extra.update(duplicates=duplicates, already_done=done)
    finally:
        for handle in handles:
            handle.close()
        shutil.rmtree(directory, ignore_errors=True)
