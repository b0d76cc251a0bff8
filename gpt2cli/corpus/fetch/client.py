"""One URL over HTTP with aiohttp: each redirect hop its own exchange, bodies kept raw.

Bodies are stored as they came (``Content-Encoding`` not undone; chunked transfer coding
removed, as every HTTP client does, and its header dropped with it so the record says what
it holds). ``max_bytes`` cuts a body (``truncated="length"``); ``html_only`` stops before
the body of a response whose Content-Type is not HTML (``truncated="unspecified"``).
Errors are sorted into classes (``classify``): the retryable ones (timeouts, resets,
refused connections) and the permanent ones (a private address, a bad URL, no such host).
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

from gpt2cli.corpus.fetch.policy import AddressRefused, check_address

REDIRECTS = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRYABLE = frozenset(
    {"timeout", "connect_error", "reset", "http_429", "http_503", "robots_unavailable"}
)
READ_BLOCK = 1 << 16


# The address the current task's last connection went to (set by PeerConnector.connect,
# which runs inside the task's own ``session.get``).
PEER: ContextVar[str | None] = ContextVar("PEER", default=None)


def peer_connector(**kwargs: object) -> object:
    """An aiohttp TCPConnector that notes each connection's peer address in ``PEER``."""
    import aiohttp

    class PeerConnector(aiohttp.TCPConnector):
        async def connect(self, req, traces, timeout):  # type: ignore[no-untyped-def]
            connection = await super().connect(req, traces, timeout)
            transport = connection.transport
            peer = transport.get_extra_info("peername") if transport else None
            PEER.set(str(peer[0]) if peer else None)
            return connection

    return PeerConnector(**kwargs)


@dataclass
class Exchange:
    """One request and its response, as the WARC records will hold them."""

    url: str
    date: str  # WARC-Date: when the request was sent
    request_head: bytes  # request line and headers, CRLF-terminated, blank line included
    status: int
    status_line: str  # "200 OK"
    protocol: str  # "HTTP/1.1"
    headers: list[tuple[str, str]]
    body: bytes
    ip: str | None
    truncated: str | None = None
    retry_after: float | None = None


@dataclass
class Outcome:
    """Where a URL's chain ended: its exchanges (possibly none) and an error class."""

    exchanges: list[Exchange] = field(default_factory=list)
    error: str | None = None
    detail: str = ""

    @property
    def final(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None


class FetchFailed(Exception):
    def __init__(self, error_class: str, detail: str) -> None:
        super().__init__(detail)
        self.error_class = error_class


def warc_date() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def classify(error: BaseException) -> tuple[str, str]:
    """(error class, one-line detail) of an exception raised by aiohttp."""
    import aiohttp

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, AddressRefused):
            return "private_address", str(cause)
        cause = cause.__cause__ or getattr(cause, "os_error", None)
    if isinstance(error, FetchFailed):
        return error.error_class, str(error)
    if isinstance(error, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout", "timed out"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "dns_error", f"no such host ({error.host})"
    if isinstance(error, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return "tls_error", str(error)[:200]
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect_error", str(error)[:200]
    if isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return "reset", str(error)[:200] or "server disconnected"
    if isinstance(error, (aiohttp.ClientOSError, ConnectionError)):
        return "reset", str(error)[:200]
    if isinstance(error, aiohttp.InvalidURL):
        return "invalid_url", str(error)[:200]
    if isinstance(error, aiohttp.ClientResponseError):
        return "bad_http", str(error)[:200]
    if isinstance(error, aiohttp.ClientError):
        return "client_error", f"{type(error).__name__}: {error}"[:200]
    raise error


def _request_head(method: str, url: str, headers: object) -> bytes:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]  # type: ignore[attr-defined]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@dataclass(frozen=True)
class ClientSettings:
    agent: str
    max_bytes: int
    html_only: bool
    allow_private: bool
    allowed: tuple = ()  # networks let through although private (--allow-address)
    max_redirects: int = 10


async def exchange(session: object, url: str, settings: ClientSettings) -> Exchange:
    """One GET of ``url``, redirects not followed."""
    host = urlsplit(url).hostname or ""
    if not settings.allow_private:
        check_address(host, settings.allowed)  # an IP literal: refused before aiohttp sees it
    date = warc_date()
    headers = {
        "User-Agent": settings.agent,
        "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
        "Accept-Encoding": "gzip, deflate, br",
    }
    PEER.set(None)
    async with session.get(url, headers=headers, allow_redirects=False) as response:  # type: ignore[attr-defined]
        peer = PEER.get()
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        truncated = None
        chunks: list[bytes] = []
        if settings.html_only and response.status == 200 and content_type not in HTML_TYPES:
            truncated = "unspecified"
            response.close()
        else:
            size = 0
            while True:
                chunk = await response.content.read(READ_BLOCK)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > settings.max_bytes:
                    truncated = "length"
                    response.close()
                    break
        body = b"".join(chunks)
        if truncated == "length":
            body = body[: settings.max_bytes]
        kept = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in response.raw_headers
            if name.lower() != b"transfer-encoding"
        ]
        version = response.version
        return Exchange(
            url=url,
            date=date,
            request_head=_request_head("GET", url, response.request_info.headers),
            status=response.status,
            status_line=f"{response.status} {response.reason or ''}".rstrip(),
            protocol=f"HTTP/{version.major}.{version.minor}" if version else "HTTP/1.1",
            headers=kept,
            body=body,
            ip=peer,
            truncated=truncated,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )


async def fetch_chain(session: object, url: str, settings: ClientSettings, robots=None) -> Outcome:
    """``url`` and its redirects, each hop an exchange; ``robots(url)`` (a coroutine) is
    awaited before every hop and raises FetchFailed to stop the chain."""
    outcome = Outcome()
    seen = {url}
    current = url
    try:
        while True:
            if robots is not None:
                await robots(current)
            hop = await exchange(session, current, settings)
            outcome.exchanges.append(hop)
            location = dict((k.lower(), v) for k, v in hop.headers).get("location")
            if hop.status not in REDIRECTS or not location:
                break
            target = urljoin(current, location.strip())
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise FetchFailed("bad_redirect", f"redirect to {target[:100]!r}")
            if target in seen:
                raise FetchFailed("redirect_loop", f"redirect loop at {target[:100]}")
            if len(outcome.exchanges) > settings.max_redirects:
                raise FetchFailed("too_many_redirects", f"more than {settings.max_redirects}")
            seen.add(target)
            current = target
    except Exception as error:  # noqa: BLE001 - sorted into classes; the rest re-raised
        outcome.error, outcome.detail = classify(error)
        return outcome
    final = outcome.final
    if final is not None and final.status in (429, 503):
        outcome.error = f"http_{final.status}"
        outcome.detail = f"HTTP {final.status}"
    return outcome


def monotonic_after(seconds: float) -> float:
    return time.monotonic() + seconds
