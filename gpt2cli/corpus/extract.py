"""Main text out of HTML with trafilatura, in parallel processes, output in input order.

trafilatura holds the GIL, so pages go to worker processes in small batches; at
most ``2 × processes`` batches are in flight, which bounds memory, and results are
taken back in the order they were sent. With one process nothing is forked.

Charset, as browsers choose it: a byte-order mark, else the HTTP header's charset,
else a ``<meta charset>`` (or ``http-equiv``) in the first 4 KB, else UTF-8, else
windows-1252 (which is also what ``iso-8859-1`` and ``ascii`` labels mean). A
label that decodes with errors gives way to the next candidate; a page no
candidate decodes is ``undecodable_html``.
"""

from __future__ import annotations

import codecs
import html
import logging
import multiprocessing
import os
import re
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from itertools import islice
from typing import IO, TYPE_CHECKING, Any

from gpt2cli.corpus.extract_options import ExtractOptions
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.urls import domain_of, normalize_url
from gpt2cli.corpus.warc import Redirect, Rejects, Response
from gpt2cli.errors import Gpt2Error

if TYPE_CHECKING:
    from gpt2cli.corpus.links import LinkTable

BATCH = 8
_META_CHARSET = re.compile(rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_:.\-]+)", re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.I | re.S)
_WINDOWS_1252_LABELS = frozenset({"latin_1", "iso8859-1", "ascii", "cp1252"})
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return "cp1252" if name in _WINDOWS_1252_LABELS else name


def decode_html(body: bytes, header_charset: str | None) -> str | None:
    """The page as text (see the module docstring), or None when nothing decodes it."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, "replace")
    meta = _META_CHARSET.search(body, 0, 4096)
    candidates = [_codec(header_charset), _codec(meta.group(1).decode("ascii")) if meta else None]
    for codec in dict.fromkeys([*candidates, "utf-8", "cp1252"]):
        if codec is None:
            continue
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    return None


def page_title(text: str) -> str | None:
    """The document's ``<title>``, entities decoded and whitespace collapsed."""
    match = _TITLE.search(text, 0, 1 << 16)
    if not match:
        return None
    title = " ".join(html.unescape(match.group(1)).split())
    return title or None


def _quiet_logging() -> None:
    for name in ("trafilatura", "htmldate", "courlan", "justext"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


Outcome = tuple[str, Any]  # ("ok", fields) | ("drop", reason) | ("bad", (reason, message))


def extract_one(page: Response, options: ExtractOptions) -> Outcome:
    import trafilatura

    if b"\x00" in page.body[:4096]:
        return "bad", ("not_html_payload", f"{page.url}: a text/html payload with NUL bytes")
    text = decode_html(page.body, page.charset)
    if text is None:
        return "bad", ("undecodable_html", f"{page.url}: no charset decodes the page")
    extracted = trafilatura.extract(text, url=page.url, **options.trafilatura_kwargs())
    if not extracted:
        return "drop", "no_text"
    return "ok", {"text": extracted, "title": page_title(text)}


def _extract_batch(pages: list[Response], options: ExtractOptions) -> list[Outcome]:
    return [extract_one(page, options) for page in pages]


Joined = tuple[Response, str, Any]  # a page, its (link's) normalised URL, its link or None


def _batches(items: Iterable[Joined], size: int) -> Iterator[list[Joined]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _worker_init() -> None:
    from gpt2cli.corpus.die_with_parent import die_with_parent

    die_with_parent()
    _quiet_logging()
    import trafilatura  # noqa: F401 - imported once per worker, not per batch


def _outcomes(
    items: Iterable[Joined], options: ExtractOptions, processes: int
) -> Iterator[tuple[Joined, Outcome]]:
    """Each page with its outcome, in input order."""
    if processes <= 1:
        _quiet_logging()
        for item in items:
            yield item, extract_one(item[0], options)
        return
    # A fork server (not plain fork: the parent may run rich's refresh thread) that imports
    # trafilatura once, so each worker starts without paying for it again. The fork server
    # and the workers die with their parent (see die_with_parent), even on its kill -9.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["gpt2cli.corpus.forkserver_guard", "gpt2cli.corpus.extract", "trafilatura"]
    )
    # With SIGPIPE at its default (as the CLI sets it), a write to the pipe of a worker that
    # died would kill this process silently; ignored, it surfaces as BrokenProcessPool.
    with (
        _sigpipe_ignored(),
        ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_init) as pool,
    ):
        pending: deque[tuple[list[Joined], Future]] = deque()
        try:
            for batch in _batches(items, BATCH):
                pages = [item[0] for item in batch]
                pending.append((batch, pool.submit(_extract_batch, pages, options)))
                if len(pending) >= 2 * processes:
                    batch, future = pending.popleft()
                    yield from zip(batch, future.result())
            while pending:
                batch, future = pending.popleft()
                yield from zip(batch, future.result())
        except BrokenProcessPool:
            raise Gpt2Error(
                "an extraction process died", "out of memory? try fewer --processes"
            ) from None
        finally:
            for _, future in pending:
                future.cancel()


@contextmanager
def _sigpipe_ignored() -> Iterator[None]:
    if not hasattr(signal, "SIGPIPE") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGPIPE, previous)


def default_processes() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Redirects:
    """Where each redirect came from (normalised), so a fetched page joins its link."""

    LIMIT = 1_000_000

    def __init__(self) -> None:
        self.origin: dict[str, str] = {}

    def add(self, redirect: Redirect) -> None:
        if len(self.origin) >= self.LIMIT:
            self.origin.clear()
        source = normalize_url(redirect.url)
        target = normalize_url(_absolute(redirect.url, redirect.location))
        self.origin[target] = self.origin.get(source, source)

    def resolve(self, url: str) -> str:
        return self.origin.get(url, url)


def _absolute(base: str, location: str) -> str:
    from urllib.parse import urljoin

    return urljoin(base, location)


def _join(
    items: Iterable[Response | Redirect],
    links: LinkTable | None,
    rejects: Rejects,
) -> Iterator[Joined]:
    """Pages with their link (by normalised URL, through redirects), before any extraction."""
    redirects = _Redirects()
    for item in items:
        if isinstance(item, Redirect):
            redirects.add(item)
            continue
        url = normalize_url(item.url)
        link = None
        if links is not None:
            url = redirects.resolve(url)
            link = links.get(url)
            if link is None:
                rejects.drop("not_in_links", item.source, item.offset, item.url)
                continue
        yield item, url, link


def write_pages(
    inputs: list[str],
    options: ExtractOptions,
    stats: StageStats,
    out: IO[bytes],
    progress: Callable[[int], None] | None = None,
) -> Gpt2Error | None:
    """``gpt2 corpus extract``: the pages of ``inputs`` as JSON Lines to ``out`` (``progress``
    is called with the pages out every 64). Returns the error of an input cut inside a record,
    to raise once the counts are out: every whole record is written first."""
    from gpt2cli.corpus.jsonl import dumps
    from gpt2cli.corpus.links import load_links
    from gpt2cli.corpus.warc import iter_responses
    from gpt2cli.fileio import atomic_write

    links = load_links(options.links_file, stats) if options.links_file else None
    with ExitStack() as stack:
        rejects_out = None
        if options.rejected:
            rejects_out = stack.enter_context(atomic_write(options.rejected, "wb"))
        rejects = Rejects(stats, rejects_out, options.max_bad_records)
        responses = iter_responses(inputs, stats, options.max_bytes, rejects)
        workers = options.processes or default_processes()
        pages = extract_pages(responses, options, stats, links, workers, rejects)
        for number, record in enumerate(pages, 1):
            out.write(dumps(record))
            if progress is not None and number % 64 == 0:
                progress(number)
    if not rejects.cut:
        return None
    first = rejects.cut[0]
    more = f" (and {len(rejects.cut) - 1} more cut files)" if len(rejects.cut) > 1 else ""
    return type(first)(f"{first.message}{more}", first.hint)


def extract_pages(
    items: Iterable[Response | Redirect],
    options: ExtractOptions,
    stats: StageStats,
    links: LinkTable | None = None,
    processes: int = 1,
    rejects: Rejects | None = None,
) -> Iterator[dict[str, Any]]:
    """Output records (text, url, domain, title, karma, submissions, date, crawl_date,
    warc_record_id) of the pages whose main text trafilatura finds, in input order."""
    rejects = rejects or Rejects(stats)
    for (page, url, link), (kind, value) in _outcomes(
        _join(items, links, rejects), options, processes
    ):
        if kind == "bad":
            reason, message = value
            rejects.bad(reason, page.source, page.offset, page.url, message)
            continue
        if kind == "drop":
            rejects.drop(value, page.source, page.offset, page.url)
            continue
        stats.count_out()
        yield {
            "text": value["text"],
            "url": url,
            "domain": domain_of(url),
            "title": value["title"],
            "karma": link[0] if link else None,
            "submissions": link[1] if link else None,
            "date": link[2] if link else None,
            "crawl_date": page.crawl_date,
            "warc_record_id": page.record_id,
        }
