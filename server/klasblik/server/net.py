"""The client's address: the direct peer, unless that peer is a configured trusted proxy,
in which case the nearest untrusted address in X-Forwarded-For / Forwarded counts.
A forwarding header sent by anyone else is ignored."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from aiohttp import web

from klasblik.server.keys import PROXIES

__all__ = ["client_ip", "forwarded_client_ip", "is_loopback", "parse_networks"]

_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)\]?(?::\d+)?"?', re.IGNORECASE)

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
    return forwarded_client_ip(request, request.app[PROXIES])


def forwarded_client_ip(request: web.BaseRequest, proxies: tuple[Network, ...]) -> str:
    peer = _ip(request.remote or "")
    if peer is None:
        return request.remote or "unknown"
    if not proxies or not _trusted(peer, proxies):
        return str(peer)
    chain: list[str] = []
    for header in request.headers.getall("Forwarded", []):
        chain.extend(_FORWARDED_FOR.findall(header))
    if not chain:
        for header in request.headers.getall("X-Forwarded-For", []):
            chain.extend(part for part in header.split(","))
    # Walk from the nearest hop back: the first address not itself a trusted proxy is
    # the client. Anything further left was written by the client and proves nothing.
    current = peer
    for hop in reversed(chain):
        addr = _ip(hop)
        if addr is None:
            break
        current = addr
        if not _trusted(addr, proxies):
            break
    return str(current)


def is_loopback(ip: str) -> bool:
    addr = _ip(ip)
    return addr is not None and addr.is_loopback
