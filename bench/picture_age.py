"""How old is the picture a teacher sees? The real desktop agent on an Xvfb screen that
changes all the time, the real server, a dashboard socket: the age of the tile's picture
(now minus the ``captured_at`` of the last frame the dashboard has), sampled every 10 ms,
at a 1 s and a 2 s grid interval side by side in one run.

The agent runs as its own process (``python -m klasblik.agent.cli``, as a PC runs it) and
sends changed tiles. Two scenes, repainted every 100 ms: ``part`` (a 480x270 area of a
text page changes, like a video in a page) and ``whole`` (a video-like picture fills the
screen). Printed per scene and interval: the picture's age p50 / p99 / max, and the path
alone (arrival minus capture) p50 / p99. (A screen where every tile changes at every grab
gets whole pictures, which the grid sends at most every 2 s, ``GRID_WHOLE_GAP_S``: its
age is then that of the old 2 s interval.)

    .venv/bin/python bench/picture_age.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
from PIL import Image  # noqa: E402
from tests.agent.agent_xscreen import XPainter, start_xvfb  # noqa: E402
from tests.support.live import start_live_server  # noqa: E402

from klasblik import protocol as p  # noqa: E402
from screens import text_page, video_frames  # noqa: E402

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
INTERVALS_MS = (1000, 2000)
SAMPLE_S = 0.01


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _frames(ws: aiohttp.ClientWebSocketResponse, seen: list[tuple[float, float]]) -> None:
    """(arrival, captured_at) in seconds of every viewer frame, in wall-clock time."""
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            _sid, header, _image = p.decode_viewer_frame(msg.data)
            seen.append((time.time(), header.captured_at_ms / 1000))


def scene_pictures(scene: str) -> list[Image.Image]:
    """37 pictures, one every 100 ms: a cycle of 3.7 s, never in step with a grab interval
    (a cycle of 1 s would show the same picture at every grab)."""
    moving = video_frames(1920, 1080, 37) if scene == "whole" else video_frames(480, 270, 37)
    if scene == "whole":
        return moving
    base = text_page(1920, 1080)
    pictures = []
    for part in moving:
        picture = base.copy()
        picture.paste(part, (200, 200))
        pictures.append(picture)
    return pictures


async def measure(scene: str, interval_ms: int, seconds: float, tmp: Path) -> dict[str, float]:
    server = await start_live_server(tmp, grid_interval_ms=interval_ms)
    try:
        ids = await server.add_class("7B", [ANNA])
        with start_xvfb(1920, 1080) as screen:
            painter = XPainter(screen.display)
            pictures = scene_pictures(scene)
            env = {**os.environ, "DISPLAY": screen.display, "HOME": str(tmp)}
            agent = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "klasblik.agent.cli",
                "--server",
                server.agent_url,
                "--token",
                server.token,
                "--account",
                ANNA[0],
                "--state-dir",
                str(tmp / "agent-state"),
                "--log-level",
                "warning",
                env=env,
            )
            client = await server.login("teacher@school.example")
            ws = await server.dashboard(client)
            seen: list[tuple[float, float]] = []
            reader = asyncio.create_task(_frames(ws, seen))
            try:
                await ws.send_str(
                    json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
                )
                deadline = time.monotonic() + 60
                while not seen and time.monotonic() < deadline:  # the agent has started
                    await asyncio.to_thread(painter.show, pictures[0])
                    await asyncio.sleep(0.1)
                if not seen:
                    raise SystemExit("no frame reached the dashboard within 60 s")
                ages: list[float] = []
                started = time.time()
                end = time.monotonic() + seconds
                next_paint = next_sample = time.monotonic()
                i = 0
                while time.monotonic() < end:
                    now = time.monotonic()
                    if now >= next_paint:
                        i += 1
                        await asyncio.to_thread(painter.show, pictures[i % len(pictures)])
                        next_paint += 0.1
                    if now >= next_sample:
                        ages.append(time.time() - seen[-1][1])
                        next_sample += SAMPLE_S
                    await asyncio.sleep(SAMPLE_S / 2)
                window = [(a, c) for a, c in seen if a >= started]
                paths = [arrived - captured for arrived, captured in window]
            finally:
                agent.terminate()
                await agent.wait()
                await ws.close()
                reader.cancel()
                painter.close()
        return {
            "age_p50": statistics.median(ages),
            "age_p99": _pct(ages, 0.99),
            "age_max": max(ages),
            "path_p50": statistics.median(paths),
            "path_p99": _pct(paths, 0.99),
            "frames": float(len(window)),
        }
    finally:
        await server.stop()


async def run(seconds: float) -> None:
    print(f"command: .venv/bin/python bench/picture_age.py --seconds {seconds:g}")
    print(
        "| screen | grid interval | picture age p50 | p99 | max | grab to dashboard p50 "
        "| p99 | frames |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for scene in ("part", "whole"):
        for interval in INTERVALS_MS:
            with tempfile.TemporaryDirectory() as tmp:
                r = await measure(scene, interval, seconds, Path(tmp))
            print(
                f"| {scene} | {interval / 1000:g} s | {r['age_p50']:.2f} s | {r['age_p99']:.2f} s | "
                f"{r['age_max']:.2f} s | {r['path_p50'] * 1000:.0f} ms | "
                f"{r['path_p99'] * 1000:.0f} ms | {r['frames']:.0f} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    asyncio.run(run(args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
