"""Run a Python program with a ``gc.callbacks`` hook that logs every collector pause.

    python bench/gc_probe.py PAUSES_FILE -m klasblik.server.cli serve --port 9000
    python bench/gc_probe.py PAUSES_FILE bench/bare_relay.py --port 9000

Each pause of 0.5 ms or more (wall time) is appended to PAUSES_FILE as one line
``<unix time> <wall seconds> <generation> <objects collected> <CPU seconds>``, twice a
second from a background thread (never from inside the collector). The CPU seconds are the
collecting thread's own (``time.thread_time``): on a machine whose cores are all busy, a
collection of a few hundred objects can take tens of milliseconds of wall time only
because the process waited for a core; the CPU time is the collector's own work. ``server_load.py`` reads the file to
give the longest pause of each measured phase. The program itself is unchanged.
"""

from __future__ import annotations

import gc
import runpy
import sys
import threading
import time
from typing import Any

LOGGED_FROM_S = 0.0005


def install(path: str) -> None:
    pending: list[tuple[float, float, int, int, float]] = []
    started = [0.0, 0.0]

    def hook(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            started[1] = time.thread_time()
            return
        took = time.perf_counter() - started[0]
        if took >= LOGGED_FROM_S:
            cpu = time.thread_time() - started[1]
            pending.append((time.time(), took, info["generation"], info["collected"], cpu))

    def flush() -> None:
        with open(path, "a", buffering=1) as out:
            while True:
                time.sleep(0.5)
                while pending:
                    at, took, gen, collected, cpu = pending.pop(0)
                    out.write(f"{at:.3f} {took:.6f} {gen} {collected} {cpu:.6f}\n")

    gc.callbacks.append(hook)
    threading.Thread(target=flush, name="gc-probe", daemon=True).start()


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    install(sys.argv[1])
    if sys.argv[2] == "-m":
        sys.argv = [sys.argv[3], *sys.argv[4:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
