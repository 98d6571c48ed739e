"""The client's address: the direct peer, unless that peer is a configured trusted proxy,
in which case the nearest untrusted hop of the one header those proxies write
(``proxy_header``: X-Forwarded-For or Forwarded) counts: the hop the proxy itself
appended, walking from the right past the trusted proxies only. Everything to the left of
it was written by the client and proves nothing; the other forwarding header is never
read (a proxy that appends to X-Forwarded-For passes a client's Forwarded on untouched).
A hop that is not an address (``unknown``, an obfuscated name, garbage) ends the walk with
no address: it locates nowhere. A forwarding header sent by anyone else is ignored."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from aiohttp import web

from klasblik.server.keys import PROXIES, SETTINGS

__all__ = [
    "UNKNOWN",
    "client_ip",
    "forwarded_client_ip",
    "forwarded_for",
    "is_loopback",
    "parse_networks",
]

#: the address of a client a trusted proxy could not name: it is at no location
UNKNOWN = "unknown"

# One Forwarded pair: a token, "=", and a token or a quoted string (RFC 7239, RFC 7230).
_PAIR = re.compile(r'\s*([^=;,\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*([;,]?)')

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(s, strict=False) for s in specs)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.count(":") == 1 and "." in text:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: object, proxies: tuple[Network, ...]) -> bool:
    return any(addr in net for net in proxies)


def client_ip(request: web.Request) -> str:
    """The client's address for ``request``, believing only the app's trusted proxies."""
    header = request.app[SETTINGS].proxy_header
    return forwarded_client_ip(request, request.app[PROXIES], header)


def forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of a Forwarded header, element by element, in order: one per
    element (an element without ``for`` counts as an unknown hop)."""
    hops: list[str] = []
    current: str | None = None
    pos = 0
    while pos < len(value):
        m = _PAIR.match(value, pos)
        if m is None or m.end() == pos:
            hops.append(UNKNOWN)  # not a pair: nothing after it can be trusted to parse
            return hops
        key, raw, sep = m.group(1).lower(), m.group(2), m.group(3)
        if key == "for":
            current = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        pos = m.end()
        if sep == "," or pos >= len(value):
            hops.append(current if current is not None else UNKNOWN)
            current = None
    return hops


def _hop(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1] or [2001:db8::1]:4711
        text = text[1:].split("]", 1)[0]
    return _ip(text)


def forwarded_client_ip(
    request: web.BaseRequest, proxies: tuple[Network, ...], header: str = "x-forwarded-for"
) -> str:
    peer = _ip(request.remote or "")
    if peer is None:
        return request.remote or UNKNOWN
    if not proxies or not _trusted(peer, proxies):
        return str(peer)
    chain: list[str] = []
    if header == "forwarded":
        for line in request.headers.getall("Forwarded", []):
            chain.extend(forwarded_for(line))
    else:
        for line in request.headers.getall("X-Forwarded-For", []):
            chain.extend(line.split(","))
    # Walk from the nearest hop back: the first address not itself a trusted proxy is
    # the client. Anything further left was written by the client and proves nothing.
    current = peer
    for hop in reversed(chain):
        addr = _hop(hop)
        if addr is None:
            return UNKNOWN
        current = addr
        if not _trusted(addr, proxies):
            break
    return str(current)


def is_loopback(ip: str) -> bool:
    addr = _ip(ip)
    return addr is not None and addr.is_loopback
