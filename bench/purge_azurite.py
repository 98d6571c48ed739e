"""Benchmark: purge of N expired blobs on Azurite (default 100,000). Prints the time and
blobs per second of the sweep step that deletes them (list + delete), and of creating them.

    .venv/bin/python bench/purge_azurite.py [--n 100000] [--concurrency 256]

Goal: 100,000 blobs in at most 60 s. Not a test: it prints figures and asserts nothing
about speed. Azurite runs in memory on a free loopback port and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.azurite import Azurite

from klasblik.server.retention.purge import sweep
from klasblik.server.storage.blobs.azure import AzureBlobStore
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name

PAYLOAD = b"\xff\xd8\xff" + b"\x00" * 2048  # a small "thumbnail": the count matters here


async def fill(store: AzureBlobStore, n: int, concurrency: int) -> float:
    names = [(thumbnail_name if i % 2 == 0 else tabs_name)(i // 2) for i in range(n)]
    queue = iter(names)
    started = time.monotonic()
    done = 0

    async def worker() -> None:
        nonlocal done
        for name in queue:
            await store.put(name, PAYLOAD)
            done += 1
            if done % 10000 == 0:
                print(f"  created {done}/{n}", file=sys.stderr, flush=True)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="expired blobs to purge")
    parser.add_argument("--concurrency", type=int, default=32, help="uploads in flight")
    parser.add_argument("--azurite", type=Path, help="another azurite-blob executable to use")
    args = parser.parse_args()

    azurite = Azurite(binary=args.azurite)
    try:
        azurite.start()
    except BaseException as exc:  # pytest.fail outside pytest
        sys.exit(f"cannot start Azurite: {exc}")
    store = AzureBlobStore(azurite.connection_string, "bench")
    try:
        await store.check()
        print(f"creating {args.n} blobs on Azurite ({args.concurrency} in flight)…", flush=True)
        fill_s = await fill(store, args.n, args.concurrency)
        print(f"created {args.n} blobs in {fill_s:.1f} s ({args.n / fill_s:.0f} blobs/s)")

        progress_at = [time.monotonic()]

        def progress(step: str, count: int) -> None:
            if time.monotonic() - progress_at[0] >= 5:
                progress_at[0] = time.monotonic()
                print(f"  {step}: {count}", file=sys.stderr, flush=True)

        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=48)
        started = time.monotonic()
        deleted = await sweep(store, lambda: later, dt.timedelta(hours=47.25), progress=progress)
        took = time.monotonic() - started
        left = [b async for b in store.list()]
        mode = {
            True: "batch delete",
            False: "single deletes (batch delete unavailable)",
            None: "unknown",
        }[store.batch_delete_works]
        print(
            f"purged N={deleted} expired blobs in {took:.1f} s: {deleted / took:.0f} blobs/s "
            f"via {mode}; {len(left)} left; goal for 100,000: <= 60 s"
        )
    finally:
        await store.close()
        azurite.stop()


if __name__ == "__main__":
    asyncio.run(main())
