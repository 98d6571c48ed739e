"""Benchmark: how long the blob sweep and the nightly purge hold the event loop, over
100,000 stored blobs on the local folder store and 20,000 on Azurite, the code before and
after side by side in one run.

    .venv/bin/python bench/retention_stalls.py [--n 100000] [--stores local,azure] [--no-pin]

A ticker task sleeps 1 ms at a time while the work runs; a *stall* is how much later than
asked it woke. For every tick it also takes the loop thread's own CPU time and the whole
process's (the loop plus the store's threads): a long tick in which the process used little
CPU was a wait for a core that another process held (on this shared 2-core machine: the
emulator, other work), not the server's doing. With Azure, the benchmark (the server) runs
on core 0 and Azurite on core 1 (``taskset``; in production the store is another machine);
``--no-pin`` leaves them to the scheduler.

Local store:

1. ``before``: a dry-run sweep (lists every blob, deletes nothing) through the listing as
   it was before streaming: built and sorted whole on a thread, then handed out without
   yielding, and no collector policy;
2. ``after``: the same dry-run sweep through the streamed listing, beside the server's
   collector policy (``live/collector.py``), as in the server; and so the next two;
3. ``sweep``: the real sweep, half of the blobs (those written "49 hours ago") deleted;
4. ``purge``: the nightly purge on an empty roster, deleting every blob left (orphans).

Azure (Azurite): the blobs are written in three generations a few seconds apart, so that
each sweep has its own old third: ``before`` lists and deletes through the asynchronous
client on the event loop as the store did before (pages of 50, 32 single deletes in
flight), ``after`` through today's store (the synchronous client on the store's threads,
pages of 250, Blob Batch deletes); then the purge deletes the last third as orphans.

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
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.core.exceptions import ResourceNotFoundError
from sqlalchemy.orm import configure_mappers
from tests.support.azurite import Azurite

from klasblik.server.live import collector
from klasblik.server.retention.purge import purge, sweep
from klasblik.server.settings import load_settings
from klasblik.server.storage.blobs.azure import AzureBlobStore
from klasblik.server.storage.blobs.base import (
    BlobInfo,
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
        self.held: list[float] = []  # the loop thread's CPU per tick
        self.process: list[float] = []  # the whole process's CPU per tick (all threads)
        self._task: asyncio.Task[None] | None = None
        self.gc_pauses: list[tuple[float, int]] = []
        self._gc_started = 0.0
        self._gc_spans: list[tuple[float, float]] = []  # (start, end) of each collection
        self._ticks: list[tuple[float, float]] = []  # (start, end) of each tick

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            end = time.perf_counter()
            self.gc_pauses.append((end - self._gc_started, info["generation"]))
            self._gc_spans.append((self._gc_started, end))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.tick
            cpu = time.thread_time()
            proc = time.process_time()
            began = time.perf_counter()
            await asyncio.sleep(self.tick)
            self._ticks.append((began, time.perf_counter()))
            self.late.append(max(0.0, loop.time() - asked))
            # the loop thread's own CPU time over the same tick: what held the loop, apart
            # from waiting for a core on a busy machine; and the process's, which adds the
            # store's threads (they hold the GIL, and on one core the core, meanwhile)
            self.held.append(time.thread_time() - cpu)
            self.process.append(time.process_time() - proc)

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
        worst = max(range(len(self.late)), key=self.late.__getitem__)
        over = sum(1 for x in ms if x > 10)
        own_over = sum(1 for x in self.process if x > 0.010)
        gc_max, gc_gen = max(self.gc_pauses, default=(0.0, 0))
        busiest = max(range(len(self.process)), key=self.process.__getitem__)
        start, end = self._ticks[busiest]
        # how much of the busiest tick the collector took (in any thread: it holds the GIL)
        in_gc = sum(max(0.0, min(end, b) - max(start, a)) for a, b in self._gc_spans)
        return (
            f"longest stall {ms[-1]:6.1f} ms (CPU in it: loop {self.held[worst] * 1000:.1f}, "
            f"process {self.process[worst] * 1000:.1f} ms), p99 {ms[int(len(ms) * 0.99)]:5.1f} "
            f"ms, {over} over 10 ms of {len(ms)} ticks; most CPU in a tick: loop "
            f"{max(self.held) * 1000:.1f} ms, process {max(self.process) * 1000:.1f} ms "
            f"(collector {in_gc * 1000:.1f} ms of it; {own_over} ticks over 10 ms); "
            f"longest collector pause {gc_max * 1000:.1f} ms "
            f"(generation {gc_gen})"
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


def old_azure(store: AzureBlobStore) -> tuple[Any, Any]:
    """The Azure listing and delete before this work, on the event loop through the
    asynchronous client: pages of 50, and (batches failing on Azurite then) single deletes
    through 32 workers."""

    async def listing(prefix: str = "") -> AsyncIterator[BlobInfo]:
        async for item in store._container.list_blobs(
            name_starts_with=prefix or None, results_per_page=50
        ):
            yield BlobInfo(item.name, int(item.size or 0), item.last_modified)

    async def delete(names: Any) -> int:
        todo = iter(list(dict.fromkeys(names)))
        deleted = 0

        async def worker() -> None:
            nonlocal deleted
            for name in todo:
                try:
                    await store._container.delete_blob(name)
                    deleted += 1
                except ResourceNotFoundError:
                    pass

        await asyncio.gather(*(worker() for _ in range(32)))
        return deleted

    return listing, delete


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


async def fill_azure(store: AzureBlobStore, n: int, parts: int) -> list[dt.datetime]:
    """Upload ``n`` blobs in ``parts`` generations; return the moments between them (a
    sweep "48 hours after" the first deletes the first generation, and so on)."""
    names = names_for(n)
    thirds = [names[i * n // parts : (i + 1) * n // parts] for i in range(parts)]
    splits: list[dt.datetime] = []
    for i, part in enumerate(thirds):
        todo = iter(part)

        async def worker(todo: Any = todo) -> None:
            for name in todo:
                await store.put(name, PAYLOAD)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(64)))
        took = time.monotonic() - started
        print(f"  generation {i + 1}: {len(part)} blobs in {took:.0f} s", flush=True)
        if i < parts - 1:
            await asyncio.sleep(1.1)  # Azurite's timestamps have whole seconds
            splits.append(dt.datetime.now(dt.UTC))
            await asyncio.sleep(1.1)
    return splits


def pin(emulator: Azurite) -> str:
    """The benchmark (the server) on core 0, Azurite and all its threads on core 1."""
    assert emulator.proc is not None
    os.sched_setaffinity(0, {0})  # before the store makes its threads: they inherit it
    subprocess.run(
        ["taskset", "-a", "-p", "-c", "1", str(emulator.proc.pid)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return "server on core 0, Azurite on core 1"


async def run_store(
    kind: str,
    n: int,
    azurite: Path | None,
    pinned: bool,
    after_only: bool = False,
    bulk: tuple[str, ...] = ("threads", "worker"),
) -> None:
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
    # the ORM's one-time set-up (about 20 ms on the loop at the first query), done long
    # before any purge in a running server: not the purge's doing
    configure_mappers()
    sm = sessionmaker(engine)
    emulator: Azurite | None = None
    stores: dict[str, AzureBlobStore] = {}
    try:
        if kind == "local":
            await run_local(tmp, n, sm, settings)
            return
        emulator = Azurite(binary=azurite)
        emulator.start()
        where = pin(emulator) if pinned else "not pinned"
        # the same container through both ways of listing and deleting (``bulk``); made
        # after pinning, so the store's threads and its worker process inherit core 0
        for way in bulk:
            stores[way] = AzureBlobStore(
                emulator.connection_string, "stalls", worker=way == "worker"
            )
        store = stores[bulk[0]]
        try:
            await store.check()
            # one generation per sweep that deletes, and the last for the purge
            parts = len(bulk) + 1 + (0 if after_only else 1)
            print(f"{kind}: uploading {n} blobs to Azurite in {parts} generations ({where})…")
            splits = iter(await fill_azure(store, n, parts))
            cut = next(splits)
            age = MAX_AGE - dt.timedelta(seconds=1)
            print(f"{kind}, {n} blobs ({where}):")
            if not after_only:
                listing, delete = old_azure(store)
                store.list, store.delete = listing, delete  # type: ignore[method-assign]
                found = await measured(
                    "before: dry-run sweep, pages of 50",
                    sweep(store, lambda: cut + age, MAX_AGE, dry_run=True),
                )
                swept = await measured(
                    "before: sweep, 32 single deletes",
                    sweep(store, lambda: cut + age, MAX_AGE),
                )
                print(f"  listed {found} old, swept {swept}")
                del store.list, store.delete
                cut = next(splits)
            for way, one in stores.items():
                await one.check()
                label = {"threads": "store threads", "worker": "worker process"}[way]
                at = cut + age

                def clock(at: dt.datetime = at) -> dt.datetime:
                    return at

                found = await measured(
                    f"after: dry-run sweep, {label}",
                    sweep(one, clock, MAX_AGE, dry_run=True),
                )
                swept = await measured(f"after: sweep, {label}", sweep(one, clock, MAX_AGE))
                mode = {True: "batches", False: "single deletes", None: "none"}
                print(f"  listed {found} old, swept {swept} ({mode[one.batch_delete_works]})")
                cut = next(splits, cut)
            last = list(stores)[-1]
            report = await measured(
                f"after: nightly purge (orphans), {last}", purge(sm, stores[last], settings)
            )
            left = [b async for b in store.list()]
            print(f"  purged {len(report.orphaned_blobs)} orphaned; {len(left)} blob(s) left")
        finally:
            for one in stores.values():
                await one.close()
    finally:
        await engine.dispose()
        if emulator is not None:
            if emulator.proc is not None and emulator.proc.poll() is not None:
                print(f"  Azurite had exited (code {emulator.proc.returncode})", flush=True)
            emulator.stop()


async def run_local(tmp: Path, n: int, sm: Any, settings: Any) -> None:
    store = LocalBlobStore(tmp / "blobs")
    print(f"local: writing {n} blobs…", flush=True)
    await fill_local(tmp / "blobs", n)
    now = dt.datetime.now(dt.UTC)
    try:
        print(f"local, {n} blobs:")
        store.list = old_local_list(store)  # type: ignore[method-assign,assignment]
        found = await measured(
            "before: dry-run sweep, old listing",
            sweep(store, lambda: now, MAX_AGE, dry_run=True),
            collector_on=False,
        )
        del store.list
        again = await measured(
            "after: dry-run sweep, streamed", sweep(store, lambda: now, MAX_AGE, dry_run=True)
        )
        deleted = await measured("after: sweep (deletes)", sweep(store, lambda: now, MAX_AGE))
        report = await measured("after: nightly purge (orphans)", purge(sm, store, settings))
        left = [b async for b in store.list()]
        folders = [d for d, _s, _f in os.walk(store.root) if Path(d) != store.root]
        print(
            f"  found old {found}/{again}, swept {deleted}, purged {len(report.orphaned_blobs)} "
            f"orphaned; {len(left)} blob(s) left, {len(folders)} folder(s) left under the store"
        )
    finally:
        await store.close()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="stored blobs")
    parser.add_argument("--stores", default="local,azure", help="local, azure or both")
    parser.add_argument("--azurite", type=Path, help="another azurite-blob executable to use")
    parser.add_argument(
        "--no-pin", action="store_true", help="leave the server and Azurite to the scheduler"
    )
    parser.add_argument(
        "--after-only",
        action="store_true",
        help="Azure: only this code's steps (the sweep then deletes two generations)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="MS",
        help="the interpreter's thread switch interval (sys.setswitchinterval; default 5 ms)",
    )
    parser.add_argument(
        "--bulk",
        default="threads,worker",
        help="Azure: list and delete on the store's threads, in its worker process, or both",
    )
    args = parser.parse_args(argv)
    pinned = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1000)
    print("command: python bench/retention_stalls.py " + shlex.join(sys.argv[1:]))
    print(f"thread switch interval {1000 * sys.getswitchinterval():g} ms")
    for kind in args.stores.split(","):
        await run_store(
            kind, args.n, args.azurite, pinned, args.after_only, tuple(args.bulk.split(","))
        )


if __name__ == "__main__":
    asyncio.run(main())
