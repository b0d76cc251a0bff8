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

A string that is not an http(s) URL is returned stripped but otherwise unchanged.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

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


def _split(url: str) -> SplitResult | None:
    text = url.strip()
    if not _SCHEME.match(text):
        if text.startswith("//"):
            text = "http:" + text
        elif "." in text.split("/", 1)[0] and " " not in text:
            text = "http://" + text
        else:
            return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def normalize_url(url: str) -> str:
    """The canonical spelling of ``url`` (see the module docstring)."""
    parts = _split(url)
    if parts is None:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normalize_escapes(parts.path).rstrip("/")
    return urlunsplit((scheme, netloc, path, _clean_query(parts.query), ""))


def domain_of(url: str) -> str:
    """The lowercased host of ``url`` without port or trailing dot ('' when there is none)."""
    parts = _split(url)
    if parts is None:
        return ""
    return (parts.hostname or "").rstrip(".")


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
            with open(name, encoding="utf-8") as handle:
                for line in handle:
                    entry = line.split("#", 1)[0].strip()
                    if entry:
                        result.add(parse_domain(entry))
        except OSError as error:
            raise Gpt2Error(f"{name}: {error.strerror or error}") from None
    result.discard("")
    return result
