"""robots.txt (RFC 9309, with protego), fetched once per origin and held for the run.

As the RFC says: a 2xx answer is parsed; 3xx is followed (at most five hops); a 4xx means
no rules (everything allowed); a 5xx, 429 or a network error means the rules are not known,
which the caller treats as a failed, retryable attempt at the page (the RFC's "complete
disallow" until robots.txt can be read). ``Crawl-delay`` is honoured up to
``MAX_CRAWL_DELAY`` seconds, so that one site cannot hold a part's run for days.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gpt2cli.corpus.fetch.client import FetchFailed, classify

MAX_CRAWL_DELAY = 60.0
MAX_BYTES = 500_000  # RFC 9309: parse at least 500 KiB
CACHE = 100_000  # origins held at once (the oldest are forgotten, and fetched again if met)


class RobotsUnavailable(FetchFailed):
    """robots.txt could not be read (server error or network error): retry later."""


@dataclass
class Rules:
    parser: Any | None  # a protego.Protego, or None for "everything allowed"
    crawl_delay: float

    def allowed(self, url: str, agent: str) -> bool:
        return self.parser is None or self.parser.can_fetch(url, agent)


ALLOW_ALL = Rules(None, 0.0)


class RobotsCache:
    """``rules(origin)``: the origin's rules, fetched by the first caller; others wait."""

    def __init__(self, session: Any, agent: str, timeout: Any) -> None:
        self._session = session
        self._agent = agent
        self._timeout = timeout
        self._rules: OrderedDict[str, Rules] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Rules]] = {}
        self.fetched = 0

    async def rules(self, origin: str) -> tuple[Rules, bool]:
        """The rules of ``origin`` (``scheme://host[:port]``) and whether this call fetched
        them (the caller then waits the host's delay before its own request)."""
        known = self._rules.get(origin)
        if known is not None:
            self._rules.move_to_end(origin)
            return known, False
        pending = self._pending.get(origin)
        if pending is not None:
            return await asyncio.shield(pending), False
        future: asyncio.Future[Rules] = asyncio.get_running_loop().create_future()
        self._pending[origin] = future
        try:
            rules = await self._fetch(origin)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters get it, nobody logs it as unhandled
            raise
        finally:
            del self._pending[origin]
        future.set_result(rules)
        self._rules[origin] = rules
        if len(self._rules) > CACHE:
            self._rules.popitem(last=False)
        return rules, True

    async def _fetch(self, origin: str) -> Rules:
        self.fetched += 1
        try:
            async with self._session.get(
                origin + "/robots.txt",
                headers={"User-Agent": self._agent},
                timeout=self._timeout,
                allow_redirects=True,
                max_redirects=5,
                auto_decompress=True,
            ) as response:
                status = response.status
                if 400 <= status < 500 and status != 429:
                    return ALLOW_ALL
                if status >= 300:
                    raise RobotsUnavailable("robots_unavailable", f"robots.txt: HTTP {status}")
                body = await response.content.read(MAX_BYTES)
        except RobotsUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - every network failure is classified
            error_class, _ = classify(error)
            raise RobotsUnavailable(error_class, f"robots.txt: {error_class}") from error
        return parse(body.decode("utf-8", "replace"), self._agent)


def parse(text: str, agent: str) -> Rules:
    from protego import Protego

    parser = Protego.parse(text)
    delay = parser.crawl_delay(agent)
    return Rules(parser, min(float(delay), MAX_CRAWL_DELAY) if delay else 0.0)
