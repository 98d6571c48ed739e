"""Benchmark: how long the blob sweep and the nightly purge hold the event loop, over
100,000 stored blobs, on the local folder store and on Azurite, old and new listing side
by side in one run.

    .venv/bin/python bench/retention_stalls.py [--n 100000] [--stores local,azure]

A ticker task sleeps 1 ms at a time while the work runs; a *stall* is how much later than
asked it woke (the time the loop was held by something else), and beside it the longest
stretch of the loop thread's own CPU time within one tick (on a machine whose cores are
busy, a stall can be mostly waiting for a core; the CPU time is what the code held).
Per store:

1. ``before``: a dry-run sweep (lists every blob, deletes nothing) through the listing as
   it was: the local store built and sorted the whole listing on a thread and then handed
   it out without yielding; Azure listed in the service's default pages of 5,000; and no
   collector policy (as the server was then);
2. ``after``: the same dry-run sweep through today's streamed listing, beside the server's
   collector policy (``live/collector.py``), as in the server; and so the next two;
3. ``sweep``: the real sweep, half of the blobs (those written "49 hours ago") deleted;
4. ``purge``: the nightly purge on an empty roster, deleting every blob left (orphans).

Then it checks what is left: nothing, and (local) no folder under the store's own.
Not a test: it prints figures (goal: every stall under 10 ms) and asserts nothing about
speed. Azurite runs in memory on a free loopback port and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.azurite import Azurite

from klasblik.server.live import collector
from klasblik.server.retention.purge import purge, sweep
from klasblik.server.settings import load_settings
from klasblik.server.storage.blobs import azure as azure_module
from klasblik.server.storage.blobs.azure import AzureBlobStore
from klasblik.server.storage.blobs.base import (
    BlobInfo,
    BlobStore,
    tabs_name,
    thumbnail_name,
    thumbnail_place_name,
)
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database

PAYLOAD = b"\xff\xd8\xff" + b"\x00" * 1024
MAX_AGE = dt.timedelta(hours=48)


class StallMeter:
    """A task that sleeps ``tick`` at a time and records how late it woke; and the
    garbage collector's pauses (a ``gc.callbacks`` hook) meanwhile."""

    def __init__(self, tick: float = 0.001) -> None:
        self.tick = tick
        self.late: list[float] = []
        self.held: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self.gc_pauses: list[tuple[float, int]] = []
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((time.perf_counter() - self._gc_started, info["generation"]))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.tick
            cpu = time.thread_time()
            await asyncio.sleep(self.tick)
            self.late.append(max(0.0, loop.time() - asked))
            # the loop thread's own CPU time over the same tick: what held the loop, apart
            # from waiting for a core on a busy machine
            self.held.append(time.thread_time() - cpu)

    def __enter__(self) -> StallMeter:
        self._task = asyncio.create_task(self._run())
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        gc.callbacks.remove(self._on_gc)

    def figures(self) -> str:
        if not self.late:
            return "no ticks"
        ms = sorted(x * 1000 for x in self.late)
        over = sum(1 for x in ms if x > 10)
        gc_max, gc_gen = max(self.gc_pauses, default=(0.0, 0))
        held = max(self.held, default=0.0) * 1000
        return (
            f"longest stall {ms[-1]:6.1f} ms (loop thread CPU in it {held:5.1f} ms), "
            f"p99 {ms[int(len(ms) * 0.99)]:5.1f} ms, "
            f"median {statistics.median(ms):4.2f} ms, {over} over 10 ms ({len(ms)} ticks); "
            f"longest collector pause {gc_max * 1000:.1f} ms (generation {gc_gen})"
        )


def names_for(n: int) -> list[str]:
    """``n`` blob names, three per student, as the server writes them."""
    kinds = (thumbnail_name, thumbnail_place_name, tabs_name)
    return [kinds[i % 3](i // 3) for i in range(n)]


def old_local_list(store: LocalBlobStore) -> Callable[[str], AsyncIterator[BlobInfo]]:
    """The local listing before this work: one thread builds and sorts the whole list,
    then every entry is handed out without the loop running in between."""

    async def listing(prefix: str = "") -> AsyncIterator[BlobInfo]:
        def scan() -> list[BlobInfo]:
            out: list[BlobInfo] = []
            start = store.root / prefix.rsplit("/", 1)[0] if "/" in prefix else store.root
            for dirpath, _dirs, files in os.walk(start):
                for fname in files:
                    full = Path(dirpath) / fname
                    name = full.relative_to(store.root).as_posix()
                    if fname.startswith(".tmp-") or not name.startswith(prefix):
                        continue
                    st = full.stat()
                    out.append(
                        BlobInfo(name, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))
                    )
            return sorted(out, key=lambda b: b.name)

        for info in await asyncio.to_thread(scan):
            yield info

    return listing


async def measured(label: str, work: Awaitable[Any], *, collector_on: bool = True) -> Any:
    """Run ``work`` under the stall meter; with ``collector_on``, beside the server's own
    collector policy (``live/collector.py``: long-lived objects frozen), as in a server
    since that policy; without, as a server before it."""
    started = time.monotonic()
    policy = None
    if collector_on:
        collector.freeze()
        policy = asyncio.create_task(collector.run(lambda: 0, lambda: 0, lambda: 1))
    try:
        with StallMeter() as meter:
            result = await work
    finally:
        if policy is not None:
            policy.cancel()
    print(f"  {label:<34} {time.monotonic() - started:6.1f} s  {meter.figures()}", flush=True)
    return result


async def fill_local(root: Path, n: int) -> None:
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=49)).timestamp()

    def write() -> None:
        for i, name in enumerate(names_for(n)):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(PAYLOAD)
            if (i // 3) % 2 == 0:  # every other student's blobs are old
                os.utime(path, (old, old))

    await asyncio.to_thread(write)


async def fill_azure(store: AzureBlobStore, n: int) -> dt.datetime:
    """Upload; return the moment after which the first half counts as 49 hours old."""
    names = names_for(n)
    todo = iter(names[: n // 2])

    async def worker() -> None:
        for name in todo:
            await store.put(name, PAYLOAD)

    await asyncio.gather(*(worker() for _ in range(32)))
    await asyncio.sleep(1.1)  # Azurite's timestamps have whole seconds
    split = dt.datetime.now(dt.UTC)
    await asyncio.sleep(1.1)
    todo = iter(names[n // 2 :])
    await asyncio.gather(*(worker() for _ in range(32)))
    return split


async def run_store(kind: str, n: int, azurite: Path | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="klasblik-stalls-"))
    settings = load_settings(
        env={},
        overrides={
            "enrollment_token": "t",
            "database_url": f"sqlite+aiosqlite:///{tmp}/k.db",
            "blob_store": f"file:{tmp}/blobs",
        },
    )
    engine = create_engine(settings.database_url)
    await upgrade_database(engine)
    sm = sessionmaker(engine)
    emulator: Azurite | None = None
    store: BlobStore
    if kind == "local":
        store = LocalBlobStore(tmp / "blobs")
        print(f"{kind}: writing {n} blobs…", flush=True)
        await fill_local(tmp / "blobs", n)
        now = dt.datetime.now(dt.UTC)
    else:
        emulator = Azurite(binary=azurite)
        emulator.start()
        store = AzureBlobStore(emulator.connection_string, "stalls")
        await store.check()
        print(f"{kind}: uploading {n} blobs to Azurite…", flush=True)
        split = await fill_azure(store, n)
        now = split + dt.timedelta(hours=47, minutes=59, seconds=59)
    try:
        print(f"{kind}, {n} blobs:")
        if isinstance(store, LocalBlobStore):
            store.list = old_local_list(store)  # type: ignore[method-assign]
        else:
            azure_module.LIST_PAGE = 5000
        found = await measured(
            "before: dry-run sweep, old listing",
            sweep(store, lambda: now, MAX_AGE, dry_run=True),
            collector_on=False,
        )
        if isinstance(store, LocalBlobStore):
            del store.list
        else:
            azure_module.LIST_PAGE = 50
        again = await measured(
            "after: dry-run sweep, streamed", sweep(store, lambda: now, MAX_AGE, dry_run=True)
        )
        deleted = await measured("after: sweep (deletes)", sweep(store, lambda: now, MAX_AGE))
        report = await measured("after: nightly purge (orphans)", purge(sm, store, settings))
        left = [b async for b in store.list()]
        extra = ""
        if isinstance(store, LocalBlobStore):
            folders = [d for d, _s, _f in os.walk(store.root) if Path(d) != store.root]
            extra = f", {len(folders)} folder(s) left under the store"
        print(
            f"  found old {found}/{again}, swept {deleted}, purged {len(report.orphaned_blobs)} "
            f"orphaned; {len(left)} blob(s) left{extra}"
        )
    finally:
        await store.close()
        await engine.dispose()
        if emulator is not None:
            emulator.stop()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="stored blobs")
    parser.add_argument("--stores", default="local,azure", help="local, azure or both")
    parser.add_argument("--azurite", type=Path, help="another azurite-blob executable to use")
    args = parser.parse_args(argv)
    print(f"python bench/retention_stalls.py --n {args.n} --stores {args.stores}")
    for kind in args.stores.split(","):
        await run_store(kind, args.n, args.azurite)


if __name__ == "__main__":
    asyncio.run(main())
