"""URL normalisation, so that one page reached by several spellings is one key.

``normalize_url`` applies, in order:

- scheme and host lowercased; a missing scheme (``example.com/a``) taken as ``http``;
- a trailing dot on the host, ``user:password@`` and the default port (80 for http,
  443 for https) removed; ``www.`` is kept (it may be a different site);
- the fragment (``#...``) removed;
- tracking parameters removed from the query: ``utm_*``, ``fbclid``, ``gclid``,
  ``dclid``, ``msclkid``, ``mc_cid``, ``mc_eid``, ``igshid``, ``yclid``, ``_ga``,
  ``ref_src``; the other parameters keep their order; an empty query is dropped;
- trailing slashes of the path removed (``/a/`` is ``/a``; the root path is empty);
- percent-escapes of unreserved characters decoded, others uppercased
  (``%7e`` is ``~``, ``%2f`` is ``%2F``).

A string that is not an http(s) URL is returned stripped but otherwise unchanged; an
http(s) URL that does not parse (``http://example.com:abc/``, a host with spaces or a lone
surrogate) is one too, and ``checked_url`` raises ``BadUrl`` for it. A host is the part
after the *last* ``@`` of the authority, as browsers read it (``http://a@b@c.org/`` is on
``c.org``).

``surt_key`` is the key links are de-duplicated by, in the manner of Common Crawl's index
(SURT): the normalised URL without its scheme and a leading ``www.``, the host's labels
reversed: ``http://www.example.com/a`` and ``https://example.com/a`` are both
``com,example)/a``. Of the URLs of one key, ``preferred_url`` keeps https before http, a host
without ``www.`` before one with, then the first in code-point order.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from gpt2cli.errors import Gpt2Error

TRACKING_PARAMETERS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "yclid",
        "_ga",
        "ref_src",
    }
)
DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in TRACKING_PARAMETERS


def _normalize_escapes(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE.sub(replace, text)


def _clean_query(query: str) -> str:
    kept = [part for part in query.split("&") if part and not _is_tracking(part.split("=", 1)[0])]
    return "&".join(_normalize_escapes(part) for part in kept)


# The common shape, parsed without urlsplit (which is several times slower); anything
# else (IPv6 literals, odd characters in the authority) takes the urlsplit path.
_FAST = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*)://(?:[^@/?#\[\]]*@)?([^/?#:@\[\]]+)(?::(\d{0,5}))?"
    r"(/[^?#]*)?(?:\?([^#]*))?(?:#.*)?",
    re.S,
)
# Characters no host holds (after the authority is split at its last "@" and its port).
_BAD_HOST = re.compile('[\x00-\x20\x7f"#/<>?@\\[\\]\\\\^`{|}\ud800-\udfff]')


class BadUrl(ValueError):
    """An http(s) URL that does not parse as one."""


_Parts = tuple[str, str, int | None, str, str]  # scheme, host, port, path, query


def _with_scheme(text: str) -> str | None:
    if _SCHEME.match(text):
        return text
    if text.startswith("//"):
        return "http:" + text
    if "." in text.split("/", 1)[0] and " " not in text:
        return "http://" + text
    return None


def _parse(url: str) -> _Parts | None:
    """(scheme, host, port, path, query), lowercased scheme and host; None if not http(s).

    Raises BadUrl for an http(s) URL that does not parse (a bad port, no host, a host
    with characters no host has)."""
    text = _with_scheme(url.strip())
    if text is None:
        return None
    match = _FAST.fullmatch(text)
    if match:
        scheme, host, port_text, path, query = match.groups()
        port = int(port_text) if port_text else None
        scheme, host = scheme.lower(), host.lower()
        path = path or ""
    else:
        scheme = text.split(":", 1)[0].lower()
        if scheme not in DEFAULT_PORTS:
            return None
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as error:
            reason = str(error)
            raise BadUrl(reason[:1].lower() + reason[1:]) from None
        host, path, query = parts.hostname, parts.path, parts.query
    if scheme not in DEFAULT_PORTS:
        return None
    host = (host or "").rstrip(".")
    if port is not None and port > 65535:
        raise BadUrl(f"port {port} out of range")
    if not host:
        raise BadUrl("no host")
    if ":" not in host and _BAD_HOST.search(host):
        raise BadUrl(f"{host[:40]!r} is not a host name")
    return scheme, host, port, path, query or ""


def checked_url(url: str) -> tuple[str, str]:
    """``(normalize_url(url), domain_of(url))``; raises BadUrl for an http(s) URL that does
    not parse or a string that is not Unicode text (a lone surrogate)."""
    if not url.isascii():
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:
            raise BadUrl("not valid Unicode (a lone surrogate)") from None
    parts = _parse(url)
    if parts is None:
        return url.strip(), ""
    return _normalized(parts), parts[1]


def normalize_url(url: str) -> str:
    """The canonical spelling of ``url`` (see the module docstring)."""
    return normalize_with_domain(url)[0]


def normalize_with_domain(url: str) -> tuple[str, str]:
    """``(normalize_url(url), domain_of(url))`` from one parse."""
    try:
        parts = _parse(url)
    except BadUrl:
        parts = None
    if parts is None:
        return url.strip(), ""
    return _normalized(parts), parts[1]


def _normalized(parts: _Parts) -> str:
    scheme, host, port, path, query = parts
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if "%" in path:
        path = _normalize_escapes(path)
    path = path.rstrip("/")
    query = _clean_query(query) if query else ""
    return f"{scheme}://{netloc}{path}{'?' + query if query else ''}"


_NORMALIZED = re.compile(r"https?://(\[[^\]]*\]|[^/?#:]*)(:\d+)?(.*)", re.S)


def surt_key(normalized: str) -> str:
    """The de-duplication key of a *normalised* URL (see the module docstring)."""
    match = _NORMALIZED.fullmatch(normalized)
    if match is None:
        return normalized
    host, port, rest = match.groups()
    if not host.startswith("[") and not host.replace(".", "").isdigit():
        if host.startswith("www.") and "." in host[4:]:
            host = host[4:]
        host = ",".join(reversed(host.split(".")))
    return f"{host}{port or ''}){rest or '/'}"


def preferred_url(first: str, second: str) -> str:
    """Which of two URLs of one key is kept: https, no ``www.``, then the smaller."""
    return min(first, second, key=_preference)


def _preference(url: str) -> tuple[bool, bool, str]:
    return (not url.startswith("https:"), "://www." in url[:14], url)


def domain_of(url: str) -> str:
    """The lowercased host of ``url`` without port or trailing dot ('' when there is none)."""
    try:
        parts = _parse(url)
    except BadUrl:
        return ""
    return parts[1] if parts else ""


def matches_domain(domain: str, excluded: set[str] | frozenset[str]) -> bool:
    """Whether ``domain`` is one of ``excluded`` or a subdomain of one.

    ``en.wikipedia.org`` matches ``wikipedia.org``; ``notwikipedia.org`` does not.
    Entries of ``excluded`` are expected lowercased, without a leading dot.
    """
    candidate = domain.lower().rstrip(".")
    while candidate:
        if candidate in excluded:
            return True
        dot = candidate.find(".")
        if dot < 0:
            return False
        candidate = candidate[dot + 1 :]
    return False


def parse_domain(entry: str) -> str:
    """An ``--exclude-domain`` entry as ``matches_domain`` expects it (a URL is accepted)."""
    text = entry.strip().lower()
    if "/" in text:
        text = domain_of(text) or text
    text = text.lstrip("*").lstrip(".").rstrip(".")
    return text


def load_domains(domains: list[str] | None = None, files: list[str] | None = None) -> set[str]:
    """``--exclude-domain`` values and the lines of ``--exclude-domain-file`` files as one set.

    A file holds one domain per line; blank lines and ``#`` comments are ignored.
    """
    result = {parse_domain(entry) for entry in domains or [] if entry.strip()}
    for name in files or []:
        try:
            with open(name, "rb") as handle:
                for number, raw in enumerate(handle, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise Gpt2Error(
                            f"{name}: line {number}: not UTF-8 text",
                            "a domain file holds one domain a line, in UTF-8",
                        ) from None
                    entry = line.split("#", 1)[0].strip()
                    if entry:
                        result.add(parse_domain(entry))
        except OSError as error:
            raise Gpt2Error(f"{name}: {error.strerror or error}") from None
    result.discard("")
    return result
