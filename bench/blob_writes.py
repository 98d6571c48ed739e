"""CPU per stored-thumbnail write of the local blob store, beside a bare temporary file and
rename (what most atomic writers do) and the store's earlier write (the spare opened with
``O_TRUNC`` and cut by path, which ext4's ``auto_da_alloc`` takes for a replace-via-truncate
and answers with a block allocation in ``close``) in the same run.

The relay keeps each watched student's latest grid picture: with 3,000 students in view
that is 100 writes a second at the default ``store_interval_s`` of 30 s. Each row writes
``--blobs`` students' thumbnails ``--rounds`` times over (replacing, as the relay does)
and prints the CPU time (user + system, of the writing thread) and the wall time per write.

With ``--beside-loop`` the writes run as in the server: on a thread, ``--rate`` a second in
batches every 0.25 s, while the main thread runs a busy socket loop (a fixed 6,000 sends and
receives a second, each releasing the GIL, with some Python work in between). It prints the
writing thread's CPU per write and the whole process's CPU beside the same loop alone: what
the writes cost the relay, hand-overs of the GIL included.

    .venv/bin/python bench/blob_writes.py --blobs 300 --rounds 10 --dir /tmp
    .venv/bin/python bench/blob_writes.py --beside-loop --rate 300 --seconds 10 --dir /tmp
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from klasblik.server.storage.blobs.local import LocalBlobStore

__all__ = ["main"]


def _mkstemp_rename(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _cut_by_path(store: LocalBlobStore):  # type: ignore[no-untyped-def]
    """The store's write before: the spare opened with O_TRUNC, cut by path after the
    exchange."""
    exchange = store._exchange
    assert exchange is not None, "this file system cannot exchange two files"

    def write(path: Path, data: bytes) -> None:
        target = os.fspath(path)
        spare = os.path.join(os.path.dirname(target), ".tmp-before-" + os.path.basename(target))
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        if exchange(-100, os.fsencode(spare), -100, os.fsencode(target), 2) == 0:
            os.truncate(spare, 0)
        else:
            os.replace(spare, target)

    return write


def _put(store: LocalBlobStore):  # type: ignore[no-untyped-def]
    return lambda path, data: store._put_sync(os.fspath(path), data)


def _busy_loop(seconds: float, write, paths: list[Path], data: bytes, rate: float):  # type: ignore[no-untyped-def]
    """Process CPU and the writing thread's CPU while the main thread runs a fixed socket
    load and (if ``write``) a thread writes ``rate`` blobs a second."""
    stop = threading.Event()
    done: list[float] = []
    count = [0]

    def writer() -> None:
        t, i = time.monotonic(), 0
        while not stop.is_set():
            for _ in range(max(1, int(rate * 0.25))):
                write(paths[i % len(paths)], data)
                i += 1
            t += 0.25
            stop.wait(max(0.0, t - time.monotonic()))
        count[0] = i
        done.append(time.thread_time())

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(b, selectors.EVENT_READ)
    msg = b"x" * 2000
    thread = threading.Thread(target=writer) if write is not None else None
    cpu0, t0 = time.process_time(), time.monotonic()
    if thread is not None:
        thread.start()
    beat = t0
    try:
        while time.monotonic() - t0 < seconds:
            for _ in range(60):
                a.send(msg)
                for _key, _ev in sel.select(0):
                    b.recv(65536)
                sum(range(300))  # the relay's Python work between two system calls
            beat += 0.01
            wait = beat - time.monotonic()
            if wait > 0:
                sel.select(wait)
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        a.close()
        b.close()
    return time.process_time() - cpu0, (done[0] if done else 0.0), count[0]


def _run(label: str, write, root: Path, blobs: int, rounds: int, data: bytes) -> None:  # type: ignore[no-untyped-def]
    paths = [root / label / f"students/{sid}/thumbnail" for sid in range(blobs)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, data)  # the first write of each: not measured
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(rounds):
        for path in paths:
            write(path, data)
    n = blobs * rounds
    cpu_us = (time.thread_time() - cpu) / n * 1e6
    wall_us = (time.perf_counter() - wall) / n * 1e6
    print(f"{label:<22} {n:>7} writes {cpu_us:8.1f} µs CPU {wall_us:8.1f} µs wall per write")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blobs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--bytes", type=int, default=10_000, help="size of one thumbnail")
    ap.add_argument("--dir", default=None, help="where to write (default: the system's temp)")
    ap.add_argument("--beside-loop", action="store_true", help="write beside a busy loop")
    ap.add_argument("--rate", type=float, default=300.0, help="writes a second (--beside-loop)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each --beside-loop row")
    args = ap.parse_args(argv)
    data = os.urandom(args.bytes)
    print("command: python bench/blob_writes.py " + " ".join(argv or sys.argv[1:]))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        store = LocalBlobStore(root / "store")
        print(f"folder {root} (exchange: {'yes' if store._exchange is not None else 'no'})")
        writers = [("temporary + rename", _mkstemp_rename)]
        if store._exchange is not None:
            writers.append(("exchange, cut by path", _cut_by_path(store)))
        writers.append(("LocalBlobStore", _put(store)))
        if not args.beside_loop:
            for _ in range(2):  # twice each, interleaved: a busy machine shows in the spread
                for label, write in writers:
                    _run(label, write, root, args.blobs, args.rounds, data)
            return
        print(f"beside a busy loop: {args.rate:g} writes a second for {args.seconds:g} s")
        for _ in range(3):  # interleaved, each beside the loop alone
            alone, _, _ = _busy_loop(args.seconds, None, [], data, args.rate)
            print(f"{'loop alone':<22} process CPU {alone:6.3f} s")
            for label, write in writers[1:]:
                paths = [root / label / f"students/{sid}/thumbnail" for sid in range(args.blobs)]
                for path in paths:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write(path, data)
                cpu, thread_cpu, n = _busy_loop(args.seconds, write, paths, data, args.rate)
                print(
                    f"{label:<22} process CPU {cpu:6.3f} s ({(cpu - alone) / n * 1e6:+7.1f} µs"
                    f" a write beside the loop alone), writing thread {thread_cpu / n * 1e6:6.1f}"
                    f" µs a write, {n} writes"
                )


if __name__ == "__main__":
    main()
