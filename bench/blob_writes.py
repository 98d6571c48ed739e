"""CPU per stored-thumbnail write of the local blob store, beside a bare temporary file and
rename (what the store did before, and what most atomic writers do) in the same run.

The relay keeps each watched student's latest grid picture: with 3,000 students in view
that is 100 writes a second at the default ``store_interval_s`` of 30 s. Each row writes
``--blobs`` students' thumbnails ``--rounds`` times over (replacing, as the relay does)
and prints the CPU time (user + system, of the writing thread) and the wall time per write.

    .venv/bin/python bench/blob_writes.py --blobs 300 --rounds 10 --dir /tmp
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


def _put(store: LocalBlobStore):  # type: ignore[no-untyped-def]
    return lambda path, data: store._put_sync(os.fspath(path), data)


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
    args = ap.parse_args(argv)
    data = os.urandom(args.bytes)
    print("command: python bench/blob_writes.py " + " ".join(argv or sys.argv[1:]))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        store = LocalBlobStore(root / "store")
        print(f"folder {root} (exchange: {'yes' if store._exchange is not None else 'no'})")
        for _ in range(2):  # twice each, interleaved: a busy machine shows in the spread
            _run("temporary + rename", _mkstemp_rename, root, args.blobs, args.rounds, data)
            _run("LocalBlobStore", _put(store), root, args.blobs, args.rounds, data)


if __name__ == "__main__":
    main()
