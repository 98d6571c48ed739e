"""The desktop agent as a process: CPU and RSS while idle, in grid and in close-up (focus),
for the frozen build (PyInstaller) against the plain Python run.

Each variant runs as its own process tree (the agent and its watched-indicator child),
on an Xvfb screen of 1920×1080 whose content changes every 0.5 s (video-like frames, so
every capture is a new frame), connected to the protocol stand-in on 127.0.0.1 that asks
for the server's default rates (grid 400×225 every 2 s, focus 1280×720 every 0.5 s).
CPU is utime+stime of the whole tree from /proc over each phase, as % of one core; RSS is
the sum of VmRSS at the end of the phase (the indicator child is there only while watched).

    .venv/bin/python bench/agent_process.py --frozen build/agent/dist/klasblik-agent [--seconds 20]

Build the frozen folder first: python3.11 agent/packaging/build_agent.py freeze.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.agent.agent_standin_server import standin_server  # noqa: E402
from tests.agent.agent_xscreen import XPainter, start_xvfb  # noqa: E402

from screens import video_frames  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PHASES = (
    ("idle", None),
    ("grid", ("grid", 400, 225, 2000, 55)),
    ("close-up", ("focus", 1280, 720, 500, 70)),
)


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            pids += _tree(int(c))
    return pids


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


async def _run(command: list[str], seconds: float) -> list[tuple[str, float, float, int]]:
    results = []
    with start_xvfb(1920, 1080) as screen:
        painter = XPainter(screen.display)
        frames = video_frames(1920, 1080, 8)
        async with standin_server() as server:
            env = {**os.environ, "DISPLAY": screen.display, "HOME": "/tmp"}
            proc = await asyncio.create_subprocess_exec(
                *command,
                "--server",
                server.url,
                "--token",
                "t",
                "--account",
                "bench@school.example",
                "--state-dir",
                "/tmp/klasblik-bench-state",
                "--log-level",
                "warning",
                env=env,
            )
            try:
                conn = await server.next_connection(timeout=60)
                await conn.welcome()
                await conn.watch("off")
                await asyncio.sleep(3)  # started up
                for name, watch in PHASES:
                    if watch is not None:
                        mode, w, h, interval, quality = watch
                        await conn.watch(mode, w, h, interval_ms=interval, quality=quality)
                    start_frames = len(conn.frames)
                    await asyncio.sleep(2)  # settle (the indicator starts)
                    pids = _tree(proc.pid)
                    cpu0, t0 = _cpu_s(pids), time.monotonic()
                    end = t0 + seconds
                    i = 0
                    while time.monotonic() < end:
                        await asyncio.to_thread(painter.show, frames[i % len(frames)])
                        i += 1
                        await asyncio.sleep(0.5)
                    pids = _tree(proc.pid)
                    cpu = (_cpu_s(pids) - cpu0) / (time.monotonic() - t0) * 100
                    results.append((name, cpu, _rss_mb(pids), len(conn.frames) - start_frames))
                    await conn.watch("off")
            finally:
                proc.terminate()
                await proc.wait()
        painter.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frozen", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    variants = {
        "frozen (PyInstaller)": [str(args.frozen.resolve() / "klasblik-agent")],
        "python -m klasblik.agent.cli": [sys.executable, "-m", "klasblik.agent.cli"],
    }
    print(f"command: {' '.join(sys.argv)}")
    print("| build | phase | CPU (% of one core) | RSS (MB, agent + sign) | frames sent |")
    print("| --- | --- | ---: | ---: | ---: |")
    for label, command in variants.items():
        for name, cpu, rss, frames in asyncio.run(_run(command, args.seconds)):
            print(f"| {label} | {name} | {cpu:.1f} | {rss:.0f} | {frames} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
