"""The frontier: per-host queues, per-host pacing and a bounded buffer.

A worker asks for the next URL whose host is free: fewer than ``per_host`` requests in
flight and its delay since the last request start over. Hosts wait in a heap by the time
they become free, so a slow or dead host holds only its own slots, never another's.
At most ``buffer`` URLs wait in memory and at most ``host_buffer`` for one host; the
overflow of a very large host is written to a spill file that is read again once the input
has been read (a bounded approach: a host with more URLs than that is fetched in rounds).
"""

from __future__ import annotations

import asyncio
import heapq
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SWEEP_EVERY = 10_000  # URLs handed out between two sweeps of idle hosts


@dataclass
class Task:
    url: str
    date: str | None
    host: str  # the key pacing is done by (the URL's origin, or the archive index)
    attempts: int = 0


@dataclass
class Host:
    queue: deque[Task] = field(default_factory=deque)
    active: int = 0
    next_start: float = 0.0
    delay: float = 0.0
    in_heap: bool = False
    failures: int = 0  # URLs in a row that failed without any HTTP answer
    dead: bool = False


class Frontier:
    def __init__(
        self, per_host: int, delay: float, buffer: int, host_buffer: int, spill_path: str
    ) -> None:
        self.per_host = per_host
        self.delay = delay
        self.buffer = buffer
        self.host_buffer = host_buffer
        self.spill_path = spill_path
        self.hosts: dict[str, Host] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = 0
        self._waiting = 0  # URLs queued in memory
        self._active = 0
        self._input_done = False
        self._changed = asyncio.Event()
        self._spill: Any = None
        self.spilled = 0
        self._taken = 0

    # -- the reader's side
    async def put(self, task: Task, spill: bool = True) -> None:
        """Queue ``task``; a host's overflow is spilled (``spill``) or waited for."""
        while True:
            while self._waiting >= self.buffer:
                await self._wait()
            host = self.hosts.get(task.host)
            if host is None:
                host = self.hosts[task.host] = Host(delay=self.delay)
            if len(host.queue) < self.host_buffer:
                break
            if spill:
                self._spill_task(task)
                return
            await self._wait()
        host.queue.append(task)
        self._waiting += 1
        self._schedule(task.host, host)
        self._changed.set()

    def _spill_task(self, task: Task) -> None:
        if self._spill is None:
            self._spill = open(self.spill_path, "a", encoding="utf-8")  # noqa: SIM115
        self._spill.write(f"{task.date or ''}\t{task.host}\t{task.url}\n")
        self.spilled += 1

    def spilled_tasks(self) -> Iterator[Task] | None:
        """The spilled URLs (a new round), or None when none were spilled."""
        if self._spill is None:
            return None
        self._spill.close()
        self._spill = None
        round_path = self.spill_path + ".round"
        os.replace(self.spill_path, round_path)

        def read() -> Iterator[Task]:
            with open(round_path, encoding="utf-8") as handle:
                for line in handle:
                    date, host, url = line.rstrip("\n").split("\t", 2)
                    yield Task(url, date or None, host)
            os.unlink(round_path)

        return read()

    def close_input(self) -> None:
        self._input_done = True
        self._changed.set()

    # -- the workers' side
    async def get(self) -> Task | None:
        """The next task whose host is free, or None when everything is done."""
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _, _, name = heapq.heappop(self._heap)
                host = self.hosts[name]
                host.in_heap = False
                if not host.queue or host.active >= self.per_host:
                    continue
                task = host.queue.popleft()
                self._waiting -= 1
                host.active += 1
                self._active += 1
                self._taken += 1
                if not self._taken % SWEEP_EVERY:
                    self._sweep(now)
                host.next_start = max(now, host.next_start) + host.delay
                self._schedule(name, host)
                self._changed.set()
                return task
            if self._input_done and not self._waiting and not self._active:
                return None
            timeout = self._heap[0][0] - now if self._heap else None
            await self._wait(timeout)

    def release(self, task: Task, retry_at: float | None = None) -> None:
        """A worker is done with ``task``; with ``retry_at`` (a monotonic time) it goes back
        to the head of its host's queue and the host waits until then."""
        host = self.hosts[task.host]
        host.active -= 1
        self._active -= 1
        if retry_at is not None:
            host.queue.appendleft(task)
            self._waiting += 1
            host.next_start = max(host.next_start, retry_at)
        if not host.queue and not host.active and not host.dead:
            if host.next_start <= time.monotonic():
                del self.hosts[task.host]  # its pacing is over; memory is bounded by the buffer
        else:
            self._schedule(task.host, host)
        self._changed.set()

    def drain_dead(self, name: str) -> list[Task]:
        """Mark a host dead and take back its queued tasks (to be logged, not fetched)."""
        host = self.hosts[name]
        host.dead = True
        tasks = list(host.queue)
        host.queue.clear()
        self._waiting -= len(tasks)
        self._changed.set()
        return tasks

    def _sweep(self, now: float) -> None:
        """Forget the hosts with nothing queued or in flight whose delay is over (a host
        that emptied while its delay ran is not removed by ``release``)."""
        idle = [
            name
            for name, host in self.hosts.items()
            if not host.queue and not host.active and not host.dead and host.next_start <= now
        ]
        for name in idle:
            del self.hosts[name]

    def _schedule(self, name: str, host: Host) -> None:
        if host.in_heap or not host.queue or host.active >= self.per_host:
            return
        host.in_heap = True
        self._order += 1
        heapq.heappush(self._heap, (host.next_start, self._order, name))

    async def _wait(self, timeout: float | None = None) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
