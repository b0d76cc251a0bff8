"""The core of ``gpt2 corpus fetch``: ``fetch(options, stats)`` runs one part to the end."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpt2cli import __version__
from gpt2cli.corpus.fetch import inputs
from gpt2cli.corpus.fetch.client import RETRYABLE, ClientSettings, FetchFailed, Outcome
from gpt2cli.corpus.fetch.frontier import Frontier, Task
from gpt2cli.corpus.fetch.log import FetchLog, read_done
from gpt2cli.corpus.fetch.options import FetchOptions
from gpt2cli.corpus.fetch.warcfile import WarcFiles
from gpt2cli.corpus.stats import StageStats
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write, open_own_file
from gpt2cli.locking import exclusive_lock

MAX_BACKOFF = 300.0  # seconds; a Retry-After beyond this ends the retries
DEAD_AFTER = 3  # URLs of one host in a row with no HTTP answer at all (or no DNS answer)
COMMIT_SECONDS = 1.0
COMMIT_LINES = 2000
CONNECTION_ERRORS = frozenset({"timeout", "connect_error", "reset", "dns_error"})


@dataclass
class FetchReport:
    stats: StageStats
    statuses: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return self.stats.to_json()


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _check_parts(directory: Path, parts: int) -> None:
    """All runs into one directory split it the same way (else parts would overlap). Parts
    started together (``xargs -P``) wait for each other here, briefly, rather than fail."""
    import fcntl

    marker = directory / "fetch-parts"
    # never through a link planted in the output directory (fileio.open_own_file)
    with os.fdopen(
        open_own_file(directory / ".fetch-parts.lock", os.O_RDWR | os.O_CREAT)
    ) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        if marker.exists():
            written = marker.read_text().strip()
            if written != str(parts):
                raise UsageError(
                    f"{directory} was fetched with --part I/{written}, not I/{parts}",
                    "use the same N for every part, or another directory",
                )
        else:
            with atomic_write(marker, "w") as out:
                out.write(f"{parts}\n")


def fetch(
    options: FetchOptions, stats: StageStats, progress: Callable[[int], None] | None = None
) -> FetchReport:
    """Fetch every link of ``options.inputs`` (this part's) not yet in the log into
    ``options.output``; resumable after a kill at any point."""
    options.check()
    directory = options.output
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Gpt2Error(f"-o {directory}: {error.strerror}") from None
    if not directory.is_dir():
        raise Gpt2Error(f"-o {directory}: not a directory")
    name = options.part_name
    report = FetchReport(stats)
    with exclusive_lock(directory / f".{name}.lock", f"{directory} ({name})"):
        _check_parts(directory, options.parts)
        logged_end: dict[str, int] = {}
        todo = inputs.plan(
            inputs.read_links(options.inputs, stats),
            read_done(directory / f"{name}.jsonl", logged_end),
            stats,
            options.part_number,
            options.parts,
            options.max_urls,
            options.temp_dir,
        )
        warcs = WarcFiles(directory, name, options.warc_size, _warcinfo(options))
        stats.extra["bytes_cut_back"] = warcs.resume(logged_end)
        log = FetchLog(directory / f"{name}.jsonl")
        try:
            _ignore_sigpipe()
            asyncio.run(_Crawl(options, stats, report, log, warcs, progress).run(todo))
        finally:
            todo.close()  # type: ignore[attr-defined]
        stats.extra["warc_files"] = len(warcs.closed_files)
    stats.extra["statuses"] = dict(sorted(report.statuses.items()))
    stats.extra["robots_files"] = stats.extra.get("robots_files", 0)
    return report


def _ignore_sigpipe() -> None:
    """A peer that closes its socket must fail one send, not kill the crawl. (The CLI sets
    SIGPIPE's default action for ``| head``; fetch writes nothing on stdout, so it is left
    ignored for the rest of the process, whose server-side neighbours in tests included.)"""
    if hasattr(signal, "SIGPIPE") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _warcinfo(options: FetchOptions) -> dict[str, str]:
    return {
        "software": f"gpt2cli/{__version__} (gpt2 corpus fetch)",
        "http-header-user-agent": options.user_agent,
        "robots": "ignore" if options.ignore_robots else "obey",
        "format": "WARC File Format 1.1",
        **({"description": f"captures from {options.from_archive}"} if options.from_archive
           else {}),
    }  # fmt: skip


class _Crawl:
    def __init__(
        self,
        options: FetchOptions,
        stats: StageStats,
        report: FetchReport,
        log: FetchLog,
        warcs: WarcFiles,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.options = options
        self.stats = stats
        self.report = report
        self.log = log
        self.warcs = warcs
        self.progress = progress
        from gpt2cli.corpus.fetch.policy import parse_networks

        self.allowed = parse_networks(options.allow_addresses)
        self.settings = ClientSettings(
            options.user_agent,
            options.max_bytes,
            options.html_only,
            options.allow_private,
            self.allowed,
        )
        self.done = 0
        self.crawl_done = asyncio.Event()
        self.commit_now = asyncio.Event()
        self._syncing: asyncio.Future[None] | None = None

    async def run(self, todo: Iterator[inputs.Link]) -> None:
        import aiohttp

        from gpt2cli.corpus.fetch.client import peer_connector
        from gpt2cli.corpus.fetch.policy import socket_factory

        options = self.options
        connector = peer_connector(
            limit=options.concurrency,
            limit_per_host=options.per_host,
            use_dns_cache=True,
            ttl_dns_cache=600,
            socket_factory=socket_factory(options.allow_private, self.allowed),
        )
        timeout = aiohttp.ClientTimeout(
            total=options.timeout, sock_connect=options.connect_timeout,
            sock_read=options.read_timeout,
        )  # fmt: skip
        self.frontier = Frontier(
            options.per_host,
            options.delay,
            buffer=max(100_000, 20 * options.concurrency),
            host_buffer=10_000,
            spill_path=str(options.output / f".{options.part_name}.spill"),
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            max_line_size=65536,
            max_field_size=65536,
        ) as session:
            self.session = session
            if options.from_archive:
                from gpt2cli.corpus.fetch.archive import Archive

                self.archive = Archive(
                    session, options.from_archive, options.archive_prefix, options.user_agent
                )
                self.data_gate = asyncio.Semaphore(options.per_host)
            else:
                from gpt2cli.corpus.fetch.robots import RobotsCache

                self.robots = RobotsCache(session, options.user_agent, timeout)
            self.ready: asyncio.Queue[Task | None] = asyncio.Queue()
            self.idle = asyncio.Semaphore(options.concurrency)
            workers = [asyncio.create_task(self._worker()) for _ in range(options.concurrency)]
            workers.append(asyncio.create_task(self._dispatch(options.concurrency)))
            committer = asyncio.create_task(self._committer())
            feeder = asyncio.create_task(self._feed(todo))
            try:
                await _first_error([feeder, committer, *workers])
            finally:
                for task in [feeder, committer, *workers]:
                    task.cancel()
                await asyncio.gather(feeder, committer, *workers, return_exceptions=True)
                await self._close()
                if not options.from_archive:
                    self.stats.extra["robots_files"] = self.robots.fetched
        self.stats.extra["spilled_urls"] = self.frontier.spilled

    async def _feed(self, todo: Iterator[inputs.Link]) -> None:
        archive_host = origin_of(self.options.from_archive) if self.options.from_archive else ""
        spill = True
        source: Iterator[Any] | None = todo
        while source is not None:
            for number, item in enumerate(source):
                if isinstance(item, inputs.Link):
                    item = Task(item.url, item.date, archive_host or origin_of(item.url))
                await self.frontier.put(item, spill)
                if not number & 255:
                    await asyncio.sleep(0)
            source = self.frontier.spilled_tasks()
            spill = False
        self.frontier.close_input()

    async def _committer(self) -> None:
        """The one task that makes output durable, off the event loop (an fsync on a busy or
        network file system takes long): every second, or sooner when many lines wait or a
        WARC file is full: WARC bytes flushed and fsynced, then the log lines naming them
        written, then full files renamed. At the end, the open file closed the same way."""
        while not self.crawl_done.is_set():
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.commit_now.wait(), COMMIT_SECONDS)
            self.commit_now.clear()
            if len(self.log) or self.warcs.retired:
                await self._commit()
        self.warcs.retire_current()
        await self._commit()

    async def _commit(self) -> None:
        lines = self.log.take()
        descriptors, retired = self.warcs.flush()

        def make_durable() -> None:
            for descriptor in descriptors:
                os.fsync(descriptor)
            self.log.write(lines)
            self.warcs.finish(retired)

        self._syncing = asyncio.ensure_future(asyncio.to_thread(make_durable))
        await self._syncing

    async def _dispatch(self, workers: int) -> None:
        """The frontier's one consumer: hands a ready URL to a free worker (one wake-up per
        URL, where workers waiting on the frontier themselves would all wake at each change)."""
        while True:
            await self.idle.acquire()
            task = await self.frontier.get()
            if task is None:
                for _ in range(workers):
                    self.ready.put_nowait(None)
                self.crawl_done.set()
                self.commit_now.set()
                return
            self.ready.put_nowait(task)

    async def _worker(self) -> None:
        while (task := await self.ready.get()) is not None:
            retry_at = None
            try:
                retry_at = await self._handle(task)
            finally:
                self.frontier.release(task, retry_at)
                self.idle.release()

    async def _handle(self, task: Task) -> float | None:
        """Fetch ``task``; the monotonic time to retry it at, or None when it is done."""
        host = self.frontier.hosts[task.host]
        if host.dead:
            self._record(task, Outcome(error="host_unreachable"))
            return None
        task.attempts += 1
        if self.options.from_archive:
            return await self._handle_archived(task)
        outcome = await self._fetch_live(task)
        wait = self._retry_wait(task, outcome.error, outcome.final and outcome.final.retry_after)
        if wait is not None:
            return time.monotonic() + wait
        if outcome.error in CONNECTION_ERRORS and not outcome.exchanges:
            host.failures += 1
        else:
            host.failures = 0
        self._record(task, outcome)
        if host.failures >= DEAD_AFTER and not host.dead:
            for other in self.frontier.drain_dead(task.host):
                self._record(other, Outcome(error="host_unreachable"))
        return None

    def _retry_wait(self, task: Task, error: str | None, after: float | None) -> float | None:
        if error not in RETRYABLE or task.attempts > self.options.retries:
            return None
        if after is not None:
            return after if after <= MAX_BACKOFF else None
        backoff = self.options.retry_wait * 2 ** (task.attempts - 1)
        return min(backoff, MAX_BACKOFF) * random.uniform(0.8, 1.2)

    async def _fetch_live(self, task: Task) -> Outcome:
        from gpt2cli.corpus.fetch.client import fetch_chain

        robots_check = None if self.options.ignore_robots else self._robots_check(task)
        return await fetch_chain(self.session, task.url, self.settings, robots_check)

    def _robots_check(self, task: Task) -> Callable[[str], Any]:
        async def check(url: str) -> None:
            origin = origin_of(url)
            rules, fetched = await self.robots.rules(origin)
            if origin == task.host:
                host = self.frontier.hosts[task.host]
                host.delay = max(self.options.delay, rules.crawl_delay)
                if fetched and host.delay:
                    host.next_start = time.monotonic() + 2 * host.delay
                    await asyncio.sleep(host.delay)
            if not rules.allowed(url, self.options.user_agent):
                raise FetchFailed("robots_disallowed", f"{url[:100]}: disallowed by robots.txt")

        return check

    async def _handle_archived(self, task: Task) -> float | None:
        from gpt2cli.corpus.fetch.archive import HttpRefused, timestamp14
        from gpt2cli.corpus.fetch.client import classify

        target = timestamp14(self.options.as_of or task.date)
        entry: dict[str, Any] = {}
        try:
            capture = await self.archive.lookup(task.url, target)
            if capture is None:
                self._record(task, Outcome(error="not_archived"))
                return None
            async with self.data_gate:
                data, payload = await self.archive.record(capture)
        except HttpRefused as error:
            wait = self._retry_wait(task, error.error_class, error.wait)
            if wait is not None:
                return time.monotonic() + wait
            self._record(task, Outcome(error=error.error_class, detail=str(error)))
            return None
        except Exception as error:  # noqa: BLE001 - sorted into classes; the rest re-raised
            error_class, detail = classify(error)
            wait = self._retry_wait(task, error_class, None)
            if wait is not None:
                return time.monotonic() + wait
            if error_class in ("cdx_garbage", "bad_range", "cdx_error"):
                self.stats.bad(error_class, f"{task.url[:100]}: {detail}")
            self._record(task, Outcome(error=error_class, detail=detail), counted=True)
            return None
        warc, offset, length = self.warcs.write(data)
        entry = {
            "status": 200,
            "final_url": capture.url or task.url,
            "bytes": payload,
            "warc": warc,
            "offset": offset,
            "length": length,
            "capture": capture.timestamp,
        }
        self._log(task, entry, None)
        return None

    def _record(self, task: Task, outcome: Outcome, counted: bool = False) -> None:
        entry: dict[str, Any] = {"status": None, "final_url": None, "bytes": 0}
        final = outcome.final
        if final is not None:
            from gpt2cli.corpus.fetch.warcfile import exchange_records

            warc, offset, length = self.warcs.write(exchange_records(outcome.exchanges))
            entry = {"status": final.status, "final_url": final.url, "bytes": len(final.body),
                     "warc": warc, "offset": offset, "length": length}  # fmt: skip
            if final.truncated:
                entry["truncated"] = final.truncated
        self._log(task, entry, outcome.error, counted)

    def _log(
        self, task: Task, entry: dict[str, Any], error: str | None, counted: bool = False
    ) -> None:
        line = {"url": task.url, "status": None, "final_url": None, "bytes": 0, "error": error,
                "warc": None, "offset": None, "length": None, "attempts": task.attempts,
                **entry}  # fmt: skip
        line["error"] = error
        self.log.add(line)
        status = line["status"]
        if status is not None:
            self.report.statuses[f"{status // 100}xx"] += 1
            self.stats.add_bytes(0)
        if error is None and status is not None and 200 <= status < 300:
            self.stats.count_out()
        elif not counted:
            self.stats.drop(error or f"http_{status}")
        self.stats.extra["bytes_fetched"] = self.stats.extra.get("bytes_fetched", 0) + line["bytes"]
        self.done += 1
        if self.progress and not self.done & 63:
            self.progress(self.done)
        if len(self.log) >= COMMIT_LINES or self.warcs.retired:
            self.commit_now.set()

    async def _close(self) -> None:
        """After the committer's last commit everything is closed already; after an error the
        WARC files are left open as they are (the next run cuts them back to the log)."""
        if self._syncing is not None:
            with suppress(BaseException):
                await self._syncing  # a thread cannot be cancelled: let it end first
        self.warcs.abandon()
        self.log.close()


async def _first_error(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task; the first one to fail stops the rest (its error is raised)."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
