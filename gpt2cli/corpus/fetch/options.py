"""The options of ``gpt2 corpus fetch``: each field is also its flag and --help text
(:mod:`gpt2cli.option_fields`). Light to import (no asyncio, no numpy), for --help."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gpt2cli import __version__, option_fields
from gpt2cli.corpus.common_options import max_urls_option, temp_dir_option
from gpt2cli.errors import UsageError
from gpt2cli.option_fields import at_least, non_negative, option, positive

ABOUT_URL = "https://github.com/gpt2cli/gpt2cli/blob/main/docs/fetch.md"
DEFAULT_AGENT = f"gpt2cli/{__version__} (+{ABOUT_URL})"
COMMON_CRAWL = "https://data.commoncrawl.org/"
DEFAULT_MAX_URLS = 1_000_000

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.I)


def parse_size(text: str, option: str) -> int:
    """``1000000``, ``500M``, ``1GB`` (powers of 1000) as bytes."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"{option} {text!r}: not a size (e.g. 1000000, 500M, 1G)")
    number, unit = match.groups()
    scale = 1000 ** ("kmgt".index(unit.lower()) + 1) if unit else 1
    return int(float(number) * scale)


def parse_part(text: str | None) -> tuple[int, int]:
    """``I/N`` (None: the whole, 0/1) as (I, N)."""
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--part {text!r}: expected I/N, e.g. 3/16")
    part, parts = int(match.group(1)), int(match.group(2))
    if parts < 1 or part >= parts:
        raise UsageError(f"--part {text}: I must be in 0..N-1")
    return part, parts


@dataclass
class FetchOptions:
    """What to fetch and how. The sizes and the part are read from their text (``500M``,
    ``3/16``) when made; ``part_number`` and ``parts`` are the part as numbers."""

    inputs: list[str]
    output: Path
    user_agent: str | None = option(
        None,
        "User-Agent header, also the name robots.txt rules are matched against "
        "(default: gpt2cli/VERSION (+URL of docs/fetch.md)).",
        show_default=False,
    )
    ignore_robots: bool = option(False, "Do not read or obey robots.txt.")
    per_host: int = option(1, "Connections to one host at most.", rule=at_least(1))
    delay: float = option(
        1.0,
        "Seconds between the starts of two requests to one host (a robots.txt "
        "Crawl-delay, up to 60 s, raises it).",
        rule=non_negative,
    )
    concurrency: int = option(256, "Requests in flight at most.", rule=at_least(1))
    connect_timeout: float = option(10.0, "Seconds to open a connection.", rule=positive)
    read_timeout: float = option(
        30.0, "Seconds to the first byte, and between two reads.", rule=positive
    )
    timeout: float = option(120.0, "Seconds for a whole response.", rule=positive)
    max_bytes: int | str = option(
        "10M",
        "Bytes of a body kept at most; a longer one is cut, its record marked "
        "WARC-Truncated: length.",
        rule=at_least(1),
    )
    html_only: bool = option(
        False,
        "Stop before the body of a 200 response whose Content-Type is not HTML (the "
        "record keeps the headers, marked WARC-Truncated).",
    )
    retries: int = option(
        3,
        "Retries of a URL after a timeout, a reset, a refused connection, 429 or 503 "
        "(Retry-After honoured), with exponential backoff.",
        rule=non_negative,
    )
    retry_wait: float = option(
        2.0, "Seconds before the first retry (doubled each time).", rule=non_negative
    )
    allow_private: bool = option(
        False,
        "Allow loopback, private, link-local and reserved addresses (tests, "
        "intranets). Without it such addresses are never connected to, redirects and "
        "names resolving to them included.",
    )
    allow_addresses: list[str] = option(
        help="Allow this address or network (CIDR) although it is private, and no other "
        "(repeatable): a local archive mirror, an intranet host.",
        long="--allow-address",
        show_default=False,
        default_factory=list,
    )
    warc_size: int | str = option("1G", "Start a new WARC file past this size.", rule=at_least(1))
    part: str | None = option(
        None,
        "I/N: fetch only the URLs whose host hashes to part I of N (one Slurm array "
        "task, or one xargs -P process, per part; same N for every part).",
        show_default=False,
    )
    max_urls: int = max_urls_option(
        DEFAULT_MAX_URLS,
        "URLs held in memory while reading (about 250 bytes each) before a sorted "
        "run is spilled to a temporary file.",
    )
    temp_dir: Path | None = temp_dir_option()
    from_archive: str | None = option(
        None,
        "A CDX API URL (pywb, Common Crawl's index, e.g. "
        "https://index.commoncrawl.org/CC-MAIN-2017-51-index): fetch each URL's status-200 "
        "capture closest to its link's date from the archive instead of the live web.",
        show_default=False,
    )
    archive_prefix: str = option(
        COMMON_CRAWL, "With --from-archive: the URL the index's WARC file names are relative to."
    )
    as_of: str | None = option(
        None,
        "With --from-archive: the date captures are chosen closest to (ISO 8601 or "
        "YYYYMMDD...), instead of each link's date.",
        show_default=False,
    )
    part_number: int = field(init=False, default=0)
    parts: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        self.user_agent = self.user_agent or DEFAULT_AGENT
        if isinstance(self.max_bytes, str):
            self.max_bytes = parse_size(self.max_bytes, "--max-bytes")
        if isinstance(self.warc_size, str):
            self.warc_size = parse_size(self.warc_size, "--warc-size")
        self.part_number, self.parts = parse_part(self.part)
        self.allow_addresses = list(self.allow_addresses or [])

    def check(self) -> None:
        """UsageError for values no fetch accepts."""
        from gpt2cli.corpus.fetch.inputs import host_of
        from gpt2cli.corpus.fetch.policy import parse_networks

        option_fields.check(self)
        for name, url in (
            ("--from-archive", self.from_archive),
            ("--archive-prefix", self.archive_prefix),
        ):
            if url is not None and host_of(url) is None:
                raise UsageError(f"{name} {url!r}: not an http(s) URL")
        parse_networks(self.allow_addresses)
        if self.as_of is not None and self.from_archive is None:
            raise UsageError("--as-of needs --from-archive")

    @property
    def part_name(self) -> str:
        return "fetch" if self.parts == 1 else f"fetch-{self.part_number:05d}-of-{self.parts:05d}"
