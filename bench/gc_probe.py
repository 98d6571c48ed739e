"""Run a Python program with a ``gc.callbacks`` hook that logs every collector pause.

    python bench/gc_probe.py PAUSES_FILE -m klasblik.server.cli serve --port 9000
    python bench/gc_probe.py PAUSES_FILE bench/bare_relay.py --port 9000

Each pause of 0.5 ms or more is appended to PAUSES_FILE as one line
``<unix time> <seconds> <generation> <objects collected>``, twice a second from a
background thread (never from inside the collector). ``server_load.py`` reads the file to
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
    pending: list[tuple[float, float, int, int]] = []
    started = [0.0]

    def hook(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if took >= LOGGED_FROM_S:
            pending.append((time.time(), took, info["generation"], info["collected"]))

    def flush() -> None:
        with open(path, "a", buffering=1) as out:
            while True:
                time.sleep(0.5)
                while pending:
                    at, took, gen, collected = pending.pop(0)
                    out.write(f"{at:.3f} {took:.6f} {gen} {collected}\n")

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
