"""Which addresses a fetch may connect to.

By default only globally routable unicast addresses: never loopback, private (RFC 1918,
unique-local), link-local (169.254.0.0/16, where cloud metadata services live), shared
(100.64.0.0/10), multicast, reserved or unspecified ones. The check runs on the address of
every socket just before it connects (aiohttp's ``socket_factory``), so it holds for IP
literals, for names that resolve to such an address and for every redirect hop, and no
second resolution can slip in between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

AddrInfo = tuple[Any, ...]


class AddressRefused(OSError):
    """A connection to a non-public address, refused by the policy (never attempted)."""


def refusal(address: str) -> str | None:
    """Why ``address`` (an IP literal) may not be reached by default, or None if it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None  # a name, not a literal: checked on what it resolves to
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for name in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:
        return "non-global"
    return None


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(entries: list[str]) -> Networks:
    """``--allow-address`` values (an address or a network in CIDR form)."""
    from gpt2cli.errors import UsageError

    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise UsageError(f"--allow-address {entry!r}: not an IP address or network") from None
    return tuple(networks)


def check_address(address: str, allowed: Networks = ()) -> None:
    """Raise :class:`AddressRefused` for an address the policy refuses (and ``allowed``
    does not let through)."""
    reason = refusal(address)
    if reason is None:
        return
    ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    if any(ip in network for network in allowed):
        return
    raise AddressRefused(f"refused to connect to {address} ({reason} address)")


def socket_factory(
    allow_private: bool, allowed: Networks = ()
) -> Callable[[AddrInfo], socket.socket]:
    """A socket factory for aiohttp's connector that refuses non-public addresses before the
    socket is created (so before any packet is sent)."""

    def make(addr_info: AddrInfo) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not allow_private:
            check_address(str(sockaddr[0]), allowed)
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return make
