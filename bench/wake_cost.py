"""What a thread is charged for waking up on this machine, beside what it does awake.

A relay's CPU per frame is measured from the processes' CPU time. On a virtual machine a
thread that sleeps and wakes is charged for more than its own instructions (the guest's
timer, the way back from an idle virtual CPU), and a relay at light load wakes once for
nearly every frame, where at heavy load one wake serves many. This prints the CPU time
charged per sleep of several lengths, per wake by a message on a socket, and, as the
baseline, the cost of one loop turn that does not sleep, all in one run:

    python bench/wake_cost.py
    python bench/wake_cost.py --count 400

Read it beside bench/server_load.py: a server at half the load (each instance of two) is
charged more per frame for the same work (docs/performance.md, "Why CPU per frame falls
with load here").
"""

from __future__ import annotations

import argparse
import shlex
import socket
import sys
import threading
import time

__all__ = ["main"]


def _per_sleep(seconds: float, count: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per ``time.sleep(seconds)``."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(count):
        time.sleep(seconds)
    return (
        1e6 * (time.thread_time() - cpu) / count,
        1e6 * (time.perf_counter() - wall) / count,
    )


def _per_socket_wake(gap: float, count: int) -> float:
    """CPU µs charged to a thread blocked in ``recv`` per byte another thread sends it,
    one every ``gap`` seconds."""
    a, b = socket.socketpair()

    def sender() -> None:
        for _ in range(count):
            time.sleep(gap)
            b.send(b"x")

    thread = threading.Thread(target=sender)
    cpu = time.thread_time()
    thread.start()
    for _ in range(count):
        a.recv(1)
    used = time.thread_time() - cpu
    thread.join()
    a.close()
    b.close()
    return 1e6 * used / count


def _per_busy_turn(count: int) -> float:
    """CPU µs of a turn that only asks the clock (the work-free baseline)."""
    cpu = time.thread_time()
    for _ in range(count):
        time.perf_counter()
    return 1e6 * (time.thread_time() - cpu) / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="wakes per measurement")
    args = parser.parse_args(argv)
    print("command: python bench/wake_cost.py " + shlex.join(sys.argv[1:]))
    print(f"{'wait':<34} {'CPU per wake':>13} {'wall per wake':>14}")
    for ms in (0.1, 1.0, 5.0, 20.0):
        cpu, wall = _per_sleep(ms / 1000, args.count)
        print(f"{f'sleep {ms:g} ms':<34} {cpu:>10.1f} µs {wall:>11.0f} µs")
    for ms in (1.0, 5.0):
        cpu = _per_socket_wake(ms / 1000, args.count)
        print(f"{f'recv, a byte every {ms:g} ms':<34} {cpu:>10.1f} µs {'':>14}")
    print(f"{'no wait (baseline: one clock read)':<34} {_per_busy_turn(100_000):>10.3f} µs")


if __name__ == "__main__":
    main()
