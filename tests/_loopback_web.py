"""Real HTTP servers on loopback addresses (127.0.0.2, 127.0.0.3, ...: one "host" each) for
the fetch tests, the example's test and the benchmark. Nothing here reaches beyond 127/8."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[BaseHTTPRequestHandler], None]


def send(
    h: BaseHTTPRequestHandler,
    status: int = 200,
    body: bytes = b"",
    content_type: str = "text/html; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def page(body: bytes | str, content_type: str = "text/html; charset=utf-8", **kw) -> Handler:
    data = body.encode() if isinstance(body, str) else body
    return lambda h: send(h, 200, data, content_type, **kw)


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Handler:
    return lambda h: send(h, code, body, headers=headers)


def redirect(location: str, code: int = 301) -> Handler:
    return lambda h: send(h, code, b"", headers={"Location": location})


def gzipped(text: str) -> Handler:
    data = gzip.compress(text.encode())
    return lambda h: send(h, 200, data, headers={"Content-Encoding": "gzip"})


def brotli_page(text: str) -> Handler:
    import brotli

    data = brotli.compress(text.encode())
    return lambda h: send(h, 200, data, headers={"Content-Encoding": "br"})


def chunked(parts: list[bytes]) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for part in parts:
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    return handle


def slow(body: bytes, pause: float, pieces: int = 4) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        step = max(1, len(body) // pieces)
        for start in range(0, len(body), step):
            h.wfile.write(body[start : start + step])
            h.wfile.flush()
            time.sleep(pause)

    return handle


def reset(h: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP RST, before any answer."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    h.connection.close()


def delayed(handler: Handler, seconds: float) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        handler(h)

    return handle


class Site:
    """One loopback host serving ``routes`` (path with query → handler); unknown paths 404.
    ``hits`` counts requests by path, ``times`` their arrival times."""

    def __init__(self, address: str, routes: dict[str, Handler] | None = None) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.hits: Counter[str] = Counter()
        self.times: list[tuple[str, float]] = []
        self.headers: list[dict[str, str]] = []
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                site.hits[self.path] += 1
                site.times.append((self.path, time.monotonic()))
                site.headers.append(dict(self.headers))
                handler = site.routes.get(self.path) or site.routes.get("*")
                if handler is None:
                    send(self, 404, b"not found", "text/plain")
                else:
                    handler(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), _Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, client: None  # a client that went away
        self.address = address
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://{self.address}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """A host that accepts connections (the kernel does) and never answers."""

    def __init__(self, address: str) -> None:
        self.socket = socket.socket()
        self.socket.bind((address, 0))
        self.socket.listen(64)
        self.address = address
        self.port = self.socket.getsockname()[1]

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}:{self.port}{path}"

    def close(self) -> None:
        self.socket.close()
