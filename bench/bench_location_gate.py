"""How much the location rule costs: the per-frame check of one viewer-device pair, and
address look-ups. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_location_gate.py
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from typing import Any

from klasblik.server.locations.lessonhours import parse_lesson_hours
from klasblik.server.locations.policy import (
    LocationInfo,
    LocationPolicy,
    LocationResolver,
    RemoteInfo,
)


class _Pair:
    def __init__(self, loc: int | None, home: int | None) -> None:
        self.location_id = loc
        self.home_location_id = home


def _per_call(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e9


def main() -> None:
    hours = parse_lesson_hours("mon-fri 08:15-15:30")
    locs = [
        LocationInfo(
            i,
            1,
            "S",
            f"L{i}",
            f"12AB{i:02d}",
            (ipaddress.ip_network(f"10.{i}.0.0/16"), ipaddress.ip_network(f"2001:db8:{i:x}::/48")),
            hours if i % 2 else None,
            "Europe/Amsterdam",
        )
        for i in range(1, 51)
    ]
    policy = LocationPolicy(None, None)  # type: ignore[arg-type]
    policy.locations = {loc.id: loc for loc in locs}
    policy.resolver = LocationResolver(locs)
    now = dt.datetime.now(dt.UTC)
    policy.remote = {3: RemoteInfo(1, 3, now, now + dt.timedelta(hours=1), "x", "it")}
    n = 200_000
    same = _per_call(lambda: policy.gate(_V2, _D2), n)  # type: ignore[arg-type]
    hours_ns = _per_call(lambda: policy.gate(_V1, _D1), n)  # type: ignore[arg-type]
    remote = _per_call(lambda: policy.gate(_VR, _DR), n)  # type: ignore[arg-type]
    away = _per_call(lambda: policy.gate(_V2, _DX), n)  # type: ignore[arg-type]
    cached = _per_call(lambda: policy.resolver.resolve("10.37.1.1"), n)
    fresh_r = LocationResolver(locs, cache_size=10**7)
    addrs = [f"10.{i % 50 + 1}.{i // 256 % 256}.{i % 256}" for i in range(20_000)]
    start = time.perf_counter()
    for a in addrs:
        fresh_r.resolve(a)
    uncached = (time.perf_counter() - start) / len(addrs) * 1e9
    print("location rule, per viewer-device pair and frame (50 locations, 100 networks):")
    print(f"  same location, no lesson hours     {same:8.0f} ns")
    print(f"  same location, with lesson hours   {hours_ns:8.0f} ns")
    print(f"  remote-lesson mode                 {remote:8.0f} ns")
    print(f"  elsewhere                          {away:8.0f} ns")
    print("address to location:")
    print(f"  cached                             {cached:8.0f} ns")
    print(f"  first look-up (linear scan)        {uncached:8.0f} ns")
    checks = 1000 * 2 * 0.5  # 1000 watched devices, 2 viewers each, a grid frame every 2 s
    print(
        f"  {checks:.0f} checks/s (1000 devices, 2 viewers, 0.5 frames/s): "
        f"{checks * hours_ns / 1e6:.2f} ms of CPU per second"
    )


_V1, _D1 = _Pair(1, 1), _Pair(1, 1)
_V2, _D2 = _Pair(2, 2), _Pair(2, 2)
_VR, _DR = _Pair(None, 3), _Pair(None, 3)
_DX = _Pair(None, 2)

if __name__ == "__main__":
    main()
