"""Wayland capture benchmark: what reading the ScreenCast portal's stream costs the agent.

A private desktop session (tests/agent/wayland_stack.py: dbus-daemon, pipewire,
wireplumber, the real xdg-desktop-portal and the stand-in backend) whose screen is a real
PipeWire video node of SIZE at the producer's frame rate. The agent's PortalGrabber asks
the portal, starts gst-launch-1.0 and grabs at the watch's rate. Measured: time from the
first grab to the first picture (portal session + pipeline), CPU of the agent process and
of its gst-launch-1.0 child (from /proc; the producer, which on a desktop is the
compositor, is not counted) per second of watching, and the time of one grab.

    .venv/bin/python bench/agent_wayland.py [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.agent.wayland_stack import desktop_session  # noqa: E402

from klasblik.agent.portal_capture import PortalGrabber  # noqa: E402

#: (screen size, frames a second the desktop sends, grabs a second: grid 0.5, close-up 2)
CASES = (
    ((1920, 1080), 5, 0.5),
    ((1920, 1080), 30, 0.5),
    ((1920, 1080), 30, 2.0),
    ((1366, 768), 60, 2.0),
)
TICK = os.sysconf("SC_CLK_TCK")


def _child_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(size: tuple[int, int], fps: int, grabs_per_s: float, seconds: float) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        desktop_session(Path(tmp), "standin", size, fps) as desk,
    ):
        grabber = PortalGrabber(Path(tmp) / "state", env=desk.env)
        try:
            t0 = time.monotonic()
            grabber.grab()
            first_s = time.monotonic() - t0
            pipeline = grabber._pipeline
            assert pipeline is not None
            cpu0, child0, wall0 = (
                time.process_time(),
                _child_cpu_s(pipeline.proc.pid),
                time.monotonic(),
            )
            frames0 = pipeline.frames_read
            grab_s: list[float] = []
            while time.monotonic() - wall0 < seconds:
                t = time.monotonic()
                grabber.grab()
                grab_s.append(time.monotonic() - t)
                time.sleep(max(0.0, 1 / grabs_per_s - (time.monotonic() - t)))
            wall = time.monotonic() - wall0
            agent = (time.process_time() - cpu0) / wall * 100
            child = (_child_cpu_s(pipeline.proc.pid) - child0) / wall * 100
            read = (pipeline.frames_read - frames0) / wall
        finally:
            grabber.close()
    grab_s.sort()
    print(
        f"{size[0]}x{size[1]} desktop sends {fps} fps, {grabs_per_s:g} grabs/s: first picture "
        f"{first_s * 1000:.0f} ms; CPU agent {agent:.1f} % + gst-launch {child:.1f} % of one core; "
        f"{read:.1f} frames/s read; grab median {grab_s[len(grab_s) // 2] * 1000:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(f"command: .venv/bin/python bench/agent_wayland.py --seconds {args.seconds:g}")
    for size, fps, rate in CASES:
        run(size, fps, rate, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
