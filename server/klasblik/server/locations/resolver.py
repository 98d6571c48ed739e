"""Which school location an address is at: CIDR networks (IPv4 and IPv6) per location,
most specific first, with a bounded cache of answers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Protocol

from klasblik.server.net import Network

__all__ = ["LocationResolver", "parse_location_networks"]


class _HasNetworks(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def networks(self) -> tuple[Network, ...]: ...


def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def parse_location_networks(text: str) -> tuple[Network, ...]:
    """CIDRs separated by spaces, commas or new lines; raise ValueError naming a bad one."""
    out: list[Network] = []
    for part in text.replace(",", " ").split():
        try:
            net = ipaddress.ip_network(part, strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                fixed = ipaddress.ip_network(part, strict=False)
                raise ValueError(f"{part} has host bits set; did you mean {fixed}?") from None
            raise ValueError(f"{part!r} is not an IP network (CIDR, e.g. 203.0.113.0/24)") from None
        if net.prefixlen == 0:
            raise ValueError(f"{part} would count every address as on-site")
        out.append(net)
    return tuple(out)


class LocationResolver:
    """Maps an address to the id of the location whose networks hold it (most specific
    network first), or None. Answers are cached; build a new resolver when networks change."""

    def __init__(self, locations: Iterable[_HasNetworks], cache_size: int = 4096) -> None:
        pairs = [(net, loc.id) for loc in locations for net in loc.networks]
        pairs.sort(key=lambda p: -p[0].prefixlen)
        self._v4 = [(n, i) for n, i in pairs if n.version == 4]
        self._v6 = [(n, i) for n, i in pairs if n.version == 6]
        self._cache: dict[str, int | None] = {}
        self._cache_size = cache_size

    def resolve(self, ip: str) -> int | None:
        try:
            return self._cache[ip]
        except KeyError:
            pass
        addr = _addr(ip)
        found: int | None = None
        if addr is not None:
            table = self._v4 if addr.version == 4 else self._v6
            for net, loc_id in table:
                if addr in net:
                    found = loc_id
                    break
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[ip] = found
        return found
