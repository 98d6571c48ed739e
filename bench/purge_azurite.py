"""Benchmark: purge of N expired blobs on Azurite (default 100,000). Prints the time and
blobs per second of the sweep step that deletes them (list + delete), and of creating them.

    .venv/bin/python bench/purge_azurite.py [--n 100000] [--concurrency 64] [--no-pin]

Goal: 100,000 blobs in at most 60 s. Not a test: it prints figures and asserts nothing
about speed. Azurite runs in memory on a free loopback port, on core 1 with the benchmark
on core 0 (``taskset``; ``--no-pin`` leaves them to the scheduler), and is stopped at the
end. Azurite's in-memory store slows down as it fills (each write looks the blob up among
all of them): 430 writes/s for the first 10,000, 68/s at 40,000, so 100,000 do not fit in
minutes here.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
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
    last = [started]
    done = 0

    async def worker() -> None:
        nonlocal done
        for name in queue:
            await store.put(name, PAYLOAD)
            done += 1
            if done % 10000 == 0:
                now = time.monotonic()
                rate = 10000 / (now - last[0])
                last[0] = now
                print(
                    f"  created {done}/{n}, the last 10,000 at {rate:.0f}/s",
                    file=sys.stderr,
                    flush=True,
                )

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="expired blobs to purge")
    parser.add_argument("--concurrency", type=int, default=64, help="uploads in flight")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    parser.add_argument("--azurite", type=Path, help="another azurite-blob executable to use")
    args = parser.parse_args()

    azurite = Azurite(binary=args.azurite)
    try:
        azurite.start()
    except BaseException as exc:  # pytest.fail outside pytest
        sys.exit(f"cannot start Azurite: {exc}")
    if not args.no_pin and len(os.sched_getaffinity(0)) >= 2 and azurite.proc is not None:
        os.sched_setaffinity(0, {0})
        subprocess.run(
            ["taskset", "-a", "-p", "-c", "1", str(azurite.proc.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print("benchmark on core 0, Azurite on core 1")
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
            False: "single deletes (batch delete refused)",
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
